/* tok_nfc.c: NFC as HF tokenizers computes it, on utf8proc, in O(n log n).
 * utf8proc orders combining marks with a bubble sort (quadratic: 100 KB of alternating marks took
 * 27 s), so we decompose per character, order each run of non-starters with a stable merge sort,
 * and only then let utf8proc compose (its reordering pass is linear on sorted input). */
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_nfc_table.h"

static int ccc(utf8proc_int32_t c) { return utf8proc_get_property(c)->combining_class; }

/* stable merge sort of v[0..n) by ccc (keys precomputed in k) */
static void msort(utf8proc_int32_t *v, uint8_t *k, size_t n, utf8proc_int32_t *tv, uint8_t *tk) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(v, k, h, tv, tk);
    msort(v + h, k + h, n - h, tv, tk);
    if (k[h - 1] <= k[h]) return;
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        if (k[j] < k[i]) tv[o] = v[j], tk[o++] = k[j++];
        else tv[o] = v[i], tk[o++] = k[i++];
    }
    while (i < h) tv[o] = v[i], tk[o++] = k[i++];
    while (j < n) tv[o] = v[j], tk[o++] = k[j++];
    memcpy(v, tv, n * sizeof *v);
    memcpy(k, tk, n);
}

/* NFC of valid UTF-8 s[0..n) into *out (malloc'd by utf8proc); returns the length or < 0 */
static utf8proc_ssize_t nfc_run(const char *s, size_t n, utf8proc_uint8_t **out) {
    size_t cap = n + 16, m = 0;
    utf8proc_int32_t *u = tl_malloc(cap * sizeof *u);
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) {
            free(u);
            return k < 0 ? k : UTF8PROC_ERROR_INVALIDUTF8;
        }
        i += (size_t)k;
        int bc = 0;
        for (;;) {
            utf8proc_ssize_t r = utf8proc_decompose_char(c, u + m, (utf8proc_ssize_t)(cap - m), UTF8PROC_DECOMPOSE, &bc);
            if (r < 0) {
                free(u);
                return r;
            }
            if ((size_t)r <= cap - m) {
                m += (size_t)r;
                break;
            }
            u = tl_realloc(u, (cap = cap * 2 + (size_t)r) * sizeof *u);
        }
    }
    uint8_t *key = tl_malloc(m + 1), *tk = tl_malloc(m + 1);
    utf8proc_int32_t *tv = tl_malloc((m + 1) * sizeof *tv);
    for (size_t i = 0; i < m; i++) key[i] = (uint8_t)ccc(u[i]);
    for (size_t i = 0; i < m;) { /* canonical ordering: each run of non-starters, stably by ccc */
        if (!key[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < m && key[j]) j++;
        msort(u + i, key + i, j - i, tv, tk);
        i = j;
    }
    char *d = tl_malloc(m * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < m; i++) o += (size_t)utf8proc_encode_char(u[i], (utf8proc_uint8_t *)d + o);
    free(u);
    free(key);
    free(tk);
    free(tv);
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)d, (utf8proc_ssize_t)o, out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(d);
    return r;
}

static bool nfc_inert(uint32_t cp) { /* binary search in TOK_NFC_INERT */
    int lo = 0, hi = (int)(sizeof TOK_NFC_INERT / sizeof TOK_NFC_INERT[0]) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < TOK_NFC_INERT[mid][0]) hi = mid - 1;
        else if (cp > TOK_NFC_INERT[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

/* NFC as HF tokenizers computes it: utf8proc's NFC on the runs between the code points that HF's
 * older Unicode tables do not know (those stay as they are and block reordering/composition, which is
 * what an unassigned code point does). Returns malloc'd text, length in *out_len, or NULL on error. */
char *tl_tok_nfc(const char *s, size_t n, size_t *out_len, tl_error *e) {
    char *d = tl_malloc(n * 3 + 16); /* NFC grows text by at most 3x (UAX #15) */
    size_t o = 0, run = 0;
    for (size_t i = 0; i <= n;) {
        uint32_t cp = 0;
        int k = i < n ? tl_tok_utf8_decode((const unsigned char *)s + i, n - i, &cp) : 0;
        if (i == n || nfc_inert(cp)) {
            if (i > run) {
                utf8proc_uint8_t *m = NULL;
                utf8proc_ssize_t r = nfc_run(s + run, i - run, &m);
                if (r < 0) {
                    free(d);
                    tl_errf(e, "tokenizer: NFC failed: %s", utf8proc_errmsg(r));
                    return NULL;
                }
                if (o + (size_t)r + 16 > n * 3 + 16) d = tl_realloc(d, o + (size_t)r + n * 3 + 16);
                memcpy(d + o, m, (size_t)r);
                o += (size_t)r;
                free(m);
            }
            if (i == n) break;
            memcpy(d + o, s + i, (size_t)k);
            o += (size_t)k;
            run = i + (size_t)k;
        }
        i += (size_t)k;
    }
    *out_len = o;
    return d;
}


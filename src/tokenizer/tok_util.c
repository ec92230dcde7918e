/* tok_util.c: hash maps (string -> id, id pair -> merge), UTF-8 helpers, the byte-level alphabet,
 * and added-token matching (leftmost-longest, as HF's AddedVocabulary). */
#include "tokenizer/tok_internal.h"

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a 64 */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

void tl_tok_strmap_build(tok_strmap *m, int n, const char *const *keys, const uint32_t *key_len) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 16) cap *= 2;
    m->cap = cap;
    m->slot = tl_malloc(cap * sizeof *m->slot);
    for (uint32_t i = 0; i < cap; i++) m->slot[i] = -1;
    const char **k = tl_malloc((size_t)(n ? n : 1) * sizeof *k);
    uint32_t *kl = tl_malloc((size_t)(n ? n : 1) * sizeof *kl);
    memcpy(k, keys, (size_t)n * sizeof *k);
    memcpy(kl, key_len, (size_t)n * sizeof *kl);
    m->keys = k;
    m->key_len = kl;
    for (int id = 0; id < n; id++) {
        if (!keys[id]) continue;
        uint32_t h = (uint32_t)hash_bytes(keys[id], key_len[id]) & (cap - 1);
        for (;; h = (h + 1) & (cap - 1)) {
            int32_t o = m->slot[h];
            if (o < 0) {
                m->slot[h] = id;
                break;
            }
            if (key_len[o] == key_len[id] && !memcmp(keys[o], keys[id], key_len[id])) break; /* first id wins */
        }
    }
}

int32_t tl_tok_strmap_get(const tok_strmap *m, const char *s, size_t len) {
    if (!m->slot) return -1;
    uint32_t h = (uint32_t)hash_bytes(s, len) & (m->cap - 1);
    for (;; h = (h + 1) & (m->cap - 1)) {
        int32_t o = m->slot[h];
        if (o < 0) return -1;
        if (m->key_len[o] == len && !memcmp(m->keys[o], s, len)) return o;
    }
}

void tl_tok_strmap_free(tok_strmap *m) {
    free(m->slot);
    free((void *)m->keys);
    free((void *)m->key_len);
    memset(m, 0, sizeof *m);
}

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

void tl_tok_pairmap_init(tok_pairmap *m, int n) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 16) cap *= 2;
    m->cap = cap;
    m->key = tl_calloc(cap, sizeof *m->key);
    m->rank = tl_malloc(cap * sizeof *m->rank);
    m->out = tl_malloc(cap * sizeof *m->out);
}

bool tl_tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t out) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (uint32_t h = hash_pair(k) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (m->key[h] == k) return false;
        if (!m->key[h]) {
            m->key[h] = k;
            m->rank[h] = rank;
            m->out[h] = out;
            return true;
        }
    }
}

bool tl_tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *out) {
    if (!m->key) return false;
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (uint32_t h = hash_pair(k) & (m->cap - 1);; h = (h + 1) & (m->cap - 1)) {
        if (m->key[h] == k) {
            *rank = m->rank[h];
            *out = m->out[h];
            return true;
        }
        if (!m->key[h]) return false;
    }
}

void tl_tok_pairmap_free(tok_pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->out);
    memset(m, 0, sizeof *m);
}

int tl_tok_utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else return -1;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return 0; /* valid so far, incomplete */
        unsigned b = s[k];
        if (b < lo || b > hi) return -k;
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

char *tl_tok_utf8_sanitize(const char *s, size_t n, size_t *out_len) {
    char *d = tl_malloc(n * 3 + 1); /* worst case: every byte becomes EF BF BD */
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = tl_tok_utf8_seq((const unsigned char *)s + i, n - i);
        if (k > 0) {
            memcpy(d + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(d + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += k == 0 ? n - i : (size_t)-k;
        }
    }
    d[o] = 0;
    *out_len = o;
    return d;
}

static bool byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

/* The 68 non-printable bytes (0-32, 127-160, 173) take 256, 257, ... in byte order. */
uint32_t tl_tok_byte_to_cp(int b) {
    if (byte_is_printable(b)) return (uint32_t)b;
    if (b <= 32) return 256u + (uint32_t)b;
    if (b <= 160) return 256u + 33u + (uint32_t)(b - 127);
    return 256u + 67u; /* 173 */
}

int tl_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    int k = (int)(cp - 256);
    return k < 33 ? k : k < 67 ? 127 + (k - 33) : 173;
}

int tl_tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    int k = tl_tok_utf8_seq(s, n);
    if (k <= 0) {
        *cp = 0xFFFD;
        return k == 0 ? (int)n : -k;
    }
    uint32_t c = k == 1 ? s[0] : k == 2 ? s[0] & 0x1F : k == 3 ? s[0] & 0x0F : s[0] & 0x07;
    for (int i = 1; i < k; i++) c = c << 6 | (s[i] & 0x3F);
    *cp = c;
    return k;
}

int tl_tok_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static int cmp_added(const void *pa, const void *pb) {
    const tok_added *a = pa, *b = pb;
    unsigned char fa = (unsigned char)a->s[0], fb = (unsigned char)b->s[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

void tl_tok_added_finish(tl_tokenizer *t) {
    /* drop empty contents: they can never match */
    int k = 0;
    for (int i = 0; i < t->n_added; i++) {
        if (t->added[i].len > 0) t->added[k++] = t->added[i];
        else free((void *)t->added[i].s);
    }
    t->n_added = k;
    if (k) qsort(t->added, (size_t)k, sizeof *t->added, cmp_added);
    int j = 0;
    for (int b = 0; b <= 256; b++) {
        while (j < k && (unsigned char)t->added[j].s[0] < b) j++;
        t->added_idx[b] = j;
    }
    t->added_idx[256] = k;
}

static bool is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int tl_tok_added_find(const tl_tokenizer *t, const char *s, size_t n, size_t from, bool parse_special,
                      size_t *start, size_t *end) {
    if (!t->n_added) return -1;
    for (size_t p = from; p < n; p++) {
        unsigned char c = (unsigned char)s[p];
        for (int i = t->added_idx[c]; i < t->added_idx[c + 1]; i++) { /* longest first */
            const tok_added *a = &t->added[i];
            if (a->special && !parse_special) continue;
            if (a->len > n - p || memcmp(s + p, a->s, a->len)) continue;
            size_t st = p, en = p + a->len;
            if (a->lstrip)
                while (st > from && is_ws((unsigned char)s[st - 1])) st--;
            if (a->rstrip)
                while (en < n && is_ws((unsigned char)s[en])) en++;
            *start = st;
            *end = en;
            return i;
        }
    }
    return -1;
}

char *tl_tok_bytelevel_decode(const char *s, size_t n, uint32_t *out_len) {
    char *d = tl_malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = tl_tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = tl_tok_cp_to_byte(cp);
        if (b < 0) { /* outside the alphabet: the token's own bytes (HF's ByteLevel decoder) */
            memcpy(d, s, n);
            o = n;
            break;
        }
        d[o++] = (char)b;
        i += (size_t)k;
    }
    d[o] = 0;
    *out_len = (uint32_t)o;
    return d;
}

int tl_tok_add_merge(tl_tokenizer *t, int rank, const char *a, size_t la, const char *b, size_t lb, tl_error *e) {
    uint32_t ra, rb;
    char *da = tl_tok_bytelevel_decode(a, la, &ra), *db = tl_tok_bytelevel_decode(b, lb, &rb);
    char *cat = tl_malloc((size_t)ra + rb + 1);
    memcpy(cat, da, ra);
    memcpy(cat + ra, db, rb);
    int32_t ia = tl_tok_strmap_get(&t->map, da, ra), ib = tl_tok_strmap_get(&t->map, db, rb);
    int32_t io = tl_tok_strmap_get(&t->map, cat, (size_t)ra + rb);
    free(da);
    free(db);
    free(cat);
    if (ia < 0 || ib < 0 || io < 0)
        return tl_errf(e, "%s: merge %d (\"%.*s\" + \"%.*s\") uses a token that is not in the vocab", t->src, rank,
                       (int)TL_MIN(la, 32), a, (int)TL_MIN(lb, 32), b);
    tl_tok_pairmap_put(&t->merges, ia, ib, rank, io); /* a repeated merge keeps its first rank */
    return 0;
}

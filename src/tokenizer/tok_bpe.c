/* tok_bpe.c: byte-level BPE encode of one text segment (no added tokens in it), as HF tokenizers:
 * NFC (utf8proc) -> Split pre-tokenizer (the file's regex on PCRE2, UTF + UCP, JIT) -> ByteLevel ->
 * BPE merges by rank with a binary heap (HF's Word::merge_all: lowest rank first, then leftmost). */
#include "tokenizer/tok_internal.h"

/* Pre-tokenizer patterns by GGUF tokenizer.ggml.pre (the ones llama.cpp uses for these names). */
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                               "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                                "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const char *tl_tok_pre_regex(const char *pre) {
    if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2")) return GPT2_RE;
    if (!strcmp(pre, "qwen2") || !strcmp(pre, "deepseek-r1-qwen")) return QWEN2_RE;
    if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") || !strcmp(pre, "llama-v3")) return LLAMA3_RE;
    return NULL;
}

int tl_tok_bpe_set_regex(tl_tokenizer *t, const char *pattern, tl_error *e) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return tl_errf(e, "%s: pre-tokenizer regex does not compile at offset %zu: %s", t->src, (size_t)off,
                       (const char *)msg);
    }
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0) tl_debug("tokenizer: PCRE2 JIT unavailable, interpreting");
    if (t->re) pcre2_code_free(t->re);
    t->re = re;
    return 0;
}

/* ---- BPE on one pre-token ---- */
typedef struct sym {
    int32_t id, prev, next;
    bool alive;
} sym;
typedef struct merge_ent {
    int32_t rank, pos, out;
} merge_ent;
typedef struct scratch {
    sym *s;
    merge_ent *h;
    int cap_s, cap_h, nh;
} scratch;

static bool ent_less(const merge_ent *a, const merge_ent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}
static void heap_push(scratch *w, merge_ent m) {
    if (w->nh == w->cap_h) w->h = tl_realloc(w->h, (size_t)(w->cap_h = w->cap_h * 2 + 64) * sizeof *w->h);
    int i = w->nh++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!ent_less(&m, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = m;
}
static merge_ent heap_pop(scratch *w) {
    merge_ent top = w->h[0], last = w->h[--w->nh];
    int i = 0, n = w->nh;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ent_less(&w->h[c + 1], &w->h[c])) c++;
        if (!ent_less(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

static void try_pair(const tl_tokenizer *t, scratch *w, int pos) {
    int nx = w->s[pos].next;
    if (nx < 0) return;
    int32_t rank, out;
    if (tl_tok_pairmap_get(&t->merges, w->s[pos].id, w->s[nx].id, &rank, &out))
        heap_push(w, (merge_ent){rank, pos, out});
}

static void bpe_word(const tl_tokenizer *t, const unsigned char *p, size_t n, scratch *w, tok_ids *out) {
    if (!n) return;
    if (t->ignore_merges) {
        int32_t id = tl_tok_strmap_get(&t->map, (const char *)p, n);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n > (size_t)w->cap_s) w->s = tl_realloc(w->s, (size_t)(w->cap_s = (int)n * 2) * sizeof *w->s);
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) continue; /* no token for this byte and no unk: dropped, as HF without unk_token */
        w->s[m] = (sym){id, m - 1, -1, true};
        if (m) w->s[m - 1].next = m;
        m++;
    }
    w->nh = 0;
    for (int i = 0; i + 1 < m; i++) try_pair(t, w, i);
    while (w->nh) {
        merge_ent top = heap_pop(w);
        sym *a = &w->s[top.pos];
        if (!a->alive || a->next < 0) continue;
        sym *b = &w->s[a->next];
        int32_t rank, o;
        if (!tl_tok_pairmap_get(&t->merges, a->id, b->id, &rank, &o) || o != top.out) continue; /* stale */
        a->id = top.out;
        b->alive = false;
        a->next = b->next;
        if (a->next >= 0) w->s[a->next].prev = top.pos;
        if (a->prev >= 0) try_pair(t, w, a->prev);
        try_pair(t, w, top.pos);
    }
    for (int i = 0; i >= 0 && i < m; i = w->s[i].next) tok_ids_push(out, w->s[i].id);
}

static bool is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

int tl_tok_bpe_encode(const tl_tokenizer *t, const char *s, size_t n, tok_ids *out, tl_error *e) {
    if (!n) return 0;
    char *norm = NULL;
    if (t->nfc && !is_ascii(s, n)) {
        if (!(norm = tl_tok_nfc(s, n, &n, e))) return -1;
        s = norm;
    }
    scratch w = {0};
    int rc = 0;
    if (!t->re) {
        bpe_word(t, (const unsigned char *)s, n, &w, out);
    } else {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
        size_t pos = 0, gap = 0;
        while (pos <= n) {
            int r = pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (r == PCRE2_ERROR_NOMATCH) break;
            if (r < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(r, msg, sizeof msg);
                rc = tl_errf(e, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t a = ov[0], b = ov[1];
            if (a > gap) bpe_word(t, (const unsigned char *)s + gap, a - gap, &w, out); /* Isolated: gaps too */
            bpe_word(t, (const unsigned char *)s + a, b - a, &w, out);
            gap = b;
            if (b == a) { /* empty match: step one character */
                if (b >= n) break;
                int k = tl_tok_utf8_seq((const unsigned char *)s + b, n - b);
                pos = b + (size_t)(k > 0 ? k : 1);
            } else {
                pos = b;
            }
        }
        if (!rc && gap < n) bpe_word(t, (const unsigned char *)s + gap, n - gap, &w, out);
        pcre2_match_data_free(md);
    }
    free(w.s);
    free(w.h);
    free(norm);
    return rc;
}

/* tok_spm.c: SentencePiece-style BPE as llama.cpp runs it for GGUF "llama" vocabs
 * (llm_tokenizer_spm): spaces become U+2581, a space is prefixed at the start of the text and after an
 * added/special token, symbols are UTF-8 characters, the adjacent pair whose concatenation is a token
 * with the highest score merges first (ties: leftmost), and what is left unmatched falls back to
 * <0xNN> byte tokens. */
#include "tokenizer/tok_internal.h"

typedef struct ssym {
    const char *s;
    uint32_t n;
    int32_t prev, next;
} ssym;
typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size;
} bigram;
typedef struct heap {
    bigram *v;
    int n, cap;
} heap;

static bool bg_before(const bigram *a, const bigram *b) { /* pops first: higher score, then lower left */
    return a->score != b->score ? a->score > b->score : a->left < b->left;
}
static void hpush(heap *h, bigram x) {
    if (h->n == h->cap) h->v = tl_realloc(h->v, (size_t)(h->cap = h->cap * 2 + 64) * sizeof *h->v);
    int i = h->n++;
    while (i > 0 && bg_before(&x, &h->v[(i - 1) / 2])) h->v[i] = h->v[(i - 1) / 2], i = (i - 1) / 2;
    h->v[i] = x;
}
static bigram hpop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bg_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bg_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static void try_bigram(const tl_tokenizer *t, ssym *sy, heap *h, int l, int r) {
    if (l < 0 || r < 0) return;
    uint32_t n = sy[l].n + sy[r].n;
    int32_t id = tl_tok_strmap_get(&t->map, sy[l].s, n); /* symbols are contiguous in the text */
    if (id < 0) return;
    hpush(h, (bigram){t->score ? t->score[id] : 0.0f, l, r, n});
}

static void emit(const tl_tokenizer *t, const char *s, uint32_t n, tok_ids *out) {
    int32_t id = tl_tok_strmap_get(&t->map, s, n);
    if (id >= 0) return tok_ids_push(out, id);
    for (uint32_t i = 0; i < n; i++) { /* byte fallback */
        int32_t b = t->byte_id[(unsigned char)s[i]];
        if (b < 0) b = t->unk;
        if (b >= 0) tok_ids_push(out, b);
    }
}

int tl_tok_spm_encode(const tl_tokenizer *t, const char *s, size_t n, bool prefix_space, tok_ids *out) {
    /* escape whitespace: ' ' -> U+2581 (3 bytes) */
    char *x = tl_malloc(n * 3 + 4);
    size_t m = 0;
    if (prefix_space) memcpy(x, "\xE2\x96\x81", 3), m = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(x + m, "\xE2\x96\x81", 3), m += 3;
        else x[m++] = s[i];
    }
    ssym *sy = tl_malloc((m + 1) * sizeof *sy);
    int ns = 0;
    for (size_t i = 0; i < m;) {
        int k = tl_tok_utf8_seq((const unsigned char *)x + i, m - i);
        size_t len = k > 0 ? (size_t)k : 1; /* input is valid UTF-8; be safe anyway */
        sy[ns] = (ssym){x + i, (uint32_t)len, ns - 1, -1};
        if (ns) sy[ns - 1].next = ns;
        ns++;
        i += len;
    }
    heap h = {0};
    for (int i = 1; i < ns; i++) try_bigram(t, sy, &h, i - 1, i);
    while (h.n) {
        bigram b = hpop(&h);
        ssym *l = &sy[b.left], *r = &sy[b.right];
        if (!l->n || !r->n || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = b.left;
        try_bigram(t, sy, &h, l->prev, b.left);
        try_bigram(t, sy, &h, b.left, l->next);
    }
    for (int i = 0; i >= 0 && i < ns; i = sy[i].next) emit(t, sy[i].s, sy[i].n, out);
    free(h.v);
    free(sy);
    free(x);
    return 0;
}

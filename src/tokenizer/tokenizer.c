/* tokenizer.c: the public API: encode (added tokens first, then the model on each segment between
 * them), decode, the streaming detokenizer, special ids. */
#include "tokenizer/tok_internal.h"

void tl_tokenizer_free(tl_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) {
        free(t->piece[i]);
        if (t->text) free(t->text[i]);
    }
    for (int i = 0; i < t->n_added; i++) free((void *)t->added[i].s);
    free(t->piece);
    free(t->piece_len);
    free(t->text);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->added);
    tl_tok_strmap_free(&t->map);
    tl_tok_pairmap_free(&t->merges);
    if (t->re) pcre2_code_free(t->re);
    free(t->default_system);
    free(t->src);
    free(t);
}

int tl_tokenizer_n_vocab(const tl_tokenizer *t) { return t->n_vocab; }

static int encode_segment(const tl_tokenizer *t, const char *s, size_t n, bool first, tok_ids *out, tl_error *e) {
    if (t->kind == TOK_SPM) return tl_tok_spm_encode(t, s, n, t->add_space_prefix && first, out);
    return tl_tok_bpe_encode(t, s, n, out, e);
}

int tl_tokenizer_encode(const tl_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
                        tl_error *e) {
    *ids = NULL;
    if (!text && len) return tl_errf(e, "tokenizer: NULL text");
    size_t n;
    char *s = tl_tok_utf8_sanitize(text ? text : "", len, &n); /* invalid UTF-8 -> U+FFFD */
    tok_ids out = {0};
    size_t pos = 0, st, en;
    bool first = true; /* SPM: a segment at the start or after an added token gets the space prefix */
    int rc = 0;
    for (;;) {
        int k = tl_tok_added_find(t, s, n, pos, parse_special, &st, &en);
        size_t stop = k < 0 ? n : st;
        if (stop > pos) {
            if ((rc = encode_segment(t, s + pos, stop - pos, first, &out, e)) != 0) break;
            first = false;
        }
        if (k < 0) break;
        tok_ids_push(&out, t->added[k].id);
        first = true;
        pos = en;
    }
    free(s);
    if (rc) {
        free(out.v);
        return -1;
    }
    if (!out.v) out.v = tl_malloc(sizeof *out.v);
    *ids = out.v;
    return out.n;
}

int tl_tokenizer_encode_prompt(const tl_tokenizer *t, const char *text, size_t len, int32_t **ids, tl_error *e) {
    int32_t *v;
    int n = tl_tokenizer_encode(t, text, len, true, &v, e);
    if (n < 0 || !t->add_bos || t->bos < 0) return *ids = n < 0 ? NULL : v, n;
    v = tl_realloc(v, (size_t)(n + 1) * sizeof *v);
    memmove(v + 1, v, (size_t)n * sizeof *v);
    v[0] = t->bos;
    *ids = v;
    return n + 1;
}

const char *tl_tokenizer_piece(const tl_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !t->piece[id]) return NULL;
    if (len) *len = t->piece_len[id];
    return t->piece[id];
}

bool tl_tokenizer_is_special(const tl_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & TOK_A_SPECIAL);
}

int tl_tokenizer_bos(const tl_tokenizer *t) { return t->bos; }
bool tl_tokenizer_add_bos(const tl_tokenizer *t) { return t->add_bos && t->bos >= 0; }
int tl_tokenizer_eos(const tl_tokenizer *t, int32_t *ids, int max) {
    int n = 0;
    for (int i = 0; i < t->n_eos && n < max; i++) ids[n++] = t->eos[i];
    return n;
}

/* ---- decode ---- */
typedef struct buf {
    char *p;
    size_t n, cap;
} buf;
static void buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) b->p = tl_realloc(b->p, b->cap = (b->n + n + 1) * 2);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* SPM (SentencePiece / llama2.c rule): the leading space of a token is dropped when it starts the text
 * or directly follows BOS. */
static bool strip_space(const tl_tokenizer *t, int32_t prev, int32_t id) {
    return t->kind == TOK_SPM && t->add_space_prefix && (prev < 0 || prev == t->bos) &&
           !(t->attr[id] & TOK_A_SPECIAL) && t->piece_len[id] && t->piece[id][0] == ' ';
}

char *tl_tokenizer_decode(const tl_tokenizer *t, const int32_t *ids, int n, bool skip_special) {
    size_t len;
    return tl_tokenizer_decode_n(t, ids, n, skip_special, &len);
}

char *tl_tokenizer_decode_n(const tl_tokenizer *t, const int32_t *ids, int n, bool skip_special, size_t *len) {
    buf b = {0};
    buf_add(&b, "", 0);
    int32_t prev = -1;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->piece[id]) continue; /* unknown id: nothing, as HF */
        if (!(skip_special && (t->attr[id] & TOK_A_SPECIAL))) {
            int k = strip_space(t, prev, id);
            buf_add(&b, t->piece[id] + k, t->piece_len[id] - (size_t)k);
        }
        prev = id;
    }
    char *r = tl_tok_utf8_sanitize(b.p, b.n, len); /* from_utf8_lossy, as HF */
    free(b.p);
    return r;
}

/* ---- streaming ---- */
struct tl_detok {
    const tl_tokenizer *t;
    bool skip_special;
    int32_t prev;
    char pend[8]; /* an incomplete UTF-8 sequence held back (at most 3 bytes) */
    int npend;
    buf out;
};

tl_detok *tl_detok_new(const tl_tokenizer *t, bool skip_special) {
    tl_detok *d = tl_calloc(1, sizeof *d);
    d->t = t;
    d->skip_special = skip_special;
    d->prev = -1;
    return d;
}

/* Emits the complete sequences of pend + s into out (invalid subparts as U+FFFD); keeps an incomplete
 * tail (at most 3 bytes) in pend. */
static void detok_feed(tl_detok *d, const char *s, size_t n) {
    size_t m = (size_t)d->npend + n, i = 0;
    char *w = tl_malloc(m + 1);
    memcpy(w, d->pend, (size_t)d->npend);
    memcpy(w + d->npend, s, n);
    d->npend = 0;
    while (i < m) {
        int k = tl_tok_utf8_seq((const unsigned char *)w + i, m - i);
        if (k > 0) {
            buf_add(&d->out, w + i, (size_t)k);
            i += (size_t)k;
        } else if (k == 0) {
            memcpy(d->pend, w + i, m - i);
            d->npend = (int)(m - i);
            break;
        } else {
            buf_add(&d->out, "\xEF\xBF\xBD", 3);
            i += (size_t)-k;
        }
    }
    free(w);
}

const char *tl_detok_push(tl_detok *d, int32_t id, size_t *len) {
    const tl_tokenizer *t = d->t;
    d->out.n = 0;
    buf_add(&d->out, "", 0);
    if (id >= 0 && id < t->n_vocab && t->piece[id]) {
        if (!(d->skip_special && (t->attr[id] & TOK_A_SPECIAL))) {
            int k = d->prev >= 0 && strip_space(t, d->prev, id);
            detok_feed(d, t->piece[id] + k, t->piece_len[id] - (size_t)k);
        }
        d->prev = id;
    }
    *len = d->out.n;
    return d->out.p;
}

const char *tl_detok_flush(tl_detok *d, size_t *len) {
    d->out.n = 0;
    buf_add(&d->out, "", 0);
    if (d->npend) buf_add(&d->out, "\xEF\xBF\xBD", 3); /* an incomplete sequence at the end: one U+FFFD */
    d->npend = 0;
    *len = d->out.n;
    return d->out.p;
}

void tl_detok_free(tl_detok *d) {
    if (!d) return;
    free(d->out.p);
    free(d);
}

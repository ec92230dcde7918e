/* fake_backend.h: a tl_backend for engine tests whose "model" is a hash of the whole token history,
 * read back from the paged KV cache. Each forward writes (token, position) of every new token into
 * its block row, then for each logit row re-reads positions 0..p of that sequence through its block
 * table. Wrong block tables, positions, chunk boundaries or prefix-cache hits give wrong logits (or a
 * forward error), so the engine's scheduling is checked against a direct reference computed from the
 * token ids alone (fake_ref_greedy), never by the engine itself. Included by tests only. */
#ifndef TL_FAKE_BACKEND_H
#define TL_FAKE_BACKEND_H

#include <math.h>

#include "backend/backend.h"

#define FAKE_MAXROWS 128

typedef struct fake_stats {
    int64_t forwards, tokens, logit_rows;
    int max_n_seq, max_n_tok;
    /* device sampling and launch / collect (fake_backend_async) */
    int64_t launches, prev_tokens, device_rows, pen_rows; /* pen_rows: rows penalized here (be->penalties) */
    int64_t launch_calls, fail_launch; /* the fail_launch-th call of launch fails (0: none; tests) */
    int max_in_flight;
    int prev_n;                        /* rows of the last launched step (-1: none) */
    int32_t prev_tok[FAKE_MAXROWS];    /* its sampled tokens (-1: not sampled here) */
    int q_head, q_n;                   /* launched, not collected: results in launch order */
    struct {
        int n;
        int32_t tok[FAKE_MAXROWS];
        float lp[FAKE_MAXROWS];
    } q[2];
} fake_stats;

static uint64_t fake_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t fake_step_hash(uint64_t h, int32_t tok, int pos) {
    return fake_mix(h ^ ((uint64_t)(tok + 1) * 0x9e3779b97f4a7c15ULL + (uint64_t)pos));
}
static float fake_logit(uint64_t h, int v) { return (float)(fake_mix(h * 31 + (uint64_t)v) >> 40) * (8.0f / 16777216.0f); }

/* The reference: greedy continuation of prompt computed from the ids alone. Stops at any of stop[]
 * (included) unless n_stop == 0. Returns the number of tokens written. */
static int fake_ref_greedy(const int32_t *prompt, int n_prompt, int n_vocab, int max_new, const int32_t *stop,
                           int n_stop, int32_t *out) {
    uint64_t h = 0;
    for (int i = 0; i < n_prompt; i++) h = fake_step_hash(h, prompt[i], i);
    int n = 0;
    while (n < max_new) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (fake_logit(h, v) > fake_logit(h, best)) best = v;
        out[n++] = best;
        bool stopped = false;
        for (int s = 0; s < n_stop; s++) stopped |= best == stop[s];
        if (stopped) break;
        h = fake_step_hash(h, best, n_prompt + n - 1);
    }
    return n;
}

static int fake_forward(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, float *logits, tl_error *e) {
    fake_stats *st = be->impl;
    int bs = kv->block_size, V = m->cfg.n_vocab;
    float *K = kv->k;
    st->forwards++;
    st->tokens += b->n_tok;
    st->logit_rows += b->n_logits;
    if (b->n_seq > st->max_n_seq) st->max_n_seq = b->n_seq;
    if (b->n_tok > st->max_n_tok) st->max_n_tok = b->n_tok;
    int expect_start = 0;
    for (int s = 0; s < b->n_seq; s++) { /* write (token, position) into each new token's block row */
        const tl_batch_seq *q = &b->seqs[s];
        if (q->tok_start != expect_start || q->n_new < 1) return tl_errf(e, "fake: seq %d not contiguous", s);
        expect_start += q->n_new;
        for (int j = 0; j < q->n_new; j++) {
            int t = q->tok_start + j, p = q->n_past + j;
            if (b->pos[t] != p) return tl_errf(e, "fake: token %d has position %d, expected %d", t, b->pos[t], p);
            int blk = q->block_table[p / bs];
            if (blk < 0 || blk >= kv->n_blocks) return tl_errf(e, "fake: bad block %d", blk);
            float *row = K + tl_kv_offset(kv, 0, blk, 0, p % bs);
            row[0] = (float)b->tokens[t];
            row[1] = (float)p;
        }
    }
    if (expect_start != b->n_tok) return tl_errf(e, "fake: seqs cover %d of %d tokens", expect_start, b->n_tok);
    for (int i = 0; i < b->n_logits; i++) {
        int r = b->logit_rows[i];
        if (r < 0 || r >= b->n_tok || (i > 0 && r <= b->logit_rows[i - 1])) return tl_errf(e, "fake: bad logit rows");
        const tl_batch_seq *q = NULL;
        for (int s = 0; s < b->n_seq; s++)
            if (r >= b->seqs[s].tok_start && r < b->seqs[s].tok_start + b->seqs[s].n_new) q = &b->seqs[s];
        int p = b->pos[r];
        uint64_t h = 0;
        for (int x = 0; x <= p; x++) { /* the history as the cache holds it */
            const float *row = K + tl_kv_offset(kv, 0, q->block_table[x / bs], 0, x % bs);
            if (!(row[1] == (float)x))
                return tl_errf(e, "fake: KV of position %d holds position %g (block table or prefix hit wrong)", x,
                               (double)row[1]);
            h = fake_step_hash(h, (int32_t)row[0], x);
        }
        for (int v = 0; v < V; v++) logits[(size_t)i * V + v] = fake_logit(h, v);
    }
    return 0;
}

/* ---- the fake's "device" sampler: greedy, or with temperature alone (no top-k / top-p / min-p) one draw with
 * the row's u by the inverse CDF of softmax(l / T); other rows it leaves to the host (tok -1, logits copied),
 * as the GPU does with rows it could not sample. The same in forward_sample and launch. ---- */
static int fake_row_on_device(const tl_backend *be, const tl_row_sampling *r, int n_vocab) {
    (void)be, (void)n_vocab;
    return !r->host && (!(r->temperature > 0.0f) || (r->top_k == 0 && !(r->top_p > 0.0f && r->top_p < 1.0f) &&
                                                    r->min_p == 0.0f));
}

static int32_t fake_sample_row(const float *l, int V, const tl_row_sampling *r, float *lp) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (l[v] > l[best]) best = v;
    double z = 0;
    for (int v = 0; v < V; v++) z += exp((double)l[v] - l[best]);
    int tok = best;
    if (r->temperature > 0.0f) {
        double zt = 0, acc = 0;
        for (int v = 0; v < V; v++) zt += exp(((double)l[v] - l[best]) / r->temperature);
        for (tok = 0; tok < V - 1; tok++) {
            acc += exp(((double)l[tok] - l[best]) / r->temperature) / zt;
            if (r->u < acc) break;
        }
    }
    *lp = (float)((double)l[tok] - l[best] - log(z));
    return tok;
}

/* The penalties of a row (be->penalties) from its entries and its batch token, each distinct token once: an
 * implementation of its own (the host sampler works from the whole history), the same arithmetic. */
static float fake_pen1(const tl_row_sampling *r, float v, int count) {
    if (r->repetition_penalty != 1.0f && r->repetition_penalty > 0.0f)
        v = v > 0 ? v / r->repetition_penalty : v * r->repetition_penalty;
    if (count > 0) v -= (float)count * r->frequency_penalty + r->presence_penalty;
    return v;
}
static void fake_penalize(float *l, int V, const tl_row_sampling *r, int32_t last) {
    int seen = 0;
    for (int j = 0; j < r->pen_n; j++) {
        const int32_t t = r->pen[2 * j];
        const int c = r->pen[2 * j + 1] + (t == last && r->last_gen);
        seen |= t == last;
        if (t >= 0 && t < V) l[t] = fake_pen1(r, l[t], c);
    }
    const int rep = r->repetition_penalty != 1.0f && r->repetition_penalty > 0.0f;
    if (!seen && last >= 0 && last < V && (rep || r->last_gen)) l[last] = fake_pen1(r, l[last], r->last_gen);
}

static int fake_forward_sample(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b,
                               const tl_row_sampling *rs, int32_t *tok, float *logprob, float *logits, tl_error *e) {
    fake_stats *st = be->impl;
    const int V = m->cfg.n_vocab;
    if (b->n_logits > FAKE_MAXROWS) return tl_errf(e, "fake: %d logit rows", b->n_logits);
    float *l = malloc((size_t)(b->n_logits > 0 ? b->n_logits : 1) * V * sizeof *l);
    int rc = fake_forward(be, m, kv, b, l, e);
    for (int i = 0; i < b->n_logits && !rc; i++) {
        if (fake_row_on_device(be, &rs[i], V) && tl_row_has_penalties(&rs[i])) {
            if (!be->penalties) {
                free(l);
                return tl_errf(e, "fake: row %d has penalties, which this backend does not apply", i);
            }
            fake_penalize(l + (size_t)i * V, V, &rs[i], b->tokens[b->logit_rows[i]]);
            st->pen_rows++;
        }
        if (fake_row_on_device(be, &rs[i], V)) {
            tok[i] = fake_sample_row(l + (size_t)i * V, V, &rs[i], &logprob[i]);
            st->device_rows++;
        } else {
            tok[i] = -1, logprob[i] = 0.0f;
            memcpy(logits + (size_t)i * V, l + (size_t)i * V, (size_t)V * sizeof *l);
        }
    }
    free(l);
    return rc;
}

/* launch: the placeholders resolved from the previous launch's rows, then the whole step at once (its K/V
 * writes happen in launch order, as on a stream); its results wait in the queue for collect. */
static int fake_launch(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, const tl_row_sampling *rs,
                       float *logits, tl_error *e) {
    fake_stats *st = be->impl;
    if (++st->launch_calls == st->fail_launch) return tl_errf(e, "fake: launch %lld fails (test)", (long long)st->fail_launch);
    if (st->q_n == 2) return tl_errf(e, "fake: a third step launched before a collect");
    int32_t *tk = malloc((size_t)(b->n_tok > 0 ? b->n_tok : 1) * sizeof *tk);
    for (int t = 0; t < b->n_tok; t++) {
        tk[t] = b->tokens[t];
        if (tk[t] >= -1) continue;
        const int r = TL_TOKEN_PREV_ROW(tk[t]);
        if (r >= st->prev_n || st->prev_tok[r] < 0) {
            free(tk);
            return tl_errf(e, "fake: token %d takes row %d of the previous step, which it did not sample", t, r);
        }
        tk[t] = st->prev_tok[r];
        st->prev_tokens++;
    }
    tl_batch b2 = *b;
    b2.tokens = tk;
    const int slot = (st->q_head + st->q_n) % 2;
    int rc = fake_forward_sample(be, m, kv, &b2, rs, st->q[slot].tok, st->q[slot].lp, logits, e);
    free(tk);
    if (rc) return -1;
    st->q[slot].n = b->n_logits;
    st->prev_n = b->n_logits;
    memcpy(st->prev_tok, st->q[slot].tok, (size_t)b->n_logits * sizeof *st->prev_tok);
    st->q_n++;
    st->launches++;
    if (st->q_n > st->max_in_flight) st->max_in_flight = st->q_n;
    return 0;
}

static int fake_collect(tl_backend *be, int32_t *tok, float *logprob, tl_error *e) {
    fake_stats *st = be->impl;
    if (!st->q_n) return tl_errf(e, "fake: collect with no step launched");
    const int slot = st->q_head;
    memcpy(tok, st->q[slot].tok, (size_t)st->q[slot].n * sizeof *tok);
    memcpy(logprob, st->q[slot].lp, (size_t)st->q[slot].n * sizeof *logprob);
    st->q_head = (st->q_head + 1) % 2;
    st->q_n--;
    return 0;
}

static size_t fake_budget(tl_backend *be, const tl_model *m) { return (size_t)64 << 20; }
static int fake_kv_alloc(tl_backend *be, tl_kv *kv, const tl_config *c, int bs, int nb, tl_dtype dt, tl_error *e) {
    int rc = tl_kv_init_host(kv, c, bs, nb, dt, e);
    if (!rc) memset(kv->k, 0xff, kv->bytes / 2); /* NaN: reading an unwritten row fails loudly */
    return rc;
}
static void fake_kv_free(tl_backend *be, tl_kv *kv) { tl_kv_free_host(kv); }

static void fake_backend_init(tl_backend *be, fake_stats *st) {
    memset(be, 0, sizeof *be);
    memset(st, 0, sizeof *st);
    be->name = "fake";
    be->kv_default_budget = fake_budget;
    be->kv_alloc = fake_kv_alloc;
    be->kv_free = fake_kv_free;
    be->forward = fake_forward;
    be->impl = st;
    st->prev_n = -1;
}

/* The fake with device sampling and launch / collect: the engine pipelines its steps on it. */
static void fake_backend_async(tl_backend *be) {
    be->forward_sample = fake_forward_sample;
    be->launch = fake_launch;
    be->collect = fake_collect;
    be->row_on_device = fake_row_on_device;
}

/* A model that is only a config: vocabulary, context, one layer of one KV head of width 2. */
static void fake_model_init(tl_model *m, int n_vocab, int n_ctx) {
    memset(m, 0, sizeof *m);
    m->cfg.n_vocab = n_vocab;
    m->cfg.n_ctx = n_ctx;
    m->cfg.n_layer = 1;
    m->cfg.n_head = m->cfg.n_head_kv = 1;
    m->cfg.head_dim = m->cfg.n_embd = 2;
    m->cfg.bos_id = -1;
    snprintf(m->name, sizeof m->name, "fake");
}

#endif

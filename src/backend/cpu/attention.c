/* attention.c: the naive paged attention, the reference the flash kernels are tested against.
 * For each (new token, query head): one full fp32 score row over the sequence's visible context,
 * read through the block table; softmax; weighted sum of V. Scratch: one score row per thread
 * (O(context) per thread, never n x n). */
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/flash.h"

typedef struct {
    const tl_attn_args *a;
    const int *tok_seq; /* [n_tok] sequence of each token */
    float *scratch;     /* [n_threads][max_ctx] score rows */
    int max_ctx;
} naive_ctx;

/* Fills tok_seq[n_tok] from the batch (every token belongs to exactly one sequence). Returns the
 * longest visible context (n_past + n_new) over the sequences. */
int tl_attn_map_tokens(const tl_batch *b, int *tok_seq) {
    int max_ctx = 0;
    for (int t = 0; t < b->n_tok; t++) tok_seq[t] = -1;
    for (int s = 0; s < b->n_seq; s++) {
        const tl_batch_seq *sq = &b->seqs[s];
        TL_ASSERT(sq->tok_start >= 0 && sq->n_new >= 0 && sq->tok_start + sq->n_new <= b->n_tok && sq->n_past >= 0);
        for (int j = 0; j < sq->n_new; j++) tok_seq[sq->tok_start + j] = s;
        if (sq->n_past + sq->n_new > max_ctx) max_ctx = sq->n_past + sq->n_new;
    }
    return max_ctx;
}

size_t tl_attn_naive_scratch_bytes(const tl_attn_args *a, int n_threads) {
    int max_ctx = 0;
    for (int s = 0; s < a->batch->n_seq; s++)
        max_ctx = TL_MAX(max_ctx, a->batch->seqs[s].n_past + a->batch->seqs[s].n_new);
    return (size_t)n_threads * (size_t)max_ctx * sizeof(float) + (size_t)a->batch->n_tok * sizeof(int);
}

static void naive_task(void *vctx, int task, int thread) {
    const naive_ctx *c = vctx;
    const tl_attn_args *a = c->a;
    const tl_kv *kv = a->kv;
    const int hd = kv->head_dim, bs = kv->block_size, n_head = a->n_head;
    const int t = task / n_head, h = task % n_head, g = h / (n_head / kv->n_head_kv);
    const int s = c->tok_seq[t];
    float *orow = a->out + ((size_t)t * n_head + h) * hd;
    if (s < 0) { /* a token no sequence claims: nothing to attend to */
        memset(orow, 0, (size_t)hd * sizeof(float));
        return;
    }
    const tl_batch_seq *sq = &a->batch->seqs[s];
    const int n_vis = sq->n_past + (t - sq->tok_start) + 1; /* positions 0..P+j */
    const float *qrow = a->q + ((size_t)t * n_head + h) * hd;
    const size_t esz = kv->dtype == TL_F32 ? 4 : 2;
    float *sc = c->scratch + (size_t)thread * c->max_ctx;
    float mx = -INFINITY;
    for (int p = 0; p < n_vis; p++) {
        const char *krow = (const char *)kv->k + tl_kv_offset(kv, a->layer, sq->block_table[p / bs], g, p % bs) * esz;
        float dot = 0;
        for (int d = 0; d < hd; d++) dot += qrow[d] * tl_kv_load(krow, d, kv->dtype);
        sc[p] = dot * a->scale;
        if (sc[p] > mx) mx = sc[p];
    }
    float sum = 0;
    for (int p = 0; p < n_vis; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    memset(orow, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p < n_vis; p++) {
        const char *vrow = (const char *)kv->v + tl_kv_offset(kv, a->layer, sq->block_table[p / bs], g, p % bs) * esz;
        float w = sc[p] / sum;
        for (int d = 0; d < hd; d++) orow[d] += w * tl_kv_load(vrow, d, kv->dtype);
    }
}

void tl_attn_naive(const tl_attn_args *a, tl_pool *pool) {
    const tl_batch *b = a->batch;
    TL_ASSERT(a->n_head > 0 && a->kv->n_head_kv > 0 && a->n_head % a->kv->n_head_kv == 0);
    if (b->n_tok <= 0) return;
    int *tok_seq = tl_malloc((size_t)b->n_tok * sizeof(int));
    naive_ctx c = {.a = a, .tok_seq = tok_seq};
    c.max_ctx = tl_attn_map_tokens(b, tok_seq);
    c.scratch = tl_malloc((size_t)tl_pool_size(pool) * (size_t)TL_MAX(c.max_ctx, 1) * sizeof(float));
    tl_pool_run(pool, naive_task, &c, b->n_tok * a->n_head);
    free(c.scratch);
    free(tok_seq);
}

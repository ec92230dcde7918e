/* cu_sample.h: next-token sampling on the GPU (sample.cu): a row's passes spread over many blocks (scratch),
 * or one block per logit row.
 *
 * Top-n logprobs (rows with n_top, sample_top.cu): the n largest raw logits as fill_logprobs gives them.
 * Same order and semantics as engine/sampler.c (penalties: tl_cu_penalize first): greedy (first maximum) when
 * temperature <= 0, else p_i = expf((l_i - max) / T) -> top-k -> top-p -> min-p -> one draw with the
 * request's uniform u (drawn on the host from its per-request RNG, so CPU and GPU see the same number).
 * Candidates are ordered (p desc, id asc) as the CPU sorts them; with neither top-k nor top-p they stay in
 * id order (as on the CPU). logprob = log_softmax(raw logits)[token] (fp32 terms, fp64 sums).
 * Differences from the CPU: expf may differ by an ulp and fp64 sums are added in another order, so two
 * candidates at a boundary (top-k/top-p cut, draw) can swap; greedy is exact.
 * Top-k must lie in the TL_CU_SAMPLE_CAP most likely tokens: a row with top_k > CAP gets token -1 (the host
 * samples it). Top-p alone first sorts a head of the TL_CU_SAMPLE_HEAD_P most likely tokens (chunked: then, if
 * that head does not reach the cut, every token of the chunks' union, up to 4096, walked exactly the same way); a
 * row whose top-p mass the head does not reach is sampled by mass searches over the whole row (integer masses of
 * 2^-40: a crossing may differ from sampler.c's fp64 sums at a boundary), so such rows never come back to the host
 * (since session 9: they can be pipelined). A NaN logit makes a row's p and sums NaN: the paths may then pick
 * different tokens (never out of range). */
#ifndef TL_CU_SAMPLE_H
#define TL_CU_SAMPLE_H

#include "backend/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_CU_SAMPLE_CAP 4096
/* top-p alone: the head sorted before the whole-row mass search (a trained model's top-p mass lies in a few
 * tokens; the 4096 of the CAP cost a 4096-key sort and thread 0's walks over them every sampled step) */
#define TL_CU_SAMPLE_HEAD_P 256

typedef struct tl_cu_samp {
    float temperature; /* <= 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* >= 1 or <= 0: off */
    float min_p;       /* 0: off */
    double u;          /* uniform in [0, 1), used when temperature > 0 */
    int skip;          /* 1: not sampled here (token -1, logprob 0) */
    int head;          /* top-p alone: the head's size, 0: TL_CU_SAMPLE_HEAD_P (comparisons: up to the CAP) */
    float rep, pres, freq; /* penalties (backend.h tl_row_sampling): 1, 0, 0 off; applied by tl_cu_penalize */
    int pen_off, pen_n;    /* the row's entries in tl_cu_penalize's list: pairs (token, count among generated) */
    int last_gen;          /* the row's batch token counts as generated */
    int n_top;             /* 0..TL_CU_TOPN: the top-n logprobs of the raw logits (tl_cu_top), 0: none */
} tl_cu_samp;

/* A row's top-n logprobs (sampler.c's fill_logprobs): the n largest raw logits (logit desc, id asc; NaN never
 * taken) as log_softmax values, lse as for the token's logprob */
#define TL_CU_TOPN 20
typedef struct tl_cu_top {
    int n;
    int32_t id[TL_CU_TOPN];
    float lp[TL_CU_TOPN];
} tl_cu_top;

#ifdef __CUDACC__
__host__ __device__
#endif
static inline int tl_cu_samp_has_pen(const tl_cu_samp *p) {
    return (p->rep != 1.0f && p->rep > 0.0f) || p->pres != 0.0f || p->freq != 0.0f;
}

/* A penalized row's raw log-sum-exp and its last token's raw logit (tl_cu_sample_top_raw / tl_cu_penalize) */
typedef struct tl_cu_lraw {
    double lse;
    float last;
    int pad;
} tl_cu_lraw;

typedef struct tl_cu_samp_out {
    int32_t token; /* -1: not sampled here */
    float logprob;
} tl_cu_samp_out;

/* logits: [n_rows, n_vocab] fp32 (device); p, out: [n_rows] (device). scratch: NULL (one block reads each row),
 * or tl_cu_sample_scratch_bytes() of device memory, zeroed once when allocated: each row's max, argmax and
 * log-sum-exp over many blocks first (batch 1: the step's sampling no longer one block's walk over the row);
 * the same tokens, logprobs within rounding (another fp64 summation order). chunked (with scratch): sampled rows
 * drawn over many blocks too (each chunk's largest p and mass once, the row's last block sorts their union and
 * walks it; rows whose head that union is not fall back to one block), else one block a sampled row. top (needs
 * scratch; NULL: none): [n_rows], for rows with p[i].n_top > 0 and not skip the top-n logprobs (tl_cu_top). */
#define TL_CU_SAMPLE_SCRATCH_ROWS 256
size_t tl_cu_sample_scratch_bytes(void);
int tl_cu_sample(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, tl_cu_samp_out *out,
                 void *scratch, int chunked, tl_cu_top *top, cudaStream_t st, tl_error *e);

/* Penalties on logits [n_rows, n_vocab] in place, before tl_cu_sample (engine/sampler.c's arithmetic, each
 * distinct token of a row once): rows with p[i] penalties and not skip take their entries pen[2 (pen_off + j)
 * ..] (token, its count among the generated tokens) and their last token tokens[rows[i]] (the batch's ids after
 * tl_cu_embed resolved them), counted as generated when last_gen. The sampler then draws from the penalized
 * row, and its logprob is of the penalized logits (raw ones on rows with top-n: below). raw, lr: NULL, or the
 * raw values of the logits rewritten on rows with n_top > 0 (raw: one float an entry, indexed as pen's). */
int tl_cu_penalize(float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, const int32_t *pen,
                   const int32_t *tokens, const int32_t *rows, float *raw, tl_cu_lraw *lr, cudaStream_t st,
                   tl_error *e);

/* Rows with penalties *and* top-n logprobs (their logprobs are of the raw logits, as sampler.c's fill_logprobs):
 * 1. tl_cu_sample_top_raw before tl_cu_penalize: the top-n of the raw logits into top[i] and the raw row's
 *    log-sum-exp into lr[i].lse, for rows with p[i].n_top > 0 (others untouched; needs the scratch);
 * 2. tl_cu_penalize with raw / lr: each rewritten logit's raw value saved first (raw[pen_off + j] for entry j,
 *    lr[i].last for the last token outside the entries), on rows with n_top > 0;
 * 3. tl_cu_sample without top (the token drawn from the penalized row);
 * 4. tl_cu_logprob_raw: out[i].logprob = raw logit of out[i].token - lr[i].lse on those rows. */
int tl_cu_sample_top_raw(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, void *scratch,
                         tl_cu_top *top, tl_cu_lraw *lr, cudaStream_t st, tl_error *e);
int tl_cu_logprob_raw(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, const int32_t *pen,
                      const int32_t *tokens, const int32_t *rows, const float *raw, const tl_cu_lraw *lr,
                      tl_cu_samp_out *out, cudaStream_t st, tl_error *e);

/* 1 when the kernel may answer -1 for a row with these parameters (the caller then checks). */
static inline int tl_cu_sample_may_defer(const tl_cu_samp *p, int n_vocab) {
    if (p->skip || !(p->temperature > 0.0f)) return 0;
    return p->top_k > TL_CU_SAMPLE_CAP && p->top_k < n_vocab;
}

#ifdef __cplusplus
}
#endif
#endif

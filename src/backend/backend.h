/* backend.h: a backend is a table of function pointers chosen at start. CPU always works;
 * CUDA exists when built with nvcc and a GPU is present.
 *
 * Granularity: a backend implements the whole forward pass over a tl_batch (the model math
 * lives in each backend's forward so the CUDA one can fuse ops and capture graphs); the CPU
 * forward (backend/cpu/forward.c) is the reference the others are tested against. */
#ifndef TL_BACKEND_H
#define TL_BACKEND_H

#include "kv/kv_cache.h"
#include "model/model.h"

/* Sampling parameters of one logit row for forward_sample (the engine fills them from tl_sampling). */
typedef struct tl_row_sampling {
    float temperature; /* 0: greedy (first maximum) */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    double u;          /* the request's uniform draw in [0, 1) (its RNG, on the host): used when temperature > 0 */
    int host;          /* 1: not sampled by the backend (top-n logprobs without be->collected_top, or with penalties
                        * without be->penalties_top; penalties where be->penalties is 0): copy its logits back */
    int n_logprobs;    /* > 0 (<= TL_MAX_LOGPROBS): the row's top-n logprobs too (be->collected_top) */
    /* Penalties (engine/sampler.c's, applied before the rest): repetition 1, presence 0, frequency 0: off. The
     * row's history (prompt + generated) but its last token as distinct tokens: pen[2j] a token, pen[2j + 1] how
     * often it occurs among the generated ones (with the repetition penalty off: only generated tokens); the last
     * token is the row's own batch token (b->logit_rows[i], perhaps a TL_TOKEN_PREV placeholder resolved on the
     * device), a generated one when last_gen. Only a backend with be->penalties reads these. */
    float repetition_penalty, presence_penalty, frequency_penalty;
    const int32_t *pen;
    int pen_n, last_gen;
} tl_row_sampling;

/* 1 when the row has a penalty to apply */
static inline int tl_row_has_penalties(const tl_row_sampling *rs) {
    return (rs->repetition_penalty != 1.0f && rs->repetition_penalty > 0.0f) || rs->presence_penalty != 0.0f ||
           rs->frequency_penalty != 0.0f;
}

typedef struct tl_backend tl_backend;
struct tl_backend {
    const char *name; /* "cpu" or "cuda" */
    /* Upload / repack the model's weights once. Called before the first forward. */
    int (*prepare)(tl_backend *be, tl_model *m, tl_error *e);
    /* Bytes the KV pool may take by default (CPU: a fixed default; CUDA: free memory * util). */
    size_t (*kv_default_budget)(tl_backend *be, const tl_model *m);
    int (*kv_alloc)(tl_backend *be, tl_kv *kv, const tl_config *c, int block_size, int n_blocks, tl_dtype dtype,
                    tl_error *e);
    void (*kv_free)(tl_backend *be, tl_kv *kv);
    /* One forward pass over the flat mixed batch: writes the new tokens' K/V into their blocks
     * and fills logits (host memory, [b->n_logits, n_vocab] fp32) for b->logit_rows. */
    int (*forward)(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, float *logits, tl_error *e);
    void (*free)(tl_backend *be);
    void *impl;
    int penalties; /* 1: forward_sample / launch apply rs[i]'s penalties on the device (else the engine sets host) */
    int penalties_top; /* 1: also on rows with top-n logprobs, whose logprob and top-n are then of the raw logits
                        * (else the engine sends such rows to the host) */
    /* Optional (NULL: the caller samples host logits from forward). The same forward, then each logit row i
     * is sampled on the device with rs[i] in the order and semantics of engine/sampler.c (penalties only with
     * be->penalties): tok[i] and logprob[i] (log_softmax of the raw logits; of the penalized ones on rows with
     * penalties and no top-n; rows with both: raw with be->penalties_top, else the engine sends them to the
     * host). Rows with rs[i].host set, and rows the device could not sample exactly (tok[i] == -1 on return: e.g. top-p mass beyond its candidate head), get
     * their logits copied to logits + i * n_vocab (host); only those rows. */
    int (*forward_sample)(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, const tl_row_sampling *rs,
                          int32_t *tok, float *logprob, float *logits, tl_error *e);
    /* Optional, all three or none (NULL): forward_sample in two halves, so that the caller schedules and launches
     * step t + 1 while step t runs and the device never waits for the host between steps.
     * launch: enqueues the step (forward, then sampling as forward_sample) and returns; it copies what it needs
     *   of b and rs, which the caller may reuse at once. b->tokens may hold TL_TOKEN_PREV(r): the token that the
     *   previous launched step sampled for its logit row r, resolved on the device (that row must satisfy
     *   row_on_device and not be rs.host). Rows with rs.host, and rows the device could not sample (tok -1),
     *   get their logits copied to logits + i * n_vocab, valid once the step is collected. Returns -1 on an
     *   error; then the step was not launched and is not collected.
     * collect: waits for the oldest launched step not yet collected and writes its tok[i], logprob[i] as
     *   forward_sample does. At most two steps are launched and not collected at any time; a collect that
     *   fails leaves the steps launched after it with undefined tokens (collect them, drop their results).
     * row_on_device: 1 when a row with these parameters is always sampled on the device (never tok -1; 0 for
     *   rs.host rows). */
    int (*launch)(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, const tl_row_sampling *rs,
                  float *logits, tl_error *e);
    int (*collect)(tl_backend *be, int32_t *tok, float *logprob, tl_error *e);
    int (*row_on_device)(const tl_backend *be, const tl_row_sampling *rs, int n_vocab);
    /* Optional (NULL: rows with n_logprobs go to the host): after collect (or forward_sample), the top-n logprobs
     * of logit row `row` of the step collected last, as sampler.c's fill_logprobs (raw logits; ids and logprobs
     * in order, logit desc, id asc): returns n (<= rs.n_logprobs; 0: the row had none or was not the device's). */
    int (*collected_top)(tl_backend *be, int row, int32_t *ids, float *logprobs);
};

/* A batch token for launch: the token the previous launched step sampled for its logit row r (r >= 0). */
#define TL_TOKEN_PREV(r) (-2 - (r))
#define TL_TOKEN_PREV_ROW(tok) (-2 - (tok)) /* r of a token < -1 */

typedef enum { TL_ATTN_FLASH = 0, TL_ATTN_NAIVE = 1 } tl_attn_impl;

/* CPU backend. n_threads <= 0: all online CPUs. */
tl_backend *tl_backend_cpu_new(int n_threads);
void tl_backend_cpu_set_attn(tl_backend *be, tl_attn_impl impl);
struct tl_pool *tl_backend_cpu_pool(tl_backend *be);

/* CUDA backend (device 0). Returns NULL with a message when not built with CUDA or no GPU. */
tl_backend *tl_backend_cuda_new(float gpu_mem_util, tl_error *e);

/* "cpu", "cuda" or "auto" (CUDA when available, else CPU). */
tl_backend *tl_backend_new(const char *name, int n_threads, float gpu_mem_util, tl_error *e);

#endif

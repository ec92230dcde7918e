/* cpu_ops.h: the CPU backend's kernels. Each has a scalar reference; SIMD versions are chosen at
 * run time (core/cpu.h) inside the dispatching function. All activations are fp32, row-major. */
#ifndef TL_CPU_OPS_H
#define TL_CPU_OPS_H

#include "core/pool.h"
#include "kv/kv_cache.h"
#include "model/model.h"

/* y[n_tok, w->rows] = x[n_tok, w->cols] @ W^T for any weight dtype. Threads over output rows. */
void tl_cpu_matmul(const tl_tensor *w, const float *x, float *y, int n_tok, tl_pool *pool);
/* y[i][n_tok, w[i]->rows] = x @ W[i]^T for n (<= 4) weights with one input (q/k/v, gate/up):
 * one pool dispatch over their concatenated rows and, for Q4, one activation quantization. */
void tl_cpu_matmul_n(const tl_tensor *const *w, float *const *y, int n, const float *x, int n_tok, tl_pool *pool);
/* The Q4 path as it was before the issue-4 decode work (row-at-a-time AVX2 kernel, scalar
 * activation quantization, fp32 panels above 4 tokens), for A/B runs: TL_Q4_KERNEL=old. */
void tl_cpu_matmul_old(const tl_tensor *w, const float *x, float *y, int n_tok, tl_pool *pool);
/* The scalar reference of the same (dequantizes one row at a time; slow, obviously right). */
void tl_cpu_matmul_ref(const tl_tensor *w, const float *x, float *y, int n_tok);

/* Dequantize row r of any weight into out[cols] (fp32). */
void tl_tensor_row_f32(const tl_tensor *w, int64_t r, float *out);

/* out[n_tok, n_embd] = rows ids[] of emb. */
void tl_cpu_embed(const tl_tensor *emb, const int32_t *ids, int n_tok, float *out);
/* y[n_tok, n] = x / sqrt(mean(x^2) + eps) * w  (w: [n] fp32). In place allowed. */
void tl_cpu_rmsnorm(const float *x, const float *w, float *y, int n_tok, int n, float eps);
/* Rotates q[n_tok, n_head, head_dim] and k[n_tok, n_head_kv, head_dim] in place by positions. */
void tl_cpu_rope(float *q, float *k, const int32_t *pos, int n_tok, int n_head, int n_head_kv, int head_dim,
                 float theta, tl_rope_kind kind);
/* gate[n] = silu(gate) * up (AVX2 e^x where available: within a few ulp of the scalar expf form) */
void tl_cpu_silu_mul(float *gate, const float *up, size_t n);
void tl_cpu_silu_mul_ref(float *gate, const float *up, size_t n); /* scalar expf reference */
size_t tl_cpu_silu_mul_avx2(float *gate, const float *up, size_t n); /* does the first n - n % 8 */
/* Writes the batch's new k/v rows ([n_tok, n_head_kv, head_dim] fp32) into their blocks. */
void tl_cpu_kv_write(tl_kv *kv, int layer, const tl_batch *b, const float *k, const float *v);

/* Attention over the paged cache for every new token of the batch (K/V of the new tokens
 * already written). q, out: [n_tok, n_head, head_dim]; causal: token at position p sees
 * positions 0..p of its own sequence; GQA: head h reads kv head h / (n_head / n_head_kv). */
typedef struct tl_attn_args {
    const tl_kv *kv;
    int layer;
    const tl_batch *batch;
    const float *q;
    float *out;
    int n_head;
    float scale; /* 1/sqrt(head_dim) */
} tl_attn_args;
/* Naive reference: one full score row per query (O(context) scratch per query), fp32. */
void tl_attn_naive(const tl_attn_args *a, tl_pool *pool);
/* Flash attention: tiled prefill with online softmax + split-context decode (backend/cpu/flash*.c). */
void tl_attn_flash(const tl_attn_args *a, tl_pool *pool);

/* Read element i of a KV row of the given dtype as fp32. */
static inline float tl_kv_load(const void *base, size_t i, tl_dtype t) {
    if (t == TL_F32) return ((const float *)base)[i];
    if (t == TL_BF16) return tl_bf16_to_f32(((const uint16_t *)base)[i]);
    return tl_f16_to_f32(((const uint16_t *)base)[i]);
}

#endif

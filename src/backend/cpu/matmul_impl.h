/* matmul_impl.h: private contract between the matmul driver (matmul.c) and its per-ISA kernel
 * tables (matmul.c scalar, matmul_avx2.c, matmul_avx512.c). Not part of any public API; tests
 * and benchmarks include it to force a tier or a path.
 *
 * y[n_tok, rows] = x[n_tok, cols] @ W^T. Two ways through:
 *  - "direct" (small n_tok, decode): the kernel streams each weight row once for a tile of up to
 *    TL_MM_DIRECT_T tokens; dense types dot fp32 x with the row; Q4 dots int8-quantized x
 *    (tl_mm_xq) with the 4-bit codes using integer multiply-adds.
 *  - "panel" (prefill, batched, Q8): a block of rows is dequantized to fp32 in a panel of
 *    TL_MM_KC columns at a time, then an fp32 register-blocked micro-GEMM runs all tokens over it. */
#ifndef TL_MATMUL_IMPL_H
#define TL_MATMUL_IMPL_H

#include "backend/cpu/cpu_ops.h"
#include "core/cpu.h"

#define TL_MM_DIRECT_T 4 /* tokens per direct-kernel tile */
#define TL_MM_KC 256     /* panel columns */
#define TL_MM_RB 24      /* panel rows per task (multiple of the micro-kernel's 3 rows) */
#define TL_MM_QB 32      /* activation quantization block (int8 path) */

/* Activations quantized for the Q4 int8 path. Per token, per 64-column chunk, the 64 int8 values
 * are stored permuted to match the nibble order of 32 packed bytes of MLX codes:
 * [block0 even cols (16), block1 even (16), block0 odd (16), block1 odd (16)], where block b is
 * the b-th 32-column quantization block of the chunk. A last 32-column block (cols % 64 == 32)
 * is stored [even (16), odd (16)]. x[k] ~= q[k] * d[k/32]. */
typedef struct tl_mm_xq {
    int8_t *q;    /* [n_tok, cols] permuted as above */
    float *d;     /* [n_tok, cols/32] block scales (max|x| / 127) */
    float *gsum;  /* [n_tok, cols/group] sum of the (unquantized) x over each weight group */
    float *d8;    /* [n_tok, ceil(cols/64) * 8] block scales spread for 8-lane SIMD: per 64-column
                   * chunk, lanes 0-3 hold d of its first 32-block, lanes 4-7 of its second (or 0) */
    int64_t cols;
    int group;
} tl_mm_xq;

typedef struct tl_mm_kernels {
    const char *name;
    /* out[0..n) = W[r, k0..k0+n) as fp32. k0 is a multiple of TL_MM_KC (so of the group). */
    void (*dequant)(const tl_tensor *w, int64_t r, int64_t k0, int n, float *out);
    /* y[t*ldy + i] += sum_{k<n} x[t*ldx + k] * p[i*ldp + k] for t < nt, i < nr. */
    void (*gemm)(const float *x, int64_t ldx, const float *p, int ldp, float *y, int64_t ldy, int nt, int nr, int n);
    /* Dense (F32/F16/BF16) weights, rows [r0, r1), nt <= TL_MM_DIRECT_T tokens:
     * y[t*ldy + r] = x[t*ldx ..] . W[r]. */
    void (*dot_dense)(const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int nt, float *y,
                      int64_t ldy);
    /* Q4 weights with int8 activations, rows [r0, r1), nt tokens (nt <= q4_tile when q4_tile > 0;
     * token t's data in xq at row t):
     * y[t*ldy + r] = sum_g s[r,g] * sum_{k in g} q[r,k]*xq[t,k]*d[t,k/32] + b[r,g]*gsum[t,g]. */
    void (*dot_q4i8)(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
                     int64_t ldy);
    /* Activation quantization for dot_q4i8: same contract as tl_mm_quantize_x (the scalar spec). */
    void (*quantize_x)(const float *x, int n_tok, int64_t cols, int group, tl_mm_xq *xq);
    /* Most tokens one dot_q4i8 call takes (the driver tiles above it); 0: any number. A kernel
     * that takes many keeps a block of weight rows in L1 while it runs all the tokens over it. */
    int q4_tile;
} tl_mm_kernels;

/* xq advanced to token row t0 (cols = xq->cols). */
static inline tl_mm_xq tl_mm_xq_at(const tl_mm_xq *xq, int t0) {
    tl_mm_xq v = *xq;
    v.q += (int64_t)t0 * xq->cols;
    v.d += (int64_t)t0 * (xq->cols / TL_MM_QB);
    v.gsum += (int64_t)t0 * (xq->cols / xq->group);
    v.d8 += (int64_t)t0 * TL_CDIV(xq->cols, 64) * 8;
    return v;
}

/* tl_mm_avx2_rows / tl_mm_avx512_rows: the AVX2 / AVX-512 tables with the previous Q4 kernel (one
 * weight row per pass, driver-tiled 4 tokens) and the scalar activation quantizer, kept for A/B
 * measurement (TL_Q4_KERNEL=old) and as test subjects. */
extern const tl_mm_kernels tl_mm_scalar, tl_mm_avx2, tl_mm_avx2_rows, tl_mm_avx512, tl_mm_avx512_rows;
const tl_mm_kernels *tl_mm_for_isa(tl_isa isa);
/* The tier the matmul driver uses here: tl_cpu_isa(), raised to AVX512 on a CPU that has AVX-512
 * F/BW/VL/DQ + VNNI but not BF16 (the matmul kernels need no BF16 instruction) unless TL_CPU caps it. */
tl_isa tl_mm_isa(void);

/* Shared by the 4-row Q4 kernels (AVX2 code; the AVX-512 kernel calls it too). */
/* st[g*4 + i] = fp32 scale of row r+i, group g (i < 4, g < ng): [ng][4], one 128-bit load per group. */
void tl_mm_sb_4rows(tl_dtype t, const void *p, int64_t r, int64_t ng, float *st);
/* bf[i*ngp + g] = fp32 bias of row r+i, group g, each row zero-padded to ngp (a multiple of 8). */
void tl_mm_b_4rows(tl_dtype t, const void *p, int64_t r, int64_t ng, int64_t ngp, float *bf);
/* Software prefetch distance (bytes) on the codes stream of the 4-row kernels. Measured on the AVX2
 * kernel (151936 x 896 Q4, 1 thread): 8.5 -> 13-16 GB/s with 4096 (2048: 9-12, 8192: 12-15): the
 * hardware prefetcher alone leaves the core waiting on DRAM between its bursts of integer work. */
#define TL_Q4_PF 4096

/* Path for Q4 weights: int8 activations for every n_tok (AUTO = I8, the default: see
 * docs/QUANT.md), fp32 FMA on dequantized panels (F32), or the previous choice (LEGACY: int8 up to
 * TL_MM_DIRECT_T tokens, fp32 panels above). */
typedef enum { TL_MM_Q4_AUTO = 0, TL_MM_Q4_I8 = 1, TL_MM_Q4_F32 = 2, TL_MM_Q4_LEGACY = 3 } tl_mm_q4_path;

/* The driver with an explicit kernel table and Q4 path (tl_cpu_matmul uses tl_mm_isa() + AUTO). */
void tl_mm_run(const tl_mm_kernels *k, tl_mm_q4_path q4, const tl_tensor *w, const float *x, float *y, int n_tok,
               tl_pool *pool);
/* n products over one input, y[i] = x @ w[i]^T (n <= TL_MM_MAX_PARTS): one activation
 * quantization and one pool dispatch over the concatenated rows when the weights agree in type,
 * cols and Q4 group; otherwise n separate runs. */
#define TL_MM_MAX_PARTS 4
void tl_mm_run_n(const tl_mm_kernels *k, tl_mm_q4_path q4, const tl_tensor *const *w, float *const *y, int n,
                 const float *x, int n_tok, tl_pool *pool);

/* Quantize x[n_tok, cols] into xq (buffers allocated by the caller with the sizes above).
 * Rounding: to nearest, ties to even (lrintf), d = max|x| / 127 per 32-block. The scalar
 * specification; tl_mm_quantize_x_avx2 gives bit-identical q, d, d8 (gsum: summation order only);
 * the AVX-512 table uses it too (0.3% of a decode step: no separate AVX-512 version). */
void tl_mm_quantize_x(const float *x, int n_tok, int64_t cols, int group, tl_mm_xq *xq);
void tl_mm_quantize_x_avx2(const float *x, int n_tok, int64_t cols, int group, tl_mm_xq *xq);

#endif

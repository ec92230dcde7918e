/* cuda_ops.h: the CUDA backend's kernels behind C entry points (launchers in *.cu). All pointers are
 * device pointers; every launcher is asynchronous on `st` and returns 0, or -1 with e filled (bad shape,
 * launch failure). Activations are fp32 row-major; weights are INT4 (tl_cu_q4) or bf16.
 * Each launcher has a scalar CPU reference it is tested against (tests/gpu/test_cuda_ops.c). */
#ifndef TL_CUDA_OPS_H
#define TL_CUDA_OPS_H

#include <cuda_runtime_api.h>

#if defined(__cplusplus) && !defined(_Noreturn)
#define _Noreturn [[noreturn]] /* core.h is C11; this header is also read by the .cu files */
#endif
#ifdef __cplusplus
extern "C" {
#endif
#include "core/core.h"


/* An INT4 matrix on the device, MLX affine group-wise: w = q * scale + bias.
 * codes: [rows, cols/8] uint32, 8 codes per word, lowest nibble first (the MLX order is kept: a warp
 *        reading one row moves 16 bytes per lane, 512 contiguous bytes per load, already coalesced).
 * sb:    [rows, cols/group] uint32 = (scale | bias << 16), the two 16-bit values interleaved at upload
 *        so one 4-byte load fetches both; sb_bf16: 1 bf16, 0 fp16. */
typedef struct tl_cu_q4 {
    int64_t rows, cols;
    int group; /* 32, 64 or 128 */
    int sb_bf16;
    int tiled; /* 1: the tensor-core layout of q4_mma.cu (codes and sb tiled by 16 rows), see there */
    const uint32_t *codes;
    const uint32_t *sb;
} tl_cu_q4;

/* Interleaves host scales/biases ([rows*ngroups] 16-bit each) into sb pairs (host -> host). */
void tl_cu_q4_pack_sb(const uint16_t *scales, const uint16_t *biases, size_t n, uint32_t *out);

/* Tiled (tensor-core) layout, made on the host at upload: out_codes [ceil(rows/16) * cols/64 * 32] x uint4,
 * out_sb [ceil(rows/16) * cols/group * 16] uint32. Needs cols % 64 == 0. Returns 0 or -1. */
int tl_cu_q4t_repack(const uint32_t *codes, const uint16_t *scales, const uint16_t *biases, int64_t rows, int64_t cols,
                     int group, uint32_t *out_codes, uint32_t *out_sb);
/* Tensor-core GEMV on the tiled layout: y[n_tok, rows] = x @ W^T (+ bias), n_tok 1..16; x rounded to fp16.
 * ws: device scratch of tl_cu_q4t_ws_bytes(cols) bytes. */
size_t tl_cu_q4t_ws_bytes(int64_t cols);
int tl_cu_q4t_gemv(const tl_cu_q4 *w, const float *x, const float *bias, float *y, int n_tok, void *ws, cudaStream_t st,
                   tl_error *e);
/* rows [r0, r0 + nr) of a tiled matrix to bf16 [nr, cols]; r0 % 16 == 0. */
int tl_cu_q4t_dequant_bf16(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st, tl_error *e);

/* One-launch tensor-core GEMV on the tiled layout (q4_gemv.cu), n_tok 1..16:
 *   y[t, r] = sum_k W[r, k] * X(t, k) (+ bias[r]) (+ resid[t, r])
 * with X(t, k) by x_mode, computed in the kernel's prologue and rounded to fp16 into shared memory:
 *   TL_CU_X_PLAIN   x[t, k]
 *   TL_CU_X_RMSNORM x[t, k] * rsqrt(mean_k(x[t, :]^2) + eps) * norm_w[k]   (the RMSNorm before q/k/v, gate/up)
 *   TL_CU_X_SILU    silu(x[t, k]) * x[t, cols + k]                          (gate/up rows -> down_proj input)
 *   TL_CU_X_F16     x16[t, k] (fp16; x_stride in halves)          (down_proj after a y_silu16 gate/up GEMV)
 * x rows are x_stride floats apart. resid may equal y (in-place residual add: x += W h). Deterministic:
 * one block computes a 16-row tile over all of K, warps reduce in shared memory in a fixed order. Needs
 * cols % 64 == 0 and tl_cu_q4g_fits(cols, n_tok) (x of all tokens in shared memory). pdl: launched as a
 * programmatic dependent (weights prefetched before waiting on the previous kernel). */
enum { TL_CU_X_PLAIN = 0, TL_CU_X_RMSNORM = 1, TL_CU_X_SILU = 2, TL_CU_X_F16 = 3 };
typedef struct tl_cu_gemv_args {
    const tl_cu_q4 *w;
    const float *x;
    const uint16_t *x16; /* TL_CU_X_F16's input */
    int x_stride;
    int x_mode;
    uint16_t *y_silu16; /* non-NULL: the matrix is gate/up ([gate; up] rows, rows % 32 == 0) and instead of y the
                         * GEMV writes h[t, r] = fp16(silu(gate_r + bias) * (up_r + bias)), [n_tok][rows / 2]:
                         * a block takes gate tile j and up tile j + rows / 32 in turn. The same bits as
                         * TL_CU_X_SILU's prologue computes from y (no resid) */
    const float *norm_w;
    float eps;
    const float *bias;
    const float *resid;
    float *y;
    int n_tok;
    int pdl;
    int impl; /* 0 (or TL_CU_GEMV_V3): the kernel. TL_CU_GEMV_RING / _MATH: benchmark probes only (wrong
               * results): the weight ring without the math (consumers wait and release stages), the math without
               * the ring (no loads, no waits); n_tok <= 8, group 64, fp16 */
    int grid; /* > 0: at most this many blocks (the persistent grid; leaves multiprocessors free for the next
               * kernel's blocks, which start as programmatic dependents); 0: one a multiprocessor */
    int ring; /* at most this many ring stages (0: as many as fit; tests use 2 to wrap the ring often) */
    int dbg; /* benchmark probes only (wrong results), bits: 2 no x prologue, 4 no epilogue loads / stores,
              * 8 the loop prologues (two-pass RMSNorm, SiLU in rounds) even at n_tok 1 (what each costs), 16 the
              * RMSNorm weights loaded after the PDL wait (the same results), 32 the one-pass fp16 prologue only up
              * to 20480 columns, as before 72B's 29568 were covered (the same results), 128 at one token v4
              * instead of v5 (the same results), bits 12-14 (x first, q4_gemv.cu gs_xfirst) 7 the old
              * order (every ring stage issued before x), n < 7 n - 1 stages before x (the same results), 1024 every tile
              * reads tile (its index % 64)'s weights (L2-resident after their first use: the consumers' speed) */
    unsigned long long *trace; /* measurement: the launch's trace row (tl_cu_mark), or NULL */
} tl_cu_gemv_args;
enum { TL_CU_GEMV_V3 = 5, TL_CU_GEMV_RING = 6, TL_CU_GEMV_MATH = 7 };
int tl_cu_q4g_fits(int64_t cols, int n_tok);
int tl_cu_q4g_gemv(const tl_cu_gemv_args *a, cudaStream_t st, tl_error *e);
/* measurement (cuda_backend.c): the trace of the last traced decode step, see TL_CUDA_TRACE there: rows of
 * TL_CU_TRACE_ROW u64 (tl_cu_mark's 4 stamps of up to TL_CU_TRACE_ROW / 4 blocks), 6 a layer, at most
 * TL_CU_TRACE_ROWS */
enum { TL_CU_TRACE_ROW = 1024, TL_CU_TRACE_ROWS = 6 * 128 };
struct tl_backend;
long tl_cuda_trace_read(struct tl_backend *be, unsigned long long *out, long n);
/* measurement (cuda_backend.c): the last captured decode graph replayed n times back to back, ms a replay */
double tl_cuda_graph_replay_ms(struct tl_backend *be, int n);

/* INT4 GEMM on tensor cores on the tiled layout (q4_gemm.cu), for 17..512 token rows (batched decode, mixed
 * batches; any n >= 1 works): y[n, rows] = x[n, cols] @ W^T (+ bias). x is rounded to fp16 into xh, weights are
 * dequantized to fp16 in registers (rel err ~3e-4 against the fp32 reference). Small matrices split K over
 * blocks: partials in part ([split][n][rows] floats, at most part_floats; NULL: no split), summed in a fixed
 * order (deterministic). cfg: 0 picks by n (tl_cu_q4t_gemm_cfg), else 1..TL_CU_GEMM_NCFG (block shapes and
 * pipelines, named by tl_cu_q4t_gemm_cfg_name; see q4_gemm.cu); split: 0 picks, else forced (tests, benchmarks). */
enum { TL_CU_GEMM_NCFG = 5 };
typedef struct tl_cu_gemm_args {
    const tl_cu_q4 *w;   /* tiled */
    const float *x;      /* [n, cols] */
    const float *bias;   /* [rows] or NULL */
    float *y;            /* [n, rows] */
    int n;
    uint16_t *xh;        /* scratch: [n, cols] fp16 */
    float *part;         /* scratch for split-K partials, part_floats floats (NULL: no split) */
    size_t part_floats;
    int cfg, split;
    int no_rot;          /* 1: every row block walks K from its start (measured against the rotated default) */
} tl_cu_gemm_args;
int tl_cu_q4t_gemm(const tl_cu_gemm_args *a, cudaStream_t st, tl_error *e);
int tl_cu_q4t_gemm_cfg(int n);
const char *tl_cu_q4t_gemm_cfg_name(int cfg);

/* y[n_tok, rows] = x[n_tok, cols] @ W^T (+ bias[rows] if non-NULL); n_tok in 1..16 (decode / small batch).
 * The MLX-layout CUDA-core version (fp32 math; the fallback when cols % 64 != 0). */
int tl_cu_q4_gemv(const tl_cu_q4 *w, const float *x, const float *bias, float *y, int n_tok, cudaStream_t st,
                  tl_error *e);
/* out[nr, cols] bf16 = rows r0 .. r0+nr of W, dequantized (prefill path: then cuBLAS bf16). */
int tl_cu_q4_dequant_bf16(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st, tl_error *e);
/* The prefill path's bf16 producers (prefill_ops.cu): rmsnorm with bf16 output (= tl_cu_rmsnorm's value,
 * rounded); out[n_tok, n_ff] bf16 = silu(g) * u from bf16 gu [n_tok, 2 n_ff] (n_ff % 8 == 0); and the tiled
 * dequantize with whole-line stores (bit-identical to tl_cu_q4t_dequant_bf16, cols % 64 == 0). */
int tl_cu_rmsnorm_bf16(float *x, const float *d, const float *w, uint16_t *y, int n_tok, int n, float eps,
                       cudaStream_t st, tl_error *e);
int tl_cu_silu_mul_bf16(const uint16_t *gu, uint16_t *out, int n_tok, int n_ff, cudaStream_t st, tl_error *e);
int tl_cu_q4t_dequant_bf16_lines(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st,
                                 tl_error *e);
/* y[n] bf16 = x[n] fp32 (round to nearest even). */
int tl_cu_f32_to_bf16(const float *x, uint16_t *y, size_t n, cudaStream_t st, tl_error *e);
/* y[n_tok, n] += bias[n] */
int tl_cu_add_bias(float *y, const float *bias, int n_tok, int n, cudaStream_t st, tl_error *e);

/* y[n_tok, n] = x / sqrt(mean(x^2) + eps) * w. If d != NULL, first x += d (residual add, x updated). */
int tl_cu_rmsnorm(float *x, const float *d, const float *w, float *y, int n_tok, int n, float eps, cudaStream_t st,
                  tl_error *e);
/* out[n_tok, n_ff] = silu(gu[t, i]) * gu[t, n_ff + i]   (gu: [n_tok, 2*n_ff], gate then up) */
int tl_cu_silu_mul(const float *gu, float *out, int n_tok, int n_ff, cudaStream_t st, tl_error *e);
/* out[n_tok, n_embd] = rows ids[] of an INT4 (q4 != NULL) or bf16 ([n_vocab, n_embd]) embedding. An id
 * TL_TOKEN_PREV(r) (backend.h: -2 - r, any id < -1) stands for prev[r].token, the token the previous step sampled
 * for its logit row r (prev: its tl_cu_samp_out rows, cu_sample.h; the host checked every r; the previous step's
 * sampling comes before on `st`, this step's after), written back to ids (resolved); prev NULL: such ids give
 * zeros. */
struct tl_cu_samp_out;
int tl_cu_embed(const tl_cu_q4 *q4, const uint16_t *bf16, int64_t n_vocab, int n_embd, int32_t *ids,
                const struct tl_cu_samp_out *prev, int n_tok, float *out, cudaStream_t st, tl_error *e);
/* out[n, cols] = rows idx[n] of x[*, cols] */
int tl_cu_gather_rows(const float *x, const int32_t *idx, int n, int cols, float *out, cudaStream_t st, tl_error *e);

/* RoPE on q and k inside qkv ([n_tok, (n_head + 2*n_head_kv) * head_dim]: q heads, k heads, v heads),
 * in place, then writes k and v of each token into the paged cache at slot[t] (= block * block_size + row).
 * kcache, vcache: this layer's [n_blocks][n_head_kv][block_size][head_dim] of kv_dtype (TL_F32/F16/BF16). */
typedef struct tl_cu_rope_args {
    float *qkv;
    int n_tok, n_head, n_head_kv, head_dim;
    const int32_t *pos;  /* [n_tok] rotary positions */
    const int32_t *slot; /* [n_tok] KV slots */
    float theta;
    int neox;            /* 1: x[i] with x[i + d/2]; 0: x[2i] with x[2i+1] */
    void *kcache, *vcache;
    int kv_dtype, block_size;
    int pdl;             /* launch as a programmatic dependent (see cu_common.cuh) */
} tl_cu_rope_args;
int tl_cu_rope_kv_write(const tl_cu_rope_args *a, cudaStream_t st, tl_error *e);

/* Paged attention for every new token (its K/V already written), causal within its sequence:
 * token t sees context positions 0 .. ctx_len[t]-1 of its sequence, read through its block table.
 * The context is split over thread blocks (flash-decoding) when there are few tokens; partials are
 * merged by the last slice to finish (counters given) or by a second kernel. q: inside qkv (row stride
 * q_stride floats); out: [n_tok, n_head*head_dim]. */
typedef struct tl_cu_attn_args {
    const float *q;
    int q_stride;
    float *out;
    int n_tok, n_head, n_head_kv, head_dim;
    float scale;
    const void *kcache, *vcache; /* this layer, as in tl_cu_rope_args */
    int kv_dtype, block_size;
    const int32_t *ctx_len;      /* [n_tok] */
    const int32_t *bt_off;       /* [n_tok] offset of the token's block table in bt */
    const int32_t *bt;           /* flat block tables */
    float *partial;              /* scratch: [n_tok * n_head * max_split * (head_dim + 2)] floats */
    int max_split;               /* splits allowed by the scratch (1: no split) */
    int max_ctx;                 /* upper bound of ctx_len (host side, picks the split count) */
    int n_sm;                    /* multiprocessors (split heuristic) */
    int split_keys;              /* context positions per slice at least (0: 128) */
    int *counters;               /* [n_tok * n_head_kv] ints, zero (left zero): the last slice merges in the
                                  * same kernel; NULL: a second (merge) kernel */
    int merge_cluster;           /* tl_cu_attention_decode(_rope) with 2..8 slices: each token's slices are one
                                  * thread-block cluster, merged through distributed shared memory (no partials,
                                  * no merge kernel; over counters); attn.cu ignores it */
    int pdl;                     /* launch as a programmatic dependent (see cu_common.cuh) */
    unsigned long long *trace, *trace_merge; /* measurement: trace rows of the attention / merge launches, or NULL */
} tl_cu_attn_args;
int tl_cu_attention(const tl_cu_attn_args *a, cudaStream_t st, tl_error *e);
/* How many context slices tl_cu_attention will use for these arguments (a pure function of them). */
int tl_cu_attention_splits(const tl_cu_attn_args *a);

/* Flash attention on tensor cores for prefill chunks (attn_prefill.cu): the same arguments, but only the
 * query rows of `tiles` ([n_tiles][2] device int32: first token, token count; consecutive tokens of one
 * sequence, at most tl_cu_prefill_tile_tokens() of them) are computed; a->n_tok, partial, max_split and
 * n_sm are unused. Supported when tl_cu_attention_prefill_ok(): head_dim 64/128, KV bf16/f16. q and P
 * are rounded to the KV type for the tensor cores (rel err ~1e-3 against the fp32 reference).
 * rows: query rows per block, 64 (4 warps, 2 blocks an SM) or 128 (8 warps); others mean 64. A row is
 * (token, query head of the KV head), so a tile holds rows / (n_head / n_head_kv) tokens. */
int tl_cu_attention_prefill_ok(int head_dim, int kv_dtype, int n_head, int n_head_kv);
int tl_cu_prefill_rows(int rows);
int tl_cu_prefill_tile_tokens(int n_head, int n_head_kv, int rows);
int tl_cu_attention_prefill(const tl_cu_attn_args *a, const int32_t *tiles, int n_tiles, int rows, cudaStream_t st,
                            tl_error *e);

/* Tensor-core paged attention for the non-prefill tokens (attn_decode.cu): the arguments and results of
 * tl_cu_attention (every token of a->n_tok, its own ctx_len; the same split count tl_cu_attention_splits(a),
 * partial layout and merge; a->counters: merged by the last slice; a->merge_cluster; a->pdl honoured), for
 * head_dim 64/128, KV bf16/f16, n_head / n_head_kv <= 16 (tl_cu_attention_decode_ok). q and P are rounded to the KV type (rel err ~1e-3 .. 1e-2). */
int tl_cu_attention_decode_ok(int head_dim, int kv_dtype, int n_head, int n_head_kv);
int tl_cu_attention_decode(const tl_cu_attn_args *a, cudaStream_t st, tl_error *e);
/* The same with RoPE and the KV write of tl_cu_rope_kv_write(r) done inside (one kernel instead of two; the
 * decode step's common case): every token must be the only new token of its sequence (its position in the
 * context is ctx_len - 1, written at slot[t]). a->q = r->qkv holds the raw (unrotated) q/k/v rows, q_stride
 * their length; q is rotated in registers (qkv is left as it was), k and v go to the cache. Equal bit for bit
 * to tl_cu_rope_kv_write then tl_cu_attention_decode (same RoPE code, cu_common.cuh). With a->counters the
 * last slice merges (no merge kernel), as in tl_cu_attention_decode. */
int tl_cu_attention_decode_rope(const tl_cu_attn_args *a, const tl_cu_rope_args *r, cudaStream_t st, tl_error *e);

#ifdef __cplusplus
}
#endif
#endif

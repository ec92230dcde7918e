/* ops.cu: small fused ops of the forward pass: RMSNorm (+ residual add), SiLU*mul, embedding gather,
 * row gather, the previous step's sampled tokens into this step's ids, RoPE + paged KV write. fp32 math
 * throughout (as the CPU reference). */
#include "backend/cuda/cu_common.cuh"
#include "backend/backend.h"          /* TL_TOKEN_PREV_ROW */
#include "backend/cuda/cu_sample.h" /* tl_cu_samp_out */

/* y element: fp32 as is, or rounded to bf16 (the prefill path's cuBLAS input) */
static __device__ __forceinline__ void rms_store(float *y, float v) { *y = v; }
static __device__ __forceinline__ void rms_store(uint16_t *y, float v) { *y = tl_cu_f32_bf16(v); }

/* One block per token: optional x += d, then y = x * rsqrt(mean(x^2) + eps) * w, y fp32 or bf16 (the same
 * arithmetic and reduction order either way). */
template <typename Y>
__global__ void rmsnorm_kernel(float *__restrict__ x, const float *__restrict__ d, const float *__restrict__ w,
                               Y *__restrict__ y, int n, float eps) {
    float *xr = x + (size_t)blockIdx.x * n;
    Y *yr = y + (size_t)blockIdx.x * n;
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (d) {
            v += d[(size_t)blockIdx.x * n + i];
            xr[i] = v;
        }
        ss += v * v;
    }
    __shared__ float red[32];
    ss = tl_cu_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
        v = tl_cu_warp_sum(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    float inv = rsqrtf(red[0] / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = xr[i] * inv * w[i];
        rms_store(yr + i, v);
    }
}

extern "C" int tl_cu_rmsnorm(float *x, const float *d, const float *w, float *y, int n_tok, int n, float eps,
                             cudaStream_t st, tl_error *e) {
    if (n_tok <= 0) return 0;
    rmsnorm_kernel<float><<<n_tok, 256, 0, st>>>(x, d, w, y, n, eps);
    TL_CU_LAUNCHED(e, "rmsnorm");
}

extern "C" int tl_cu_rmsnorm_bf16(float *x, const float *d, const float *w, uint16_t *y, int n_tok, int n, float eps,
                                  cudaStream_t st, tl_error *e) {
    if (n_tok <= 0) return 0;
    rmsnorm_kernel<uint16_t><<<n_tok, 256, 0, st>>>(x, d, w, y, n, eps);
    TL_CU_LAUNCHED(e, "rmsnorm_bf16");
}

__global__ void silu_mul_kernel(const float *__restrict__ gu, float *__restrict__ out, int n_tok, int n_ff) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * n_ff) return;
    size_t t = i / n_ff, j = i % n_ff;
    float g = gu[t * 2 * n_ff + j], u = gu[t * 2 * n_ff + n_ff + j];
    out[i] = g / (1.f + expf(-g)) * u;
}

extern "C" int tl_cu_silu_mul(const float *gu, float *out, int n_tok, int n_ff, cudaStream_t st, tl_error *e) {
    size_t n = (size_t)n_tok * n_ff;
    if (n == 0) return 0;
    silu_mul_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(gu, out, n_tok, n_ff);
    TL_CU_LAUNCHED(e, "silu_mul");
}

/* One block per token. Out-of-range ids write zeros (the host checks ids before upload). An id TL_TOKEN_PREV(r)
 * (< -1) is the token prev[r] that the previous step sampled (prev NULL: none, zeros): resolved here on the
 * device, so a step can be launched before the previous one's tokens reach the host, and written back to ids[t]
 * (the step's penalties read a row's last token there, after this kernel; every thread reads the same id). */
__global__ void embed_kernel(const uint32_t *__restrict__ codes, const uint32_t *__restrict__ sb, int sb_bf16,
                             int group, const uint16_t *__restrict__ bf16, int64_t n_vocab, int n_embd,
                             int32_t *ids, const tl_cu_samp_out *__restrict__ prev, float *__restrict__ out) {
    int t = blockIdx.x;
    int64_t id = ids[t];
    if (id < -1 && prev) {
        id = prev[TL_TOKEN_PREV_ROW(id)].token;
        __syncthreads(); /* every thread has read ids[t] */
        if (threadIdx.x == 0) ids[t] = (int32_t)id;
    }
    float *o = out + (size_t)t * n_embd;
    bool ok = id >= 0 && id < n_vocab;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) {
        float v = 0.f;
        if (ok && codes) {
            uint32_t w = codes[id * (n_embd / 8) + i / 8];
            uint32_t p = sb[id * (n_embd / group) + i / group];
            float s, b;
            if (sb_bf16) {
                s = __uint_as_float(p << 16);
                b = __uint_as_float(p & 0xffff0000u);
            } else {
                s = tl_cu_f16f((uint16_t)(p & 0xffffu));
                b = tl_cu_f16f((uint16_t)(p >> 16));
            }
            v = (float)((w >> (4 * (i % 8))) & 15u) * s + b;
        } else if (ok) {
            v = tl_cu_bf16f(bf16[id * n_embd + i]);
        }
        o[i] = v;
    }
}

extern "C" int tl_cu_embed(const tl_cu_q4 *q4, const uint16_t *bf16, int64_t n_vocab, int n_embd, int32_t *ids,
                           const tl_cu_samp_out *prev, int n_tok, float *out, cudaStream_t st, tl_error *e) {
    if (n_tok <= 0) return 0;
    embed_kernel<<<n_tok, 256, 0, st>>>(q4 ? q4->codes : NULL, q4 ? q4->sb : NULL, q4 ? q4->sb_bf16 : 0,
                                        q4 ? q4->group : 1, bf16, n_vocab, n_embd, ids, prev, out);
    TL_CU_LAUNCHED(e, "embed");
}

__global__ void gather_kernel(const float *__restrict__ x, const int32_t *__restrict__ idx, int cols,
                              float *__restrict__ out) {
    const float *src = x + (size_t)idx[blockIdx.x] * cols;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) out[(size_t)blockIdx.x * cols + i] = src[i];
}

extern "C" int tl_cu_gather_rows(const float *x, const int32_t *idx, int n, int cols, float *out, cudaStream_t st,
                                 tl_error *e) {
    if (n <= 0) return 0;
    gather_kernel<<<n, 256, 0, st>>>(x, idx, cols, out);
    TL_CU_LAUNCHED(e, "gather_rows");
}

/* grid (n_tok, n_head + n_head_kv), block head_dim/2 threads: each thread rotates one pair of one head.
 * Blocks of k heads (and v, which only copies) also write the cache. inv_freq[i] = theta^(-2i/d). */
template <int DT>
__global__ void rope_kv_kernel(float *__restrict__ qkv, int n_head, int n_head_kv, int hd,
                               const int32_t *__restrict__ pos, const int32_t *__restrict__ slot, float theta,
                               int neox, typename tl_cu_kv<DT>::T *kc, typename tl_cu_kv<DT>::T *vc, int bs) {
    const int t = blockIdx.x, h = blockIdx.y, i = threadIdx.x; /* pair index 0 .. hd/2 */
    const int row_len = (n_head + 2 * n_head_kv) * hd;
    tl_cu_pdl_wait(); /* qkv comes from the previous kernel */
    tl_cu_pdl_trigger();
    float *x = qkv + (size_t)t * row_len + (size_t)h * hd; /* q head h, or k head h - n_head */
    float c, s; /* as the CPU reference (cu_common.cuh) */
    tl_cu_rope_cs(theta, i, hd, pos[t], &c, &s);
    int i0 = neox ? i : 2 * i, i1 = neox ? i + hd / 2 : 2 * i + 1;
    const float2 r = tl_cu_rope_rot(x[i0], x[i1], c, s);
    const float ra = r.x, rb = r.y;
    x[i0] = ra;
    x[i1] = rb;
    if (h >= n_head) {
        int kh = h - n_head;
        int sl = slot[t], blk = sl / bs, row = sl % bs;
        size_t off = (((size_t)blk * n_head_kv + kh) * bs + row) * hd;
        tl_cu_kv<DT>::store(kc + off, i0, ra);
        tl_cu_kv<DT>::store(kc + off, i1, rb);
        const float *v = qkv + (size_t)t * row_len + (size_t)(n_head + n_head_kv + kh) * hd;
        tl_cu_kv<DT>::store(vc + off, i0, v[i0]);
        tl_cu_kv<DT>::store(vc + off, i1, v[i1]);
    }
}

extern "C" int tl_cu_rope_kv_write(const tl_cu_rope_args *a, cudaStream_t st, tl_error *e) {
    if (a->n_tok <= 0) return 0;
    if (a->head_dim % 2 || a->head_dim > 2048) return tl_errf(e, "cuda rope: head_dim %d must be even", a->head_dim);
    dim3 grid((unsigned)a->n_tok, (unsigned)(a->n_head + a->n_head_kv));
    int th = a->head_dim / 2;
    cudaError_t err;
    switch (a->kv_dtype) {
    case TL_F32:
        err = tl_cu_launch(rope_kv_kernel<TL_F32>, grid, dim3(th), 0, st, a->pdl, a->qkv, a->n_head, a->n_head_kv,
                           a->head_dim, a->pos, a->slot, a->theta, a->neox, (float *)a->kcache, (float *)a->vcache,
                           a->block_size);
        break;
    case TL_BF16:
        err = tl_cu_launch(rope_kv_kernel<TL_BF16>, grid, dim3(th), 0, st, a->pdl, a->qkv, a->n_head, a->n_head_kv,
                           a->head_dim, a->pos, a->slot, a->theta, a->neox, (uint16_t *)a->kcache,
                           (uint16_t *)a->vcache, a->block_size);
        break;
    case TL_F16:
        err = tl_cu_launch(rope_kv_kernel<TL_F16>, grid, dim3(th), 0, st, a->pdl, a->qkv, a->n_head, a->n_head_kv,
                           a->head_dim, a->pos, a->slot, a->theta, a->neox, (uint16_t *)a->kcache,
                           (uint16_t *)a->vcache, a->block_size);
        break;
    default: return tl_errf(e, "cuda rope: kv dtype %d not supported", a->kv_dtype);
    }
    if (err != cudaSuccess) return tl_errf(e, "cuda: rope_kv_write: %s", cudaGetErrorString(err));
    TL_CU_LAUNCHED(e, "rope_kv_write");
}

/* attn.cu: paged attention over the KV cache for a flat mixed batch (prefill chunks and decodes).
 *
 * Grid (n_tok * n_split, n_head_kv), 4 warps a block. A block takes one token, one KV head and one
 * slice of the token's context, and serves all n_head/n_head_kv query heads of that KV head (GQA: K/V
 * read once per group). Each warp walks 32-key tiles: lane j scores key j for every query head (q in
 * shared memory), online softmax per head, then the lanes split head_dim to accumulate p * V. The
 * warps merge in shared memory; with n_split > 1 (few tokens, long context: flash-decoding) each slice
 * writes (m, l, acc) and a second kernel merges the slices. fp32 math, K/V in the cache's dtype.
 * This is the CUDA-core version: right for any batch, fast for decode; prefill would want tensor cores. */
#include <math.h>

#include "backend/cuda/cu_common.cuh"

#define ATT_WARPS 4
#define ATT_MAXQG 8

/* 8 consecutive elements of a K row as fp32 (16-bit types: one 16-byte load). */
template <int DT> struct kv8;
template <> struct kv8<TL_F32> {
    static __device__ __forceinline__ void load(const float *p, float o[8]) {
        float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
        o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
    }
};
template <> struct kv8<TL_BF16> {
    static __device__ __forceinline__ void load(const uint16_t *p, float o[8]) {
        uint4 r = *(const uint4 *)p;
        uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int k = 0; k < 4; k++) o[2 * k] = __uint_as_float(w[k] << 16), o[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
};
template <> struct kv8<TL_F16> {
    static __device__ __forceinline__ void load(const uint16_t *p, float o[8]) {
        uint4 r = *(const uint4 *)p;
        const __half2 *h = (const __half2 *)&r;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __half22float2(h[k]);
            o[2 * k] = f.x, o[2 * k + 1] = f.y;
        }
    }
};

/* DL consecutive elements of a V row as fp32 (one 4/8/16-byte load where DL allows). */
template <int DT, int DL> static __device__ __forceinline__ void vrow(const typename tl_cu_kv<DT>::T *p, float o[DL]) {
    if (DT == TL_F32 && DL == 4) {
        const float4 r = *(const float4 *)p;
        o[0] = r.x, o[1] = r.y, o[2] = r.z, o[3 % DL] = r.w;
    } else if (DT != TL_F32 && DL == 4) {
        union { uint2 u; uint16_t h[4]; } r;
        r.u = *(const uint2 *)p;
#pragma unroll
        for (int d = 0; d < DL; d++) o[d] = DT == TL_BF16 ? tl_cu_bf16f(r.h[d]) : tl_cu_f16f(r.h[d]);
    } else if (DT != TL_F32 && DL == 2) {
        union { uint32_t u; uint16_t h[2]; } r;
        r.u = *(const uint32_t *)p;
#pragma unroll
        for (int d = 0; d < DL; d++) o[d] = DT == TL_BF16 ? tl_cu_bf16f(r.h[d]) : tl_cu_f16f(r.h[d]);
    } else {
#pragma unroll
        for (int d = 0; d < DL; d++) o[d] = tl_cu_kv<DT>::load(p, d);
    }
}

template <int D, int DT>
__global__ void __launch_bounds__(32 * ATT_WARPS)
    attn_kernel(const float *__restrict__ q, int q_stride, float *__restrict__ out, int n_head, int n_head_kv,
                float scale, const typename tl_cu_kv<DT>::T *__restrict__ kc,
                const typename tl_cu_kv<DT>::T *__restrict__ vc, int bs, const int32_t *__restrict__ ctx_len,
                const int32_t *__restrict__ bt_off, const int32_t *__restrict__ bt, float *__restrict__ partial,
                int n_split, int *__restrict__ cnt) {
    typedef typename tl_cu_kv<DT>::T T;
    constexpr int DL = D >= 32 ? D / 32 : 1; /* dims per lane in the PV step (D = 16: lanes >= 16 idle) */
    const int t = blockIdx.x / n_split, split = blockIdx.x % n_split, g = blockIdx.y;
    const int qg = n_head / n_head_kv;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool pv_lane = lane * DL < D;
    __shared__ float sq[ATT_MAXQG][D];
    __shared__ float sm[ATT_WARPS][ATT_MAXQG], sl[ATT_WARPS][ATT_MAXQG];
    __shared__ float sacc[ATT_WARPS][ATT_MAXQG][D];

    /* batch metadata is uploaded before the step, never written by a kernel: read it before waiting */
    const int ctx = ctx_len[t];
    const int per = ((ctx + n_split - 1) / n_split + 31) / 32 * 32;
    const int c0 = split * per, c1 = min(ctx, c0 + per);
    const int32_t *table = bt + bt_off[t];
    const int32_t blk0 = c0 + warp * 32 + lane < c1 ? table[(c0 + warp * 32 + lane) / bs] : 0; /* warm the table */
    tl_cu_pdl_wait(); /* q and the cache come from the previous kernel */
    tl_cu_pdl_trigger();
    for (int i = threadIdx.x; i < qg * D; i += blockDim.x)
        sq[i / D][i % D] = q[(size_t)t * q_stride + (size_t)(g * qg) * D + i] * scale;
    __syncthreads();

    float m[ATT_MAXQG], l[ATT_MAXQG], acc[ATT_MAXQG][DL];
#pragma unroll
    for (int h = 0; h < ATT_MAXQG; h++) {
        m[h] = -INFINITY, l[h] = 0.f;
#pragma unroll
        for (int d = 0; d < DL; d++) acc[h][d] = 0.f;
    }

    for (int j0 = c0 + warp * 32; j0 < c1; j0 += ATT_WARPS * 32) {
        const int j = j0 + lane;
        const bool valid = j < c1;
        size_t off = 0;
        if (valid) off = (((size_t)(j0 == c0 + warp * 32 ? blk0 : table[j / bs]) * n_head_kv + g) * bs + j % bs) * D;
        float s[ATT_MAXQG];
#pragma unroll
        for (int h = 0; h < ATT_MAXQG; h++) s[h] = 0.f;
        if (valid) {
#pragma unroll 8
            for (int d = 0; d < D; d += 8) {
                float k8[8];
                kv8<DT>::load(kc + off + d, k8);
#pragma unroll
                for (int h = 0; h < ATT_MAXQG; h++) {
                    if (h < qg) {
#pragma unroll
                        for (int i = 0; i < 8; i++) s[h] = fmaf(sq[h][d + i], k8[i], s[h]);
                    }
                }
            }
        }
        const int nv = min(32, c1 - j0);
        float p[ATT_MAXQG];
#pragma unroll
        for (int h = 0; h < ATT_MAXQG; h++) {
            if (h >= qg) break;
            float sv = valid ? s[h] : -INFINITY;
            float mn = fmaxf(m[h], tl_cu_warp_max(sv));
            float corr = __expf(m[h] - mn);
            p[h] = valid ? __expf(sv - mn) : 0.f;
            l[h] = l[h] * corr + tl_cu_warp_sum(p[h]);
            m[h] = mn;
#pragma unroll
            for (int d = 0; d < DL; d++) acc[h][d] *= corr;
        }
        /* p * V, JU keys at a time: their V rows are loaded before any is used (one DRAM latency per JU keys,
         * not per key); lanes split head_dim, DL elements each in one load */
        constexpr int JU = 8;
        for (int j8 = 0; j8 < nv; j8 += JU) {
            float v[JU][DL];
#pragma unroll
            for (int u = 0; u < JU; u++) {
                const size_t vo = __shfl_sync(0xffffffffu, off, (j8 + u) & 31);
                if (j8 + u < nv && pv_lane) {
                    vrow<DT, DL>(vc + vo + lane * DL, v[u]);
                } else {
#pragma unroll
                    for (int d = 0; d < DL; d++) v[u][d] = 0.f;
                }
            }
#pragma unroll
            for (int u = 0; u < JU; u++) {
                if (j8 + u >= nv) break; /* nv is the same for the whole warp */
#pragma unroll
                for (int h = 0; h < ATT_MAXQG; h++) {
                    if (h >= qg) break;
                    float ph = __shfl_sync(0xffffffffu, p[h], j8 + u);
#pragma unroll
                    for (int d = 0; d < DL; d++) acc[h][d] = fmaf(ph, v[u][d], acc[h][d]);
                }
            }
        }
    }
#pragma unroll
    for (int h = 0; h < ATT_MAXQG; h++) {
        if (h >= qg) break;
        if (lane == 0) sm[warp][h] = m[h], sl[warp][h] = l[h];
#pragma unroll
        for (int d = 0; d < DL; d++)
            if (pv_lane) sacc[warp][h][lane * DL + d] = acc[h][d];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < qg * D; i += blockDim.x) {
        const int h = i / D, d = i % D;
        float M = -INFINITY;
        for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sm[w][h]);
        float L = 0.f, A = 0.f;
        if (M != -INFINITY)
            for (int w = 0; w < ATT_WARPS; w++) {
                float f = __expf(sm[w][h] - M);
                L += sl[w][h] * f;
                A += sacc[w][h][d] * f;
            }
        const int hq = g * qg + h;
        if (n_split == 1) {
            out[(size_t)t * n_head * D + (size_t)hq * D + d] = L > 0.f ? A / L : 0.f;
        } else {
            float *pp = partial + (((size_t)t * n_head + hq) * n_split + split) * (D + 2);
            if (d == 0) pp[0] = M, pp[1] = L;
            pp[2 + d] = A;
        }
    }
    /* cnt: the last slice of (token, kv head) to finish merges all slices (no second launch); the counter
     * goes back to 0 for the next launch. Same order and math as attn_merge_kernel. */
    if (n_split > 1 && cnt) {
        __shared__ int s_last;
        /* release this block's partials before counting it (acq_rel: __threadfence would be fence.sc, a
         * full sequentially consistent fence, measurably slower) */
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
        __syncthreads();
        if (threadIdx.x == 0) {
            s_last = atomicAdd(cnt + t * n_head_kv + g, 1) == n_split - 1;
            if (s_last) cnt[t * n_head_kv + g] = 0;
        }
        __syncthreads();
        if (s_last) {
            asm volatile("fence.acq_rel.gpu;" ::: "memory"); /* acquire the other slices' partials */
            for (int i = threadIdx.x; i < qg * D; i += blockDim.x) {
                const int hq = g * qg + i / D;
                out[(size_t)t * n_head * D + (size_t)hq * D + i % D] =
                    tl_cu_merge_one(partial + ((size_t)t * n_head + hq) * n_split * (D + 2), n_split, D, i % D);
            }
        }
    }
}

/* grid (n_tok, n_head), D threads: merges the n_split slices of one (token, head). */
__global__ void attn_merge_kernel(const float *__restrict__ partial, float *__restrict__ out, int n_head, int D,
                                  int n_split) {
    const int t = blockIdx.x, hq = blockIdx.y, d = threadIdx.x;
    const float *pp = partial + ((size_t)t * n_head + hq) * n_split * (D + 2);
    tl_cu_pdl_wait();
    tl_cu_pdl_trigger();
    out[(size_t)t * n_head * D + (size_t)hq * D + d] = tl_cu_merge_one(pp, n_split, D, d);
}

template <int D, int DT> static void attn_launch(const tl_cu_attn_args *a, int n_split, cudaStream_t st) {
    typedef typename tl_cu_kv<DT>::T T;
    dim3 grid((unsigned)(a->n_tok * n_split), (unsigned)a->n_head_kv);
    (void)tl_cu_launch(attn_kernel<D, DT>, grid, dim3(32 * ATT_WARPS), 0, st, a->pdl, a->q, a->q_stride, a->out, a->n_head,
                 a->n_head_kv, a->scale, (const T *)a->kcache, (const T *)a->vcache, a->block_size, a->ctx_len,
                 a->bt_off, a->bt, a->partial, n_split, a->counters); /* a launch error is read by TL_CU_LAUNCHED */
}

template <int D> static int attn_dt(const tl_cu_attn_args *a, int n_split, cudaStream_t st, tl_error *e) {
    switch (a->kv_dtype) {
    case TL_F32: attn_launch<D, TL_F32>(a, n_split, st); return 0;
    case TL_BF16: attn_launch<D, TL_BF16>(a, n_split, st); return 0;
    case TL_F16: attn_launch<D, TL_F16>(a, n_split, st); return 0;
    }
    return tl_errf(e, "cuda attention: kv dtype %d not supported", a->kv_dtype);
}

/* split the context when the grid would not fill the card */
extern "C" int tl_cu_attention_splits(const tl_cu_attn_args *a) {
    int n_split = 1;
    int64_t blocks = (int64_t)a->n_tok * a->n_head_kv;
    if (a->max_split > 1 && blocks < 2 * a->n_sm && a->max_ctx > 256) {
        int want = (int)((2 * a->n_sm + blocks - 1) / blocks);
        const int sk = a->split_keys > 0 ? a->split_keys : 128;
        int by_ctx = (a->max_ctx + sk - 1) / sk;
        n_split = want < by_ctx ? want : by_ctx;
        if (n_split > a->max_split) n_split = a->max_split;
        if (n_split < 1) n_split = 1;
    }
    return n_split;
}

extern "C" int tl_cu_attention(const tl_cu_attn_args *a, cudaStream_t st, tl_error *e) {
    if (a->n_tok <= 0) return 0;
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv) return tl_errf(e, "cuda attention: bad head counts");
    if (a->n_head / a->n_head_kv > ATT_MAXQG)
        return tl_errf(e, "cuda attention: %d query heads per kv head (at most %d)", a->n_head / a->n_head_kv,
                       ATT_MAXQG);
    const int n_split = tl_cu_attention_splits(a);
    int r;
    switch (a->head_dim) {
    case 16: r = attn_dt<16>(a, n_split, st, e); break;
    case 32: r = attn_dt<32>(a, n_split, st, e); break;
    case 64: r = attn_dt<64>(a, n_split, st, e); break;
    case 128: r = attn_dt<128>(a, n_split, st, e); break;
    default: return tl_errf(e, "cuda attention: head_dim %d not supported (16, 32, 64, 128)", a->head_dim);
    }
    if (r) return r;
    if (n_split > 1 && !a->counters) {
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return tl_errf(e, "cuda: attention: %s", cudaGetErrorString(err));
        (void)tl_cu_launch(attn_merge_kernel, dim3((unsigned)a->n_tok, (unsigned)a->n_head), dim3(a->head_dim), 0, st, a->pdl,
                     (const float *)a->partial, a->out, a->n_head, a->head_dim, n_split);
    }
    TL_CU_LAUNCHED(e, "attention");
}

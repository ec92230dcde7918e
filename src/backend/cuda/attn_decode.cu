/* attn_decode.cu: paged attention for decode rows (one new token each; also the tokens of short chunks, each
 * with its own context length) on tensor cores (mma.sync m16n8k16, fp32 accumulate). KV cache bf16 or f16,
 * head_dim 64 or 128, G = n_head / n_head_kv <= 16; every other case stays on attn.cu's CUDA-core kernel.
 *
 * Work: grid (n_tok * n_split, n_head_kv), 4 warps. A block takes one token, one KV head and one slice of
 * the token's context (n_split > 1: flash-decoding, as attn.cu: same split count tl_cu_attention_splits(),
 * same partial layout (m, l, acc[D]) and merge). The MMA's A operand is the G query heads of the KV head,
 * padded to 16 rows (rows >= G: q = 0, never written out), so each K/V element is read once per group.
 *
 * Per block tile of 64 keys: K/V rows gathered through the block table into shared memory with cp.async
 * (double-buffered: tile kt+1 loads while kt computes; rows past the slice end zero-filled, never read from
 * global), warp w takes keys 16w .. 16w+15 of the tile: S = Q K^T (16 x 16) on tensor cores, mask past the
 * slice end, online softmax per row in fp32 (exp2, scale folded in), P rounded to the KV type, O += P V
 * (16 x D). After the last tile the 4 warps' (m, l, O) are merged in shared memory in warp order.
 * Shared rows are 16-byte chunks XOR-swizzled by (row & 7) (ldmatrix without bank conflicts).
 *
 * Exactness: a row's result depends only on its token's q, keys and the split count (fixed tiling from the
 * slice start, fixed merge order, no atomics): deterministic and batch invariant for a given split count.
 * q and P are rounded to the KV type for the tensor cores (rel err ~1e-3 .. 1e-2 vs the fp32 reference, as
 * attn_prefill.cu). */
#include <math.h>

#include "backend/cuda/cu_common.cuh"
#include "backend/cuda/cu_tc.cuh"

#define AD_BN 64     /* keys per block tile */
#define AD_NW 4      /* warps; warp w takes keys 16w .. 16w+15 of each tile */
#define AD_MAXG 16   /* query heads per KV head: the 16 rows of the MMA */

/* dynamic shared memory: Q [16][D] + K [2][64][D] + V [2][64][D], 16-bit; after the key loop the K/V area
 * holds the warps' O for the merge: [AD_NW][16][D + 8] floats (fits: 16 (D+8) 4 * 4 <= 4 * 64 * D * 2). */
template <int D> static constexpr int ad_smem() { return (16 + 4 * AD_BN) * D * 2; }

template <int D, int DT>
__global__ void __launch_bounds__(32 * AD_NW, 3)
    attn_decode_kernel(const float *__restrict__ q, int q_stride, float *__restrict__ out, int n_head, int n_head_kv,
                       float scale, float scale_log2, const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc,
                       int bs, int bs_log2, const int32_t *__restrict__ ctx_len, const int32_t *__restrict__ bt_off,
                       const int32_t *__restrict__ bt, float *__restrict__ partial, int n_split) {
    typedef tc_mma<DT> M;
    constexpr int NT = 32 * AD_NW;
    constexpr int NC = D / 8;          /* 16-byte chunks per row */
    constexpr int TB = AD_BN * D * 2;  /* bytes of one K or V tile */
    constexpr int SO = D + 8;          /* row stride (floats) of the merge area: 8-bank shift per row */
    extern __shared__ __align__(128) uint8_t ad_sm[];
    __shared__ float s_m[AD_NW][AD_MAXG], s_l[AD_NW][AD_MAXG];
    const uint32_t sQ = (uint32_t)__cvta_generic_to_shared(ad_sm), sK = sQ + 16 * D * 2, sV = sK + 2 * TB;

    const int t = blockIdx.x / n_split, split = blockIdx.x % n_split, g = blockIdx.y;
    const int G = n_head / n_head_kv;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int32_t *table = bt + bt_off[t];
    const int ctx = ctx_len[t];
    const int per = ((ctx + n_split - 1) / n_split + AD_BN - 1) / AD_BN * AD_BN;
    const int c0 = split * per, c1 = min(ctx, c0 + per);
    const int n_kt = c1 > c0 ? (c1 - c0 + AD_BN - 1) / AD_BN : 0;

    /* Q rows (the G heads of KV head g) -> 16-bit, swizzled; rows >= G zero */
    for (int i = tid; i < 16 * NC; i += NT) {
        const int r = i / NC, c = i % NC;
        uint32_t w[4] = {0, 0, 0, 0};
        if (r < G) {
            const float *src = q + (size_t)t * q_stride + (size_t)(g * G + r) * D + c * 8;
            float4 a = *(const float4 *)src, b = *(const float4 *)(src + 4);
            w[0] = M::pack(a.x, a.y), w[1] = M::pack(a.z, a.w), w[2] = M::pack(b.x, b.y), w[3] = M::pack(b.z, b.w);
        }
        *(uint4 *)(ad_sm + tc_sw<D>(r, c)) = make_uint4(w[0], w[1], w[2], w[3]);
    }
    /* K/V tile kt (keys c0 + 64 kt + r) -> buffer kt & 1: thread takes chunk tid % NC of rows
     * tid / NC + k * (NT / NC) */
    auto load_kv = [&](int kt) {
        const uint32_t boff = (uint32_t)(kt & 1) * TB;
        const int c = tid % NC;
#pragma unroll
        for (int r = tid / NC; r < AD_BN; r += NT / NC) {
            const int p = c0 + kt * AD_BN + r;
            size_t off = 0;
            int nb = 0;
            if (p < c1) {
                const int blk = bs_log2 >= 0 ? p >> bs_log2 : p / bs, in = bs_log2 >= 0 ? p & (bs - 1) : p % bs;
                off = (((size_t)table[blk] * n_head_kv + g) * bs + in) * D + c * 8, nb = 16;
            }
            tc_cp16(sK + boff + tc_sw<D>(r, c), kc + off, nb);
            tc_cp16(sV + boff + tc_sw<D>(r, c), vc + off, nb);
        }
        tc_commit();
    };
    if (n_kt > 0) load_kv(0);
    __syncthreads();

    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kq = 0; kq < D / 16; kq++) tc_ldsm4(qf[kq], sQ + tc_sw<D>(lane & 15, kq * 2 + (lane >> 4)));

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    for (int kt = 0; kt < n_kt; kt++) {
        if (kt + 1 < n_kt) {
            load_kv(kt + 1);
            tc_wait<1>();
        } else {
            tc_wait<0>();
        }
        __syncthreads();
        const uint32_t kb = sK + (uint32_t)(kt & 1) * TB, vb = sV + (uint32_t)(kt & 1) * TB;
        const int kbase = c0 + kt * AD_BN + warp * 16; /* this warp's first key */
        if (kbase < c1) {                              /* else: all 16 keys masked, m, l, O unchanged */
            float s[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
            for (int kq = 0; kq < D / 16; kq++) {
                uint32_t b[4]; /* keys 0..7 of the warp's 16: b[0], b[1]; keys 8..15: b[2], b[3] */
                tc_ldsm4(b, kb + tc_sw<D>(warp * 16 + ((lane >> 4) << 3) + (lane & 7), kq * 2 + ((lane >> 3) & 1)));
                M::mma(s[0], qf[kq], b[0], b[1]);
                M::mma(s[1], qf[kq], b[2], b[3]);
            }
            if (kbase + 16 > c1) {
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    const int key = kbase + nt * 8 + 2 * (lane & 3);
                    if (key >= c1) s[nt][0] = s[nt][2] = -INFINITY;
                    if (key + 1 >= c1) s[nt][1] = s[nt][3] = -INFINITY;
                }
            }
            float mx0 = fmaxf(m0, fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1])));
            float mx1 = fmaxf(m1, fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3])));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            /* kbase < c1: key kbase is visible, so mx is finite */
            const float c0f = tc_ex2((m0 - mx0) * scale_log2), c1f = tc_ex2((m1 - mx1) * scale_log2);
            const float ms0 = mx0 * scale_log2, ms1 = mx1 * scale_log2;
            m0 = mx0, m1 = mx1;
            uint32_t pa[4];
            float ls0 = 0.f, ls1 = 0.f;
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                const float p0 = tc_ex2(fmaf(s[nt][0], scale_log2, -ms0)), p1 = tc_ex2(fmaf(s[nt][1], scale_log2, -ms0));
                const float p2 = tc_ex2(fmaf(s[nt][2], scale_log2, -ms1)), p3 = tc_ex2(fmaf(s[nt][3], scale_log2, -ms1));
                ls0 += p0 + p1, ls1 += p2 + p3;
                pa[nt * 2] = M::pack(p0, p1);
                pa[nt * 2 + 1] = M::pack(p2, p3);
            }
            l0 = l0 * c0f + ls0, l1 = l1 * c1f + ls1;
#pragma unroll
            for (int i = 0; i < D / 8; i++) o[i][0] *= c0f, o[i][1] *= c0f, o[i][2] *= c1f, o[i][3] *= c1f;
#pragma unroll
            for (int n2 = 0; n2 < D / 16; n2++) {
                uint32_t b[4]; /* dims n2*16 + 0..7: b[0], b[1]; dims + 8..15: b[2], b[3] */
                tc_ldsm4t(b, vb + tc_sw<D>(warp * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), n2 * 2 + (lane >> 4)));
                M::mma(o[2 * n2], pa, b[0], b[1]);
                M::mma(o[2 * n2 + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* this buffer is refilled by the next iteration's prefetch */
    }
    /* merge the warps: (m, l) per row, O into the (now free) K/V area, then warp order per output */
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const int r0 = lane >> 2, r1 = r0 + 8, cc = 2 * (lane & 3);
    float *so = (float *)(ad_sm + 16 * D * 2) + (size_t)warp * 16 * SO;
    if ((lane & 3) == 0) {
        s_m[warp][r0] = m0, s_l[warp][r0] = l0;
        s_m[warp][r1] = m1, s_l[warp][r1] = l1;
    }
    if (r0 < G) {
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(float2 *)(so + r0 * SO + i * 8 + cc) = make_float2(o[i][0], o[i][1]);
    }
    if (r1 < G) {
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(float2 *)(so + r1 * SO + i * 8 + cc) = make_float2(o[i][2], o[i][3]);
    }
    __syncthreads();
    const float *sa = (const float *)(ad_sm + 16 * D * 2);
    for (int i = tid; i < G * D; i += NT) {
        const int h = i / D, d = i % D;
        float Mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < AD_NW; w++) Mx = fmaxf(Mx, s_m[w][h]);
        float L = 0.f, A = 0.f;
        if (Mx != -INFINITY) {
#pragma unroll
            for (int w = 0; w < AD_NW; w++) {
                const float f = tc_ex2((s_m[w][h] - Mx) * scale_log2); /* empty warp: m = -inf, f = 0 */
                L += s_l[w][h] * f;
                A += sa[(w * 16 + h) * SO + d] * f;
            }
        }
        const int hq = g * G + h;
        if (n_split == 1) {
            out[((size_t)t * n_head + hq) * D + d] = L > 0.f ? A / L : 0.f;
        } else { /* attn.cu's partial: m in units of the scaled score (natural exp), l, acc[D] */
            float *pp = partial + (((size_t)t * n_head + hq) * n_split + split) * (D + 2);
            if (d == 0) pp[0] = Mx * scale, pp[1] = L;
            pp[2 + d] = A;
        }
    }
}

/* grid (n_tok, n_head), D threads: merges the n_split slices of one (token, head), in slice order. */
__global__ void attn_decode_merge_kernel(const float *__restrict__ partial, float *__restrict__ out, int n_head, int D,
                                         int n_split) {
    const int t = blockIdx.x, hq = blockIdx.y, d = threadIdx.x;
    const float *pp = partial + ((size_t)t * n_head + hq) * n_split * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, pp[s * (D + 2)]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
        for (int s = 0; s < n_split; s++) {
            float f = __expf(pp[s * (D + 2)] - M);
            L += pp[s * (D + 2) + 1] * f;
            A += pp[s * (D + 2) + 2 + d] * f;
        }
    out[((size_t)t * n_head + hq) * D + d] = L > 0.f ? A / L : 0.f;
}

template <int D, int DT> static int ad_launch(const tl_cu_attn_args *a, int n_split, cudaStream_t st, tl_error *e) {
    /* > 48 KB of dynamic shared memory needs the opt-in (a plain attribute call: legal while capturing) */
    static int attr_set;
    if (!attr_set) {
        cudaError_t err =
            cudaFuncSetAttribute(attn_decode_kernel<D, DT>, cudaFuncAttributeMaxDynamicSharedMemorySize, ad_smem<D>());
        if (err != cudaSuccess) return tl_errf(e, "cuda: decode attention smem: %s", cudaGetErrorString(err));
        attr_set = 1;
    }
    int bs_log2 = -1;
    for (int k = 0; k < 31; k++)
        if (a->block_size == 1 << k) bs_log2 = k;
    dim3 grid((unsigned)(a->n_tok * n_split), (unsigned)a->n_head_kv);
    attn_decode_kernel<D, DT><<<grid, 32 * AD_NW, ad_smem<D>(), st>>>(
        a->q, a->q_stride, a->out, a->n_head, a->n_head_kv, a->scale, a->scale * 1.4426950408889634f,
        (const uint16_t *)a->kcache, (const uint16_t *)a->vcache, a->block_size, bs_log2, a->ctx_len, a->bt_off, a->bt,
        a->partial, n_split);
    TL_CU_LAUNCHED(e, "decode attention");
}

extern "C" int tl_cu_attention_decode_ok(int head_dim, int kv_dtype, int n_head, int n_head_kv) {
    return (head_dim == 64 || head_dim == 128) && (kv_dtype == TL_BF16 || kv_dtype == TL_F16) && n_head_kv > 0 &&
           n_head % n_head_kv == 0 && n_head / n_head_kv <= AD_MAXG;
}

extern "C" int tl_cu_attention_decode(const tl_cu_attn_args *a, cudaStream_t st, tl_error *e) {
    if (a->n_tok <= 0) return 0;
    if (!tl_cu_attention_decode_ok(a->head_dim, a->kv_dtype, a->n_head, a->n_head_kv))
        return tl_errf(e, "cuda decode attention: head_dim %d, kv dtype %d, %d/%d heads not supported", a->head_dim,
                       a->kv_dtype, a->n_head, a->n_head_kv);
    const int n_split = tl_cu_attention_splits(a);
    const bool bf = a->kv_dtype == TL_BF16;
    int r;
    if (a->head_dim == 64) r = bf ? ad_launch<64, TL_BF16>(a, n_split, st, e) : ad_launch<64, TL_F16>(a, n_split, st, e);
    else r = bf ? ad_launch<128, TL_BF16>(a, n_split, st, e) : ad_launch<128, TL_F16>(a, n_split, st, e);
    if (r || n_split == 1) return r;
    attn_decode_merge_kernel<<<dim3((unsigned)a->n_tok, (unsigned)a->n_head), a->head_dim, 0, st>>>(
        a->partial, a->out, a->n_head, a->head_dim, n_split);
    TL_CU_LAUNCHED(e, "decode attention merge");
}

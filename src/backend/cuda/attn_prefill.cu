/* attn_prefill.cu: flash attention for prefill chunks on tensor cores (mma.sync m16n8k16, fp32 accumulate)
 * over the paged KV cache, causal, varlen, GQA. KV cache bf16 or f16, head_dim 64 or 128; every other case
 * (f32 cache, other head dims, decode rows) stays on attn.cu's CUDA-core kernel.
 *
 * Work: the host cuts each prefill sequence into tiles of TT = BM / G consecutive tokens (G = query heads
 * per KV head, BM = 64 or 128 query rows a block). A block takes one tile and one KV head; its query rows
 * are (token, head) pairs, row i = token t0 + i / G, query head g*G + i % G, so each K/V tile is read once
 * for the whole GQA group (as the CPU flash kernel does). BM / 16 warps, 16 rows each.
 *
 * Per key tile of 64 keys: K/V rows gathered through the block table into shared memory with cp.async
 * (double-buffered: tile kt+1 loads while kt computes; rows past the tile's last visible key are
 * zero-filled, never read), S = Q K^T on tensor cores (Q: fp32 -> bf16/f16 once, kept in registers),
 * causal mask (row i sees keys < ctx_len[its token]), online softmax in fp32 (exp2 with the scale folded
 * in), P rounded to the KV type, O += P V on tensor cores. Shared rows are 16-byte chunks XOR-swizzled by
 * (row & 7) so that ldmatrix's 8 row addresses hit 8 different bank groups.
 *
 * Exactness: a row's result depends only on its own q and keys (the key tiling is fixed at multiples of 64
 * from position 0; fully masked tiles leave m, l, O bit-identical), so it does not depend on which other
 * rows share its block: batch invariant. Error vs the fp32 reference: q and P rounded to 16 bits (~1e-3). */
#include <math.h>

#include "backend/cuda/cu_common.cuh"
#include "backend/cuda/cu_tc.cuh"

#define AP_BN 64 /* keys per tile */

/* grid (n_tiles, n_head_kv), NW warps (NW * 16 query rows), dynamic shared memory ap_smem<D, NW>():
 * Q [16 NW][D] + K [2][64][D] + V [2][64][D], 16-bit. tiles: [n_tiles][2] = (first token, tokens).
 * NW = 4: 2 blocks per SM (199 registers at D = 128); NW = 8: 1 block of 8 warps sharing each K/V tile
 * (half the K/V loads and barriers per query row). */
template <int D, int NW> static constexpr int ap_smem() { return (16 * NW + 4 * AP_BN) * D * 2; }

template <int D, int DT, int NW>
__global__ void __launch_bounds__(32 * NW, 8 / NW)
    attn_prefill_kernel(const float *__restrict__ q, int q_stride, float *__restrict__ out, int n_head, int n_head_kv,
                        float scale_log2, const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc, int bs,
                        int bs_log2,
                        const int32_t *__restrict__ ctx_len, const int32_t *__restrict__ bt_off,
                        const int32_t *__restrict__ bt, const int32_t *__restrict__ tiles, int n_tiles) {
    typedef tc_mma<DT> M;
    constexpr int AP_BM = 16 * NW, AP_THREADS = 32 * NW;
    constexpr int NC = D / 8; /* 16-byte chunks per row */
    constexpr int TB = AP_BN * D * 2; /* bytes of one K or V tile */
    extern __shared__ __align__(128) uint8_t ap_sm[];
    const uint32_t sQ = (uint32_t)__cvta_generic_to_shared(ap_sm), sK = sQ + AP_BM * D * 2, sV = sK + 2 * TB;

    const int tile = n_tiles - 1 - (int)blockIdx.x; /* later tiles see more keys: start them first */
    const int g = blockIdx.y, G = n_head / n_head_kv;
    const int t0 = tiles[2 * tile], ntk = tiles[2 * tile + 1], n_rows = ntk * G;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int32_t *table = bt + bt_off[t0];
    const int ctx_hi = ctx_len[t0 + ntk - 1]; /* keys seen by the tile's last token: the most of any row */
    const int n_kt = (ctx_hi + AP_BN - 1) / AP_BN;

    /* Q rows -> 16-bit, swizzled (padding rows >= n_rows: zeros, never written out) */
    for (int i = tid; i < AP_BM * NC; i += AP_THREADS) {
        const int r = i / NC, c = i % NC;
        uint32_t w[4] = {0, 0, 0, 0};
        if (r < n_rows) {
            const float *src = q + (size_t)(t0 + r / G) * q_stride + (size_t)(g * G + r % G) * D + c * 8;
            float4 a = *(const float4 *)src, b = *(const float4 *)(src + 4);
            w[0] = M::pack(a.x, a.y), w[1] = M::pack(a.z, a.w), w[2] = M::pack(b.x, b.y), w[3] = M::pack(b.z, b.w);
        }
        *(uint4 *)(ap_sm + tc_sw<D>(r, c)) = make_uint4(w[0], w[1], w[2], w[3]);
    }
    /* K/V tile kt -> buffer kt & 1: thread takes chunk tid % NC of rows tid / NC + k * (THREADS / NC) */
    auto load_kv = [&](int kt) {
        const uint32_t boff = (uint32_t)(kt & 1) * TB;
        const int c = tid % NC;
#pragma unroll
        for (int r = tid / NC; r < AP_BN; r += AP_THREADS / NC) {
            const int p = kt * AP_BN + r;
            size_t off = 0;
            int nb = 0;
            if (p < ctx_hi) { /* block size a power of two (the usual 16): shifts, not two integer divisions */
                const int blk = bs_log2 >= 0 ? p >> bs_log2 : p / bs, in = bs_log2 >= 0 ? p & (bs - 1) : p % bs;
                off = (((size_t)table[blk] * n_head_kv + g) * bs + in) * D + c * 8, nb = 16;
            }
            tc_cp16(sK + boff + tc_sw<D>(r, c), kc + off, nb);
            tc_cp16(sV + boff + tc_sw<D>(r, c), vc + off, nb);
        }
        tc_commit();
    };
    load_kv(0);
    __syncthreads();

    /* this warp's 16 Q rows as A fragments, all of D */
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kq = 0; kq < D / 16; kq++) tc_ldsm4(qf[kq], sQ + tc_sw<D>(warp * 16 + (lane & 15), kq * 2 + (lane >> 4)));

    /* the thread's two rows (C layout: row lane/4 and lane/4 + 8 of the warp's 16) and their key limits */
    const int r0 = warp * 16 + (lane >> 2), r1 = r0 + 8;
    const int lim0 = r0 < n_rows ? ctx_len[t0 + r0 / G] : ctx_hi, lim1 = r1 < n_rows ? ctx_len[t0 + r1 / G] : ctx_hi;
    const int wlo = warp * 16 < n_rows ? ctx_len[t0 + warp * 16 / G] : ctx_hi; /* smallest limit in the warp */

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

        float s[AP_BN / 8][4];
#pragma unroll
        for (int i = 0; i < AP_BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kq = 0; kq < D / 16; kq++) {
#pragma unroll
            for (int n2 = 0; n2 < AP_BN / 16; n2++) {
                uint32_t b[4]; /* keys n2*16 + 0..7: b[0], b[1]; keys + 8..15: b[2], b[3] */
                tc_ldsm4(b, kb + tc_sw<D>(n2 * 16 + ((lane >> 4) << 3) + (lane & 7), kq * 2 + ((lane >> 3) & 1)));
                M::mma(s[2 * n2], qf[kq], b[0], b[1]);
                M::mma(s[2 * n2 + 1], qf[kq], b[2], b[3]);
            }
        }
        if (kt * AP_BN + AP_BN > wlo) { /* some key of this tile is past some row's limit */
#pragma unroll
            for (int nt = 0; nt < AP_BN / 8; nt++) {
                const int key = kt * AP_BN + nt * 8 + 2 * (lane & 3);
                if (key >= lim0) s[nt][0] = -INFINITY;
                if (key + 1 >= lim0) s[nt][1] = -INFINITY;
                if (key >= lim1) s[nt][2] = -INFINITY;
                if (key + 1 >= lim1) s[nt][3] = -INFINITY;
            }
        }
        /* online softmax: the 4 lanes of a quad share a row */
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < AP_BN / 8; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* every row sees key 0 in tile 0, so mx is finite from the first tile on */
        const float c0 = tc_ex2((m0 - mx0) * scale_log2), c1 = tc_ex2((m1 - mx1) * scale_log2);
        const float ms0 = mx0 * scale_log2, ms1 = mx1 * scale_log2;
        m0 = mx0, m1 = mx1;
        float ls0 = 0.f, ls1 = 0.f;
        uint32_t pa[AP_BN / 16][4]; /* P as A fragments: keys kk*16 .. +15 */
#pragma unroll
        for (int nt = 0; nt < AP_BN / 8; nt++) {
            const float p0 = tc_ex2(fmaf(s[nt][0], scale_log2, -ms0)), p1 = tc_ex2(fmaf(s[nt][1], scale_log2, -ms0));
            const float p2 = tc_ex2(fmaf(s[nt][2], scale_log2, -ms1)), p3 = tc_ex2(fmaf(s[nt][3], scale_log2, -ms1));
            ls0 += p0 + p1, ls1 += p2 + p3;
            pa[nt >> 1][(nt & 1) * 2] = M::pack(p0, p1);
            pa[nt >> 1][(nt & 1) * 2 + 1] = M::pack(p2, p3);
        }
        l0 = l0 * c0 + ls0, l1 = l1 * c1 + ls1;
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[i][0] *= c0, o[i][1] *= c0, o[i][2] *= c1, o[i][3] *= c1;
#pragma unroll
        for (int kk = 0; kk < AP_BN / 16; kk++) {
#pragma unroll
            for (int n2 = 0; n2 < D / 16; n2++) {
                uint32_t b[4]; /* dims n2*16 + 0..7: b[0], b[1]; dims + 8..15: b[2], b[3] */
                tc_ldsm4t(b, vb + tc_sw<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), n2 * 2 + (lane >> 4)));
                M::mma(o[2 * n2], pa[kk], b[0], b[1]);
                M::mma(o[2 * n2 + 1], pa[kk], b[2], b[3]);
            }
        }
        __syncthreads(); /* this buffer is refilled by the next iteration's prefetch */
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    const int cc = 2 * (lane & 3);
    if (r0 < n_rows) {
        float *dst = out + ((size_t)(t0 + r0 / G) * n_head + g * G + r0 % G) * D + cc;
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(float2 *)(dst + i * 8) = make_float2(o[i][0] * inv0, o[i][1] * inv0);
    }
    if (r1 < n_rows) {
        float *dst = out + ((size_t)(t0 + r1 / G) * n_head + g * G + r1 % G) * D + cc;
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(float2 *)(dst + i * 8) = make_float2(o[i][2] * inv1, o[i][3] * inv1);
    }
}

template <int D, int DT, int NW>
static int ap_launch(const tl_cu_attn_args *a, const int32_t *tiles, int n_tiles, cudaStream_t st, tl_error *e) {
    static int attr_set; /* > 48 KB of dynamic shared memory needs the opt-in, once per instantiation */
    if (!attr_set) {
        cudaError_t err = cudaFuncSetAttribute(attn_prefill_kernel<D, DT, NW>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, ap_smem<D, NW>());
        if (err != cudaSuccess) return tl_errf(e, "cuda: prefill attention smem: %s", cudaGetErrorString(err));
        attr_set = 1;
    }
    const float scale_log2 = a->scale * 1.4426950408889634f;
    int bs_log2 = -1;
    for (int k = 0; k < 31; k++)
        if (a->block_size == 1 << k) bs_log2 = k;
    attn_prefill_kernel<D, DT, NW><<<dim3((unsigned)n_tiles, (unsigned)a->n_head_kv), 32 * NW, ap_smem<D, NW>(), st>>>(
        a->q, a->q_stride, a->out, a->n_head, a->n_head_kv, scale_log2, (const uint16_t *)a->kcache,
        (const uint16_t *)a->vcache, a->block_size, bs_log2, a->ctx_len, a->bt_off, a->bt, tiles, n_tiles);
    TL_CU_LAUNCHED(e, "prefill attention");
}

template <int NW> static int ap_dispatch(const tl_cu_attn_args *a, const int32_t *tiles, int n_tiles, cudaStream_t st,
                                         tl_error *e) {
    const bool bf = a->kv_dtype == TL_BF16;
    if (a->head_dim == 64)
        return bf ? ap_launch<64, TL_BF16, NW>(a, tiles, n_tiles, st, e) : ap_launch<64, TL_F16, NW>(a, tiles, n_tiles, st, e);
    return bf ? ap_launch<128, TL_BF16, NW>(a, tiles, n_tiles, st, e) : ap_launch<128, TL_F16, NW>(a, tiles, n_tiles, st, e);
}

extern "C" int tl_cu_attention_prefill_ok(int head_dim, int kv_dtype, int n_head, int n_head_kv) {
    return (head_dim == 64 || head_dim == 128) && (kv_dtype == TL_BF16 || kv_dtype == TL_F16) && n_head_kv > 0 &&
           n_head % n_head_kv == 0 && n_head / n_head_kv >= 1 && n_head / n_head_kv <= 64;
}

extern "C" int tl_cu_prefill_rows(int rows) { return rows == 128 ? 128 : 64; }

extern "C" int tl_cu_prefill_tile_tokens(int n_head, int n_head_kv, int rows) {
    return tl_cu_prefill_rows(rows) / (n_head / n_head_kv);
}

extern "C" int tl_cu_attention_prefill(const tl_cu_attn_args *a, const int32_t *tiles, int n_tiles, int rows,
                                       cudaStream_t st, tl_error *e) {
    if (n_tiles <= 0) return 0;
    if (!tl_cu_attention_prefill_ok(a->head_dim, a->kv_dtype, a->n_head, a->n_head_kv))
        return tl_errf(e, "cuda prefill attention: head_dim %d, kv dtype %d, %d/%d heads not supported", a->head_dim,
                       a->kv_dtype, a->n_head, a->n_head_kv);
    return tl_cu_prefill_rows(rows) == 128 ? ap_dispatch<8>(a, tiles, n_tiles, st, e) : ap_dispatch<4>(a, tiles, n_tiles, st, e);
}

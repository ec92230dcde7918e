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
 * (double-buffered: tiles 0 and 1 issued up front, tile kt+2 once kt is done, so one tile loads while one
 * computes; rows past the slice end zero-filled, never read from global), warp w takes keys 16w .. 16w+15 of the tile: S = Q K^T (16 x 16) on tensor cores, mask past the
 * slice end, online softmax per row in fp32 (exp2, scale folded in), P rounded to the KV type, O += P V
 * (16 x D). After the last tile the 4 warps' (m, l, O) are merged in shared memory in warp order.
 * Shared rows are 16-byte chunks XOR-swizzled by (row & 7) (ldmatrix without bank conflicts).
 *
 * Slices are merged by a merge kernel; with counters by the last slice of (token, KV head) to finish (its
 * counter goes back to 0: graph replays); with merge_cluster (2..8 slices) the slices of (token, KV head) are
 * one thread-block cluster and merge through distributed shared memory. Measured (H100, 7B batch 1, ctx 512,
 * fused kernel): merge kernel = cluster, last slice ~7 us a layer slower (not profiled; the fence and atomic
 * wait behind the next GEMV's weight stream?). Launched as programmatic dependents (a->pdl): metadata is
 * read before the PDL wait.
 *
 * Fused variant (ROPE, tl_cu_attention_decode_rope; every token its sequence's only new one, at context
 * position ctx - 1): one kernel replaces rope_kv_write + attention (+ merge). Before the PDL wait a block
 * computes RoPE's cos/sin (positions are metadata) and starts the cp.async of its first two K/V tiles: every
 * position but the new one was written by earlier steps. After the wait it rotates its G q heads from the raw
 * q/k/v rows in registers; the block whose slice holds the new position rotates k, stores k and v to the cache
 * and puts the same 16-bit values straight into its shared tile (tiles >= 2: via s_new at that tile's load),
 * so nothing written by this kernel is read back from global memory (no ordering question between its
 * st.global and its cp.async). The RoPE code is rope_kv_kernel's (cu_common.cuh): same cache bits, same
 * output bits as the two kernels (tests/gpu/test_cuda_ops.c checks both with memcmp).
 *
 * Exactness: a row's result depends only on its token's q, keys and the split count (fixed tiling from the
 * slice start, fixed merge order (slice order, whoever merges); the counter atomics only pick the merging
 * block): deterministic and batch invariant for a given split count.
 * q and P are rounded to the KV type for the tensor cores (rel err ~1e-3 .. 1e-2 vs the fp32 reference, as
 * attn_prefill.cu). */
#include <math.h>

#include <cooperative_groups.h>

#include "backend/cuda/cu_common.cuh"
#include "backend/cuda/cu_tc.cuh"

namespace cg = cooperative_groups;

#define AD_BN 64     /* keys per block tile */
#define AD_NW 4      /* warps; warp w takes keys 16w .. 16w+15 of each tile */
#define AD_MAXG 16   /* query heads per KV head: the 16 rows of the MMA */
#define AD_MAXCL 8   /* slices merged through a thread-block cluster at most (the portable cluster size) */

/* dynamic shared memory: Q [16][D] + K [2][64][D] + V [2][64][D], 16-bit; after the key loop the K/V area
 * holds the warps' O for the merge: [AD_NW][16][D + 8] floats (fits: 16 (D+8) 4 * 4 <= 4 * 64 * D * 2), then
 * (cluster merge) the slice's result m [16], l [16], acc [16][D] floats (fits: D = 64: 18.4 + 4.2 <= 32 KB;
 * D = 128: 34.8 + 8.3 <= 64 KB). */
template <int D> static constexpr int ad_smem() { return (16 + 4 * AD_BN) * D * 2; }
template <int D> __host__ __device__ static constexpr int ad_slice_off() { return 16 * D * 2 + AD_NW * 16 * (D + 8) * 4; }
static_assert(ad_slice_off<64>() + (32 + 16 * 64) * 4 <= ad_smem<64>(), "slice result area");
static_assert(ad_slice_off<128>() + (32 + 16 * 128) * 4 <= ad_smem<128>(), "slice result area");

/* kernel arguments (one struct: the fused variant adds the RoPE / cache-write fields) */
struct ad_args {
    const float *q; /* ROPE: the raw q/k/v rows (q heads, k heads, v heads), else the rotated q */
    int q_stride;
    float *out;
    int n_head, n_head_kv;
    float scale, scale_log2;
    uint16_t *kc, *vc; /* written only by the fused variant (the new token's row) */
    int bs, bs_log2;
    const int32_t *ctx_len, *bt_off, *bt;
    float *partial;
    int n_split;
    int *cnt;                  /* non-NULL (n_split > 1): the last slice to finish merges */
    int cluster;               /* 1 (n_split > 1): launched as clusters of the n_split slices of a (token, KV
                                * head); merged through distributed shared memory */
    const int32_t *pos, *slot; /* ROPE only */
    float theta;
    int neox;
    unsigned long long *trace; /* measurement (tl_cu_mark) */
};

static __device__ __forceinline__ void ad_ld8(const float *p, float o[8]) {
    const float4 a0 = *(const float4 *)p, a1 = *(const float4 *)(p + 4);
    o[0] = a0.x, o[1] = a0.y, o[2] = a0.z, o[3] = a0.w, o[4] = a1.x, o[5] = a1.y, o[6] = a1.z, o[7] = a1.w;
}
/* elements c*8 .. c*8+7 of a head rotated by RoPE: x = those elements, y = the partner chunk's (neox: pairs
 * (i, i + D/2), the partner chunk is c +- D/16; else pairs (2i, 2i + 1) inside x, y unused); cs, sn: [D/2] */
template <int D>
static __device__ __forceinline__ void ad_rot8(const float x[8], const float y[8], int c, int neox, const float *cs,
                                               const float *sn, float o[8]) {
    if (neox) {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            if (c < D / 16) o[j] = tl_cu_rope_rot(x[j], y[j], cs[c * 8 + j], sn[c * 8 + j]).x;
            else o[j] = tl_cu_rope_rot(y[j], x[j], cs[(c - D / 16) * 8 + j], sn[(c - D / 16) * 8 + j]).y;
        }
    } else {
#pragma unroll
        for (int j = 0; j < 8; j += 2) {
            const float2 r = tl_cu_rope_rot(x[j], x[j + 1], cs[c * 4 + j / 2], sn[c * 4 + j / 2]);
            o[j] = r.x, o[j + 1] = r.y;
        }
    }
}

template <int D, int DT, bool ROPE>
__global__ void __launch_bounds__(32 * AD_NW, 3) attn_decode_kernel(const ad_args a) {
    typedef tc_mma<DT> M;
    constexpr int NT = 32 * AD_NW;
    constexpr int NC = D / 8;          /* 16-byte chunks per row */
    constexpr int TB = AD_BN * D * 2;  /* bytes of one K or V tile */
    constexpr int SO = D + 8;          /* row stride (floats) of the merge area: 8-bank shift per row */
    extern __shared__ __align__(128) uint8_t ad_sm[];
    __shared__ float s_m[AD_NW][AD_MAXG], s_l[AD_NW][AD_MAXG];
    __shared__ float s_cs[ROPE ? D / 2 : 1], s_sn[ROPE ? D / 2 : 1];
    __shared__ __align__(16) uint16_t s_new[2][ROPE ? D : 8]; /* ROPE: the new token's k, v (tiles >= 2) */
    const uint32_t sQ = (uint32_t)__cvta_generic_to_shared(ad_sm), sK = sQ + 16 * D * 2, sV = sK + 2 * TB;
    const int n_split = a.n_split, n_head_kv = a.n_head_kv, bs = a.bs, bs_log2 = a.bs_log2;

    const int t = blockIdx.x / n_split, split = blockIdx.x % n_split, g = blockIdx.y;
    const int G = a.n_head / n_head_kv;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    /* batch metadata is uploaded before the step, never written by a kernel: read before the PDL wait */
    if (tid == 0) tl_cu_mark(a.trace, 0);
    const int32_t *table = a.bt + a.bt_off[t];
    const int ctx = a.ctx_len[t];
    const int per = ((ctx + n_split - 1) / n_split + AD_BN - 1) / AD_BN * AD_BN;
    const int c0 = split * per, c1 = min(ctx, c0 + per);
    const int n_kt = c1 > c0 ? (c1 - c0 + AD_BN - 1) / AD_BN : 0;
    /* ROPE: the token is its sequence's only new one, at context position pn = ctx - 1; the slice holding pn
     * writes its k, v to the cache and puts them straight into its own K/V tile (no read back from global:
     * no ordering between this block's stores and its cp.async), every other position was written by an
     * earlier step */
    const int pn = ROPE ? ctx - 1 : -1;
    const bool own = ROPE && pn >= c0 && pn < c1;
    const int kt_new = (pn - c0) >> 6, r_new = (pn - c0) & (AD_BN - 1);

    /* K/V tile kt (keys c0 + 64 kt + r) -> buffer kt & 1: thread takes chunk tid % NC of rows
     * tid / NC + k * (NT / NC); rows past the slice end zero-filled; the new row (ROPE) is skipped in tiles
     * 0 and 1 (stored by the q stage) and copied from s_new in later tiles. One commit group per call. */
    auto load_kv = [&](int kt) {
        const uint32_t boff = (uint32_t)(kt & 1) * TB;
        const int c = tid % NC;
        if (kt < n_kt) {
#pragma unroll
            for (int r = tid / NC; r < AD_BN; r += NT / NC) {
                const int p = c0 + kt * AD_BN + r;
                if (ROPE && p == pn) {
                    if (kt >= 2) {
                        *(uint4 *)(ad_sm + (sK - sQ) + boff + tc_sw<D>(r, c)) = *(const uint4 *)&s_new[0][c * 8];
                        *(uint4 *)(ad_sm + (sV - sQ) + boff + tc_sw<D>(r, c)) = *(const uint4 *)&s_new[1][c * 8];
                    }
                    continue;
                }
                size_t off = 0;
                int nb = 0;
                if (p < c1) {
                    const int blk = bs_log2 >= 0 ? p >> bs_log2 : p / bs, in = bs_log2 >= 0 ? p & (bs - 1) : p % bs;
                    off = (((size_t)table[blk] * n_head_kv + g) * bs + in) * D + c * 8, nb = 16;
                }
                tc_cp16(sK + boff + tc_sw<D>(r, c), a.kc + off, nb);
                tc_cp16(sV + boff + tc_sw<D>(r, c), a.vc + off, nb);
            }
        }
        tc_commit();
    };
    if (ROPE) { /* before the wait: RoPE's cos / sin (positions are metadata), the history's first two tiles */
        for (int i = tid; i < D / 2; i += NT) tl_cu_rope_cs(a.theta, i, D, a.pos[t], &s_cs[i], &s_sn[i]);
        load_kv(0);
        load_kv(1);
        __syncthreads(); /* s_cs, s_sn */
    }
    for (int i = tid; i < (16 - G) * NC; i += NT) /* the MMA's padding rows of Q: zero */
        *(uint4 *)(ad_sm + tc_sw<D>(G + i / NC, i % NC)) = make_uint4(0, 0, 0, 0);
    tl_cu_pdl_wait(); /* q (and without ROPE the new K/V) come from the previous kernel */
    if (tid == 0) tl_cu_mark(a.trace, 1);
    tl_cu_pdl_trigger();
    if (!ROPE) {
        load_kv(0);
        load_kv(1);
    }

    /* Q rows (the G heads of KV head g) -> 16-bit, swizzled (rows >= G were zeroed before the wait). Items:
     * [0, G NC) chunk c of q head r; ROPE: q rotated here, and the slice owning the new position also takes
     * [G NC, G NC + 2 NC): k (rotated) and v of the new token, stored to the cache and to its tile / s_new.
     * Two items a thread per pass, both loaded before either is used (one L2 round trip). */
    const float *qrow = a.q + (size_t)t * a.q_stride;
    const int n_items = G * NC + (own ? 2 * NC : 0);
    for (int i0 = tid; i0 < n_items; i0 += 2 * NT) {
        float x[2][8], y[2][8];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = i0 + u * NT, r = i / NC, c = i % NC;
            if (i >= n_items) break;
            /* q head r, or (r - G) 0: k, 1: v of KV head g */
            const float *src = qrow + (size_t)(r < G ? g * G + r : a.n_head + (r - G) * n_head_kv + g) * D;
            ad_ld8(src + c * 8, x[u]);
            if (ROPE && a.neox && r <= G) ad_ld8(src + (c < D / 16 ? c + D / 16 : c - D / 16) * 8, y[u]);
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = i0 + u * NT, r = i / NC, c = i % NC;
            if (i >= n_items) break;
            float o[8];
            if (ROPE && r <= G) ad_rot8<D>(x[u], y[u], c, a.neox, s_cs, s_sn, o);
#pragma unroll
            for (int j = 0; j < 8; j++) o[j] = ROPE && r <= G ? o[j] : x[u][j];
            const uint4 w = make_uint4(M::pack(o[0], o[1]), M::pack(o[2], o[3]), M::pack(o[4], o[5]), M::pack(o[6], o[7]));
            if (r < G) {
                *(uint4 *)(ad_sm + tc_sw<D>(r, c)) = w;
            } else if (ROPE) {
                const int kv = r - G, sl = a.slot[t];
                const size_t off = (((size_t)(sl / bs) * n_head_kv + g) * bs + sl % bs) * D + c * 8;
                *(uint4 *)((kv ? a.vc : a.kc) + off) = w;
                if (kt_new < 2)
                    *(uint4 *)(ad_sm + ((kv ? sV : sK) - sQ) + (uint32_t)(kt_new & 1) * TB + tc_sw<D>(r_new, c)) = w;
                else
                    *(uint4 *)&s_new[kv][c * 8] = w;
            }
        }
    }
    __syncthreads();

    if (tid == 0) tl_cu_mark(a.trace, 2);
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int kq = 0; kq < D / 16; kq++) tc_ldsm4(qf[kq], sQ + tc_sw<D>(lane & 15, kq * 2 + (lane >> 4)));

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const float scale_log2 = a.scale_log2;

    /* tiles kt and kt + 1 are in flight (groups committed in order): wait for all but the newest */
    for (int kt = 0; kt < n_kt; kt++) {
        tc_wait<1>();
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
        __syncthreads(); /* this buffer is refilled now with tile kt + 2 */
        load_kv(kt + 2);
    }
    tc_wait<0>(); /* nothing is left in flight (the last groups are empty) */
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
            a.out[((size_t)t * a.n_head + hq) * D + d] = L > 0.f ? A / L : 0.f;
        } else if (a.cluster) { /* the slice's result in this block's shared memory (past the warps' O) */
            float *sr = (float *)(ad_sm + ad_slice_off<D>());
            if (d == 0) sr[h] = Mx * a.scale, sr[16 + h] = L;
            sr[32 + h * D + d] = A;
        } else { /* attn.cu's partial: m in units of the scaled score (natural exp), l, acc[D] */
            float *pp = a.partial + (((size_t)t * a.n_head + hq) * n_split + split) * (D + 2);
            if (d == 0) pp[0] = Mx * a.scale, pp[1] = L;
            pp[2 + d] = A;
        }
    }
    if (a.trace) { /* (uniform) */
        __syncthreads();
        if (tid == 0) tl_cu_mark(a.trace, 3);
    }
    /* cluster: the n_split blocks of (token, KV head) are one thread-block cluster; after a cluster barrier
     * (release / acquire of the shared-memory results) block `split` merges outputs split * NT + tid, in
     * steps of n_split * NT, reading every slice's (m, l, acc) from its block's shared memory in slice order
     * (tl_cu_merge_one's arithmetic: the merge kernel's bits); a second barrier keeps every block's shared
     * memory alive until all reads are done. No global partials, no counters, no merge kernel. */
    if (n_split > 1 && a.cluster) {
        cg::cluster_group cl = cg::this_cluster();
        cl.sync();
        const float *sr = (const float *)(ad_sm + ad_slice_off<D>()); /* slice s's: cl.map_shared_rank(sr, s) */
        for (int i = split * NT + tid; i < G * D; i += n_split * NT) {
            const int h = i / D, d = i % D;
            float M = -INFINITY;
            for (int s = 0; s < n_split; s++) M = fmaxf(M, cl.map_shared_rank(sr, (unsigned)s)[h]);
            float L = 0.f, A = 0.f;
            if (M != -INFINITY)
                for (int s = 0; s < n_split; s++) {
                    const float *rs = cl.map_shared_rank(sr, (unsigned)s);
                    const float f = __expf(rs[h] - M);
                    L = fmaf(rs[16 + h], f, L);
                    A = fmaf(rs[32 + h * D + d], f, A);
                }
            a.out[((size_t)t * a.n_head + g * G + h) * D + d] = L > 0.f ? A / L : 0.f;
        }
        cl.sync();
        return;
    }
    /* cnt: the last slice of (token, KV head) to finish merges all slices (no merge kernel); it puts the
     * counter back to 0 for the next launch (CUDA graph replays). Release: every thread's partial stores
     * are fenced (acq_rel, cheaper than the sc __threadfence) before thread 0 counts the block; acquire:
     * the last block fences again before reading the other slices' partials from L2 (__ldcg). */
    if (n_split > 1 && a.cnt) {
        __shared__ int s_last;
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
        __syncthreads();
        if (tid == 0) {
            s_last = atomicAdd(a.cnt + t * n_head_kv + g, 1) == n_split - 1;
            if (s_last) a.cnt[t * n_head_kv + g] = 0;
        }
        __syncthreads();
        if (s_last) {
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
            for (int i = tid; i < G * D; i += NT) {
                const int hq = g * G + i / D;
                a.out[((size_t)t * a.n_head + hq) * D + i % D] =
                    tl_cu_merge_one(a.partial + ((size_t)t * a.n_head + hq) * n_split * (D + 2), n_split, D, i % D);
            }
        }
    }
}

/* grid (n_tok, n_head), D threads: merges the n_split slices of one (token, head), in slice order. */
__global__ void attn_decode_merge_kernel(const float *__restrict__ partial, float *__restrict__ out, int n_head, int D,
                                         int n_split, unsigned long long *trace) {
    const int t = blockIdx.x, hq = blockIdx.y, d = threadIdx.x;
    if (d == 0) tl_cu_mark(trace, 0);
    tl_cu_pdl_wait();
    if (d == 0) tl_cu_mark(trace, 1);
    tl_cu_pdl_trigger();
    out[((size_t)t * n_head + hq) * D + d] = tl_cu_merge_one(partial + ((size_t)t * n_head + hq) * n_split * (D + 2), n_split, D, d);
    if (d == 0) tl_cu_mark(trace, 3);
}

template <int D, int DT, bool ROPE>
static int ad_launch(const tl_cu_attn_args *a, const tl_cu_rope_args *r, int n_split, cudaStream_t st, tl_error *e) {
    /* > 48 KB of dynamic shared memory needs the opt-in (a plain attribute call: legal while capturing) */
    static int attr_set;
    if (!attr_set) {
        cudaError_t err = cudaFuncSetAttribute(attn_decode_kernel<D, DT, ROPE>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, ad_smem<D>());
        if (err != cudaSuccess) return tl_errf(e, "cuda: decode attention smem: %s", cudaGetErrorString(err));
        attr_set = 1;
    }
    ad_args k = {};
    k.q = a->q, k.q_stride = a->q_stride, k.out = a->out, k.n_head = a->n_head, k.n_head_kv = a->n_head_kv;
    k.scale = a->scale, k.scale_log2 = a->scale * 1.4426950408889634f;
    k.kc = (uint16_t *)a->kcache, k.vc = (uint16_t *)a->vcache, k.bs = a->block_size, k.bs_log2 = -1;
    for (int i = 0; i < 31; i++)
        if (a->block_size == 1 << i) k.bs_log2 = i;
    k.ctx_len = a->ctx_len, k.bt_off = a->bt_off, k.bt = a->bt, k.partial = a->partial, k.n_split = n_split;
    k.cluster = n_split > 1 && n_split <= AD_MAXCL && a->merge_cluster;
    k.cnt = n_split > 1 && !k.cluster ? a->counters : NULL;
    if (r) k.pos = r->pos, k.slot = r->slot, k.theta = r->theta, k.neox = r->neox;
    k.trace = a->trace;
    dim3 grid((unsigned)(a->n_tok * n_split), (unsigned)a->n_head_kv);
    cudaError_t err;
    if (k.cluster) { /* clusters of the n_split slices (grid.x = n_tok * n_split: whole clusters) */
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid, cfg.blockDim = dim3(32 * AD_NW), cfg.dynamicSmemBytes = ad_smem<D>(), cfg.stream = st;
        cudaLaunchAttribute at[2];
        at[0].id = cudaLaunchAttributeClusterDimension;
        at[0].val.clusterDim.x = (unsigned)n_split, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
        at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[1].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at, cfg.numAttrs = a->pdl ? 2 : 1;
        err = cudaLaunchKernelEx(&cfg, attn_decode_kernel<D, DT, ROPE>, k);
    } else {
        err = tl_cu_launch(attn_decode_kernel<D, DT, ROPE>, grid, dim3(32 * AD_NW), ad_smem<D>(), st, a->pdl, k);
    }
    if (err != cudaSuccess) return tl_errf(e, "cuda: decode attention: %s", cudaGetErrorString(err));
    if (n_split == 1 || k.cnt || k.cluster) TL_CU_LAUNCHED(e, "decode attention");
    err = tl_cu_launch(attn_decode_merge_kernel, dim3((unsigned)a->n_tok, (unsigned)a->n_head), dim3(a->head_dim), 0, st,
                       a->pdl, (const float *)a->partial, a->out, a->n_head, a->head_dim, n_split, a->trace_merge);
    if (err != cudaSuccess) return tl_errf(e, "cuda: decode attention merge: %s", cudaGetErrorString(err));
    TL_CU_LAUNCHED(e, "decode attention merge");
}

template <bool ROPE>
static int ad_pick(const tl_cu_attn_args *a, const tl_cu_rope_args *r, cudaStream_t st, tl_error *e) {
    if (a->n_tok <= 0) return 0;
    if (!tl_cu_attention_decode_ok(a->head_dim, a->kv_dtype, a->n_head, a->n_head_kv))
        return tl_errf(e, "cuda decode attention: head_dim %d, kv dtype %d, %d/%d heads not supported", a->head_dim,
                       a->kv_dtype, a->n_head, a->n_head_kv);
    const int n_split = tl_cu_attention_splits(a);
    const bool bf = a->kv_dtype == TL_BF16;
    if (a->head_dim == 64)
        return bf ? ad_launch<64, TL_BF16, ROPE>(a, r, n_split, st, e) : ad_launch<64, TL_F16, ROPE>(a, r, n_split, st, e);
    return bf ? ad_launch<128, TL_BF16, ROPE>(a, r, n_split, st, e) : ad_launch<128, TL_F16, ROPE>(a, r, n_split, st, e);
}

extern "C" int tl_cu_attention_decode_ok(int head_dim, int kv_dtype, int n_head, int n_head_kv) {
    return (head_dim == 64 || head_dim == 128) && (kv_dtype == TL_BF16 || kv_dtype == TL_F16) && n_head_kv > 0 &&
           n_head % n_head_kv == 0 && n_head / n_head_kv <= AD_MAXG;
}

extern "C" int tl_cu_attention_decode(const tl_cu_attn_args *a, cudaStream_t st, tl_error *e) {
    return ad_pick<false>(a, NULL, st, e);
}

extern "C" int tl_cu_attention_decode_rope(const tl_cu_attn_args *a, const tl_cu_rope_args *r, cudaStream_t st,
                                           tl_error *e) {
    if (r->n_tok != a->n_tok || r->n_head != a->n_head || r->n_head_kv != a->n_head_kv ||
        r->head_dim != a->head_dim || r->kv_dtype != a->kv_dtype || r->block_size != a->block_size ||
        r->kcache != a->kcache || r->vcache != a->vcache || (const float *)r->qkv != a->q ||
        a->q_stride != (a->n_head + 2 * a->n_head_kv) * a->head_dim)
        return tl_errf(e, "cuda decode attention + RoPE: the rope and attention arguments disagree");
    return ad_pick<true>(a, r, st, e);
}

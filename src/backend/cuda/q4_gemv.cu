/* q4_gemv.cu: the one-launch decode GEMV (INT4 weights, 1..16 token rows) on the tiled layout of q4_mma.cu.
 *
 * q4_mma.cu's version takes three launches (x -> fp16 B fragments in global memory, the GEMV with split-K
 * over blocks, a split-K reduce) and every lane re-loads B fragments from L1/L2 for each k-step. Here one
 * kernel does it all:
 *   prologue  each lane issues the loads of its first two chunks (weights never depend on the previous
 *             kernel, so with programmatic dependent launch they overlap its tail), then waits for the
 *             previous kernel, then the block converts X (plain, RMSNorm'ed or SiLU*up, see cuda_ops.h) of
 *             all tokens to fp16 in shared memory [n_tok][cols + 16] with the per-group sums of the fp16
 *             values [n_tok][cols / group]. Inside each 16-column block x is stored permuted so that a
 *             lane's two B registers are adjacent (one 8-byte load); +16: the lanes of one such load hit
 *             every bank once per 128 bytes;
 *   main loop a block owns a 16-row tile over all of K; its 8 warps split K in group-aligned ranges that
 *             depend only on cols (so every token's sum has the same order for any n_tok: batch
 *             invariance). A warp's range is cut in chunks of UC 64-column blocks, double-buffered in
 *             registers: while one chunk is in the tensor cores the next one's loads are in flight, across
 *             tile boundaries too. Per 64 columns a lane loads one uint4 (its A fragments for 4 mma k-steps)
 *             and the (scale, bias) words of its two rows. A fragments are fp16 1024 + q (rows g) or 64 + q
 *             (rows g + 8) made by bit operations; per group y += s*C + (b - off s) * sum(x) in fp32;
 *   epilogue  warps reduce through shared memory in a fixed order; + bias, + residual, one store each.
 * The grid is persistent (tiles strided over min(tiles, SMs x resident blocks)). Deterministic: no atomics,
 * fixed orders. */
#include "backend/cuda/cu_common.cuh"

#define GV_WARPS 8
/* Dynamic shared memory a block may take (x of all tokens + group sums). Above ~113 KB only one block fits
 * a multiprocessor and the grid runs in two rounds: measured on an H200, 3584 x 18944 at 4 tokens (156 KB)
 * took 64.8 us against q4_mma.cu's 37.9; wider inputs go to q4_mma.cu (tl_cu_q4g_fits). */
#define GV_SMEM_MAX (100 * 1024)

struct q4g_params {
    const uint4 *codes;
    const uint32_t *sb;
    const float *x;
    int x_stride, mode;
    const float *norm_w;
    float eps;
    const float *bias;
    const float *resid; /* may alias y */
    float *y;
    int rows, cols, n_tok, ntiles;
};

template <bool BF16> static __device__ __forceinline__ float2 gv_sb(uint32_t v) {
    if (BF16) return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    return make_float2(tl_cu_f16f((uint16_t)(v & 0xffffu)), tl_cu_f16f((uint16_t)(v >> 16)));
}

static __device__ __forceinline__ void gv_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* One chunk of a lane's work: the 64-column blocks kb0 + j*UC .. (below kb1) of one tile; its codes and the
 * (scale | bias) words of rows g and g + 8 for each of the NGK groups inside each 64 columns (group 128: the
 * group holding it). Loads are issued here and used a chunk later (double buffering). */
template <int UC, int NGK, int G> struct gv_buf {
    uint4 q[UC];
    uint32_t s[UC][NGK][2];
};
template <int UC, int NGK, int G>
static __device__ __forceinline__ void gv_load(gv_buf<UC, NGK, G> &b, const q4g_params &p, int tile, int j, int kb0,
                                               int kb1, int lane, int g) {
    if (tile >= p.ntiles) return;
    const int nkb = p.cols / 64, ng = p.cols / G;
    const uint4 *cp = p.codes + (size_t)tile * nkb * 32 + lane;
    const uint32_t *sbp = p.sb + (size_t)tile * ng * 16;
#pragma unroll
    for (int u = 0; u < UC; u++) {
        const int kb = kb0 + j * UC + u;
        if (kb < kb1) {
            b.q[u] = __ldg(cp + (size_t)kb * 32);
#pragma unroll
            for (int h = 0; h < NGK; h++) {
                const int gi = kb * 64 / G + h;
                b.s[u][h][0] = __ldg(sbp + gi * 16 + g);
                b.s[u][h][1] = __ldg(sbp + gi * 16 + g + 8);
            }
        }
    }
}

/* The mma work of one chunk into acc: C of each group of the chunk on the tensor cores, in its own
 * accumulators (independent HMMA chains), then each group's fp32 fold, in order. */
template <int NTILE, bool BF16, int G, int UC, int NGK>
static __device__ __forceinline__ void gv_compute(const gv_buf<UC, NGK, G> &b, float (&acc)[NTILE][4], int j, int kb0,
                                                  int kb1, const __half *xh, const float *gs, int KP, int ng,
                                                  int n_tok, int g, int q) {
    constexpr int SPG = G / 16;                  /* 16-column k-steps per group */
    constexpr int NGC = (UC * 4 + SPG - 1) / SPG; /* groups in a chunk (chunks are group-aligned) */
    float c[NGC][NTILE][4];
#pragma unroll
    for (int gc = 0; gc < NGC; gc++)
#pragma unroll
        for (int n = 0; n < NTILE; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) c[gc][n][i] = 0.f;
    /* k-step outer, 64-column block inner: consecutive HMMAs feed different accumulators (no stall between) */
#pragma unroll
    for (int jj = 0; jj < 4; jj++) {
#pragma unroll
        for (int u = 0; u < UC; u++) {
            const int kb = kb0 + j * UC + u;
            if (kb < kb1) {
                const int k0 = kb * 64 + jj * 16, gc = (u * 4 + jj) / SPG;
                /* rows g (nibbles 0,4 and 2,6): fp16 1024 + q (ulp 1 at 1024); rows g + 8 (nibbles 1,5 and 3,7) left
                 * in place under exponent 64, whose ulp is 1/16: 64 + q. One shift, four LOP3s. */
                const uint32_t w = jj == 0 ? b.q[u].x : jj == 1 ? b.q[u].y : jj == 2 ? b.q[u].z : b.q[u].w, w8 = w >> 8;
                const uint32_t a0 = (w & 0x000F000Fu) | 0x64006400u, a1 = (w & 0x00F000F0u) | 0x54005400u;
                const uint32_t a2 = (w8 & 0x000F000Fu) | 0x64006400u, a3 = (w8 & 0x00F000F0u) | 0x54005400u;
#pragma unroll
                for (int n = 0; n < NTILE; n++) {
                    const int t = n * 8 + g;
                    uint2 bv = make_uint2(0u, 0u);
                    if (t < n_tok) bv = *(const uint2 *)(xh + t * KP + k0 + 4 * q); /* {x[2q],x[2q+1]}, {x[2q+8],x[2q+9]} */
                    gv_mma(c[gc][n], a0, a1, a2, a3, bv.x, bv.y);
                }
            }
        }
    }
#pragma unroll
    for (int gc = 0; gc < NGC; gc++) { /* fold: y += s*C + (b - off s) * sum(x), the offsets of the A fragments */
        const int ks0 = gc * SPG, u = ks0 / 4, kb = kb0 + j * UC + u;
        if (kb >= kb1) break;
        const int gi = (kb * 64 + (ks0 % 4) * 16) / G, h = G < 64 ? (ks0 % 4) * 16 / G : 0;
        const float2 s0 = gv_sb<BF16>(b.s[u][h][0]), s1 = gv_sb<BF16>(b.s[u][h][1]);
        const float bb0 = s0.y - 1024.f * s0.x, bb1 = s1.y - 64.f * s1.x;
#pragma unroll
        for (int n = 0; n < NTILE; n++) {
            const int t0 = n * 8 + 2 * q;
            const float x0 = t0 < n_tok ? gs[t0 * ng + gi] : 0.f;
            const float x1 = t0 + 1 < n_tok ? gs[(t0 + 1) * ng + gi] : 0.f;
            acc[n][0] += s0.x * c[gc][n][0] + bb0 * x0;
            acc[n][1] += s0.x * c[gc][n][1] + bb0 * x1;
            acc[n][2] += s1.x * c[gc][n][2] + bb1 * x0;
            acc[n][3] += s1.x * c[gc][n][3] + bb1 * x1;
        }
    }
}

template <int NTILE, bool BF16, int G, bool U8>
__global__ void __launch_bounds__(32 * GV_WARPS, U8 ? 2 : 3) q4g_kernel(const q4g_params p) {
    /* 64-column blocks per chunk; two chunks in flight per lane at the start of each, one during its math.
     * U8: 4 (2 blocks a multiprocessor, 128 registers), else 2 (3 blocks, 80 registers); half for group 32
     * (twice the scale words) */
    constexpr int UC = (U8 ? 4 : 2) / (G == 32 ? 2 : 1);
    constexpr int NGK = G < 64 ? 64 / G : 1;  /* groups per 64 columns */
    constexpr int KBG = G > 64 ? G / 64 : 1;  /* 64-column blocks per group */
    extern __shared__ __align__(16) unsigned char gv_smem[];
    __shared__ float s_inv[16];
    __shared__ float red[GV_WARPS][NTILE][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int cols = p.cols, nkb = cols / 64, ng = cols / G, KP = cols + 16, n_tok = p.n_tok;
    __half *xh = (__half *)gv_smem;                            /* [n_tok][KP], k permuted inside 16-blocks */
    float *gs = (float *)(gv_smem + (size_t)n_tok * KP * 2);   /* [n_tok][ng] */
    int per = (nkb + GV_WARPS - 1) / GV_WARPS;
    per = (per + KBG - 1) / KBG * KBG;
    const int kb0 = min(nkb, warp * per), kb1 = min(nkb, kb0 + per);
    /* chunks per tile, even (the last may be empty) so the two buffers alternate the same way in every tile */
    const int cpt = ((kb1 - kb0 + UC - 1) / UC + 1) & ~1;

    gv_buf<UC, NGK, G> ba, bb;
    gv_load(ba, p, blockIdx.x, 0, kb0, kb1, lane, g);
    gv_load(bb, p, blockIdx.x, 1, kb0, kb1, lane, g);
    tl_cu_pdl_wait();

    /* ---- prologue: X of every token -> fp16 in shared memory, with group sums. Loads are issued PB at a
     * time per thread before any is used (one L2 latency per PB, not per float4). ---- */
    constexpr int PB = 4;
    const int c4 = cols / 4, n4 = n_tok * c4, nth = blockDim.x;
    if (p.mode == TL_CU_X_RMSNORM) { /* sum of squares per token over the whole block, fixed order */
        __shared__ float s_ss[GV_WARPS][16];
        for (int t = 0; t < n_tok; t++) {
            const float4 *xr = (const float4 *)(p.x + (size_t)t * p.x_stride);
            float ss = 0.f;
            for (int base = 0; base < c4; base += 2 * PB * nth) {
                float4 v[2 * PB];
#pragma unroll
                for (int u = 0; u < 2 * PB; u++) {
                    const int i = base + u * nth + threadIdx.x;
                    v[u] = i < c4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                }
#pragma unroll
                for (int u = 0; u < 2 * PB; u++) ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
            }
            ss = tl_cu_warp_sum(ss);
            if (lane == 0) s_ss[warp][t] = ss;
        }
        __syncthreads();
        if ((int)threadIdx.x < n_tok) {
            float ss = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < GV_WARPS; w2++) ss += s_ss[w2][threadIdx.x];
            s_inv[threadIdx.x] = rsqrtf(ss / (float)cols + p.eps);
        }
        __syncthreads();
    }
    {
        constexpr int SEG = G / 4; /* threads (one float4 each) per group: aligned segments of a warp */
        for (int base = 0; base < n4; base += PB * nth) {
            float4 a[PB], b[PB];
#pragma unroll
            for (int u = 0; u < PB; u++) {
                const int idx = base + u * nth + threadIdx.x;
                const int t = idx / c4, k = (idx - t * c4) * 4;
                a[u] = b[u] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (idx < n4) {
                    const float *xr = p.x + (size_t)t * p.x_stride + k;
                    a[u] = *(const float4 *)xr;
                    if (p.mode == TL_CU_X_RMSNORM) b[u] = *(const float4 *)(p.norm_w + k);
                    else if (p.mode == TL_CU_X_SILU) b[u] = *(const float4 *)(xr + cols);
                }
            }
#pragma unroll
            for (int u = 0; u < PB; u++) {
                const int idx = base + u * nth + threadIdx.x;
                const int t = idx / c4, k = (idx - t * c4) * 4;
                float4 v = a[u];
                if (p.mode == TL_CU_X_RMSNORM) {
                    const float inv = idx < n4 ? s_inv[t] : 0.f;
                    v = make_float4(a[u].x * inv * b[u].x, a[u].y * inv * b[u].y, a[u].z * inv * b[u].z,
                                    a[u].w * inv * b[u].w);
                } else if (p.mode == TL_CU_X_SILU) {
                    v = make_float4(a[u].x / (1.f + expf(-a[u].x)) * b[u].x, a[u].y / (1.f + expf(-a[u].y)) * b[u].y,
                                    a[u].z / (1.f + expf(-a[u].z)) * b[u].z, a[u].w / (1.f + expf(-a[u].w)) * b[u].w);
                }
                const __half2 h0 = __floats2half2_rn(v.x, v.y), h1 = __floats2half2_rn(v.z, v.w);
                float sum = (__low2float(h0) + __high2float(h0)) + (__low2float(h1) + __high2float(h1));
#pragma unroll
                for (int o = 1; o < SEG; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
                if (idx < n4) {
                    /* pair (x[c], x[c+1]) of a 16-column block (c even) goes to 2c (c < 8) or 2c - 14 (c >= 8), so
                     * lane q's two B registers {c = 2q, 2q + 8} sit side by side at 4q: one 8-byte load */
                    const int c = k & 15, c2 = c + 2;
                    __half *row = xh + (size_t)t * KP + (k - c);
                    *(__half2 *)(row + (c < 8 ? 2 * c : 2 * c - 14)) = h0;
                    *(__half2 *)(row + (c2 < 8 ? 2 * c2 : 2 * c2 - 14)) = h1;
                    if ((threadIdx.x & (SEG - 1)) == 0) gs[t * ng + k / G] = sum;
                }
            }
        }
    }
    __syncthreads();
    tl_cu_pdl_trigger();

    /* ---- main loop over this block's tiles; ba holds chunk j, bb chunk j + 1 when the step starts ---- */
    for (int tile = blockIdx.x; tile < p.ntiles; tile += gridDim.x) {
        float acc[NTILE][4];
#pragma unroll
        for (int n = 0; n < NTILE; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[n][i] = 0.f;
        const int next = tile + gridDim.x;
        for (int j = 0; j < cpt; j += 2) {
            gv_compute<NTILE, BF16, G>(ba, acc, j, kb0, kb1, xh, gs, KP, ng, n_tok, g, q);
            if (j + 2 < cpt) gv_load(ba, p, tile, j + 2, kb0, kb1, lane, g);
            else gv_load(ba, p, next, 0, kb0, kb1, lane, g);
            gv_compute<NTILE, BF16, G>(bb, acc, j + 1, kb0, kb1, xh, gs, KP, ng, n_tok, g, q);
            if (j + 3 < cpt) gv_load(bb, p, tile, j + 3, kb0, kb1, lane, g);
            else gv_load(bb, p, next, 1, kb0, kb1, lane, g);
        }
#pragma unroll
        for (int n = 0; n < NTILE; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) red[warp][n][i][lane] = acc[n][i];
        __syncthreads();
        for (int idx = threadIdx.x; idx < NTILE * 128; idx += blockDim.x) {
            const int n = idx >> 7, i = (idx >> 5) & 3, l = idx & 31;
            float v = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < GV_WARPS; w2++) v += red[w2][n][i][l];
            const int r = tile * 16 + (l >> 2) + (i >= 2 ? 8 : 0), t = n * 8 + 2 * (l & 3) + (i & 1);
            if (r < p.rows && t < n_tok) {
                const size_t o = (size_t)t * p.rows + r;
                if (p.bias) v += p.bias[r];
                if (p.resid) v += p.resid[o];
                p.y[o] = v;
            }
        }
        __syncthreads();
    }
}

static size_t q4g_smem(int64_t cols, int n_tok, int group) {
    return (size_t)n_tok * (size_t)(cols + 16) * 2 + (size_t)n_tok * (size_t)(cols / group) * 4;
}

extern "C" int tl_cu_q4g_fits(int64_t cols, int n_tok) {
    return cols % 64 == 0 && n_tok >= 1 && n_tok <= 16 && q4g_smem(cols, n_tok, 32) <= GV_SMEM_MAX;
}

template <int NT, bool BF, int G>
static cudaError_t q4g_launch(const q4g_params &p, size_t smem, cudaStream_t st, int pdl, int u4) {
    void (*k)(const q4g_params) = u4 ? q4g_kernel<NT, BF, G, false> : q4g_kernel<NT, BF, G, true>;
    cudaError_t err = cudaSuccess;
    if (smem > 48 * 1024 && (err = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)))
        return err;
    int dev = 0, nsm = 0, occ = 0;
    if ((err = cudaGetDevice(&dev)) || (err = cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev)) ||
        (err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k, 32 * GV_WARPS, smem)))
        return err;
    const int64_t cap = (int64_t)nsm * (occ > 0 ? occ : 1);
    const unsigned grid = (unsigned)(p.ntiles < cap ? p.ntiles : cap);
    return tl_cu_launch(k, dim3(grid), dim3(32 * GV_WARPS), smem, st, pdl, p);
}

extern "C" int tl_cu_q4g_gemv(const tl_cu_gemv_args *a, cudaStream_t st, tl_error *e) {
    const tl_cu_q4 *w = a->w;
    if (!w->tiled || w->cols % 64 || w->cols % w->group || (w->group != 32 && w->group != 64 && w->group != 128))
        return tl_errf(e, "cuda int4 gemv: needs the tiled layout, cols %% 64 == 0, group 32/64/128");
    if (a->n_tok < 1 || a->n_tok > 16) return tl_errf(e, "cuda int4 gemv: n_tok %d outside 1..16", a->n_tok);
    if (!tl_cu_q4g_fits(w->cols, a->n_tok))
        return tl_errf(e, "cuda int4 gemv: %d x %lld inputs do not fit in shared memory", a->n_tok, (long long)w->cols);
    if (a->x_mode < TL_CU_X_PLAIN || a->x_mode > TL_CU_X_SILU || (a->x_mode == TL_CU_X_RMSNORM && !a->norm_w) ||
        a->x_stride < (a->x_mode == TL_CU_X_SILU ? 2 : 1) * w->cols || a->x_stride % 4)
        return tl_errf(e, "cuda int4 gemv: bad x mode %d / stride %d", a->x_mode, a->x_stride);
    q4g_params p = {(const uint4 *)w->codes, w->sb, a->x, a->x_stride, a->x_mode, a->norm_w, a->eps, a->bias,
                    a->resid, a->y, (int)w->rows, (int)w->cols, a->n_tok, (int)((w->rows + 15) / 16)};
    const size_t smem = q4g_smem(w->cols, a->n_tok, w->group);
    cudaError_t err;
#define GV_G(NT, BF)                                                     \
    (w->group == 32   ? q4g_launch<NT, BF, 32>(p, smem, st, a->pdl, a->u4)     \
     : w->group == 64 ? q4g_launch<NT, BF, 64>(p, smem, st, a->pdl, a->u4)     \
                      : q4g_launch<NT, BF, 128>(p, smem, st, a->pdl, a->u4))
    if (a->n_tok <= 8)
        err = w->sb_bf16 ? GV_G(1, true) : GV_G(1, false);
    else
        err = w->sb_bf16 ? GV_G(2, true) : GV_G(2, false);
#undef GV_G
    if (err != cudaSuccess) return tl_errf(e, "cuda: q4g_gemv: %s", cudaGetErrorString(err));
    TL_CU_LAUNCHED(e, "q4g_gemv");
}

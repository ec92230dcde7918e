/* q4_gemm.cu: INT4 GEMM on tensor cores for 17..512 token rows (batched decode, mixed batches):
 *   y[n, rows] = x[n, cols] @ W^T (+ bias[rows])
 * with W in the tiled layout of q4_mma.cu (tl_cu_q4t_repack: per 16-row tile and 64-column block, 32 lanes x
 * uint4 = the A fragments of 4 mma.m16n8k16 k-steps; (scale | bias) words tiled [tile][group][16 rows]).
 * No other copy of the weights: they are read as INT4 (0.5 byte + the group's 4 bytes / group per weight).
 *
 * Block tile: BM = WM warps x MT 16-row tiles of weight rows, BN tokens; every warp takes MT tiles and all BN
 * tokens, so a weight is dequantized once per block and each B fragment (x) feeds MT mma. K runs in 64-column
 * blocks through an ST-stage cp.async pipeline in shared memory: per stage the block's codes (BM/16 x 512 B,
 * a lane's 16 bytes are its A fragments), their (scale | bias) words and x (fp16, BN x 64, 16-byte chunks
 * XOR-swizzled per row for ldmatrix). Dequantize in registers: (w >> 4i) & 0x000F000F | 0x64006400 is the fp16
 * pair 1024 + q (rows g; rows g + 8 sit under exponent 64: 64 + q), minus the offset (exact), times s plus b
 * in one HFMA2: the weight rounded once to fp16 (rel 2^-11; the bf16 copies it replaces round to 2^-8). x is
 * rounded to fp16 once per call (tl_cu_q4t_gemm converts it into a workspace): |x| must stay below 65504, as in
 * the decode GEMV. B fragments by ldmatrix.x4; mma.sync m16n8k16, fp32 accumulate.
 *
 * Grid: (token blocks, row blocks, K splits), token blocks fastest so the blocks that share a weight tile run
 * together (read once from DRAM, x stays in L2). Few row blocks (small matrices): K is split over blocks and
 * the partials [split][n][rows] summed in a fixed order by q4m_reduce_kernel (with the bias). Deterministic:
 * no atomics; the result depends on (config, split), which depend on n, rows, cols and the card.
 *
 * Measured (H100, 6c4fc45, bench/RESULTS.md "INT4 GEMM"): 7B decode steps without bf16 copies 2.9x / 1.9x / 1.5x /
 * 1.0x faster than dequantize + cuBLAS at 32 / 64 / 128 / 256 rows, 72B batch 64 2.75x; against cuBLAS on resident
 * bf16 copies only up to ~48 rows. Limits: ~0.9 TB/s of INT4 at 32 rows (cause not found: more bytes in flight,
 * more blocks an SM and the K rotation measured neutral), and mma.sync at <= 235 TFLOP/s once compute-bound. */
#include "backend/cuda/cu_common.cuh"
#include "backend/cuda/cu_tc.cuh"

#include <string.h>

struct q4m_params {
    const uint4 *codes;    /* tiled codes [ceil(rows/16)][cols/64][32] */
    const uint32_t *sb;    /* [ceil(rows/16)][cols/group][16] (scale | bias << 16) */
    const __half *xh;      /* [n, cols] fp16 */
    const float *bias;     /* [rows] or NULL (split 1 only; else the reduce adds it) */
    float *y;              /* [n, rows] */
    float *part;           /* [split][n][rows] when gridDim.z > 1 */
    int rows, cols, n, group, sb_bf16, kper; /* kper: 64-column blocks per split */
    int rot;               /* 1: row block b starts its K loop at stage (13 b) mod stages (see q4m_kernel) */
};

static __device__ __forceinline__ __half2 q4m_h2(uint32_t u) {
    __half2 h;
    memcpy(&h, &u, 4);
    return h;
}
static __device__ __forceinline__ uint32_t q4m_u(__half2 h) {
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

/* (scale | bias << 16) -> {s, s}, {b, b} in fp16 */
static __device__ __forceinline__ void q4m_sb(uint32_t v, int bf16, __half2 &s, __half2 &b) {
    if (bf16) {
        s = __float2half2_rn(__uint_as_float(v << 16));
        b = __float2half2_rn(__uint_as_float(v & 0xffff0000u));
    } else {
        const __half2 h = q4m_h2(v);
        s = __low2half2(h);
        b = __high2half2(h);
    }
}

/* one code word of a lane -> its 4 A registers (fp16 pairs): rows g use (sg, bg), rows g + 8 (s8, b8) */
static __device__ __forceinline__ void q4m_deq(uint32_t w, __half2 sg, __half2 bg, __half2 s8, __half2 b8,
                                               uint32_t a[4]) {
    const uint32_t w8 = w >> 8;
    const __half2 o1024 = q4m_h2(0x64006400u), o64 = q4m_h2(0x54005400u);
    a[0] = q4m_u(__hfma2(__hsub2(q4m_h2((w & 0x000F000Fu) | 0x64006400u), o1024), sg, bg));
    a[1] = q4m_u(__hfma2(__hsub2(q4m_h2((w & 0x00F000F0u) | 0x54005400u), o64), s8, b8));
    a[2] = q4m_u(__hfma2(__hsub2(q4m_h2((w8 & 0x000F000Fu) | 0x64006400u), o1024), sg, bg));
    a[3] = q4m_u(__hfma2(__hsub2(q4m_h2((w8 & 0x00F000F0u) | 0x54005400u), o64), s8, b8));
}

/* Shared memory of one pipeline stage: KS 64-column blocks of the block's TILES 16-row tiles. Codes
 * [TILES][KS][32 lanes] uint4 (a tile's KS blocks are contiguous in the tiled layout: one KS * 512-byte read),
 * (scale | bias) words [TILES][KS][2 groups][16 rows] (2 groups: group 32), x [KS][BN tokens][64] fp16 with the
 * 16-byte chunks of a row XOR-swizzled (ldmatrix without bank conflicts). */
template <int WM, int MT, int BN, int KS> struct q4m_shape {
    static constexpr int TILES = WM * MT;
    static constexpr int W_BYTES = TILES * KS * 512;
    static constexpr int SB_BYTES = TILES * KS * 128;
    static constexpr int X_BYTES = KS * BN * 128;
    static constexpr int STAGE = W_BYTES + SB_BYTES + X_BYTES;
};

template <int WM, int MT, int BN, int KS, int ST, int MINB>
__global__ void __launch_bounds__(WM * 32, MINB) q4m_kernel(const q4m_params p) {
    typedef q4m_shape<WM, MT, BN, KS> S;
    constexpr int NT = BN / 8, NTHR = WM * 32;
    extern __shared__ __align__(128) unsigned char q4m_smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
    const int nkb = p.cols / 64, ng = p.cols / p.group, ntl = (p.rows + 15) / 16;
    const int ngk = p.group < 64 ? 64 / p.group : 1, g32 = p.group == 32;
    const int t0 = blockIdx.x * BN, tile0 = blockIdx.y * S::TILES;
    const int kb0 = blockIdx.z * p.kper, kb1 = min(nkb, kb0 + p.kper);
    const int nst = (kb1 - kb0 + KS - 1) / KS;   /* stages */
    const int ntv = min(NT, (p.n - t0 + 7) / 8); /* n-tiles holding tokens (warp-uniform) */
    /* Row blocks walk their stages rotated, so blocks running together read different 64-column blocks: the
     * tiled layout puts tile t's block kb at (t * nkb + kb) * 512 bytes, and a lockstep sweep sends every
     * block to the same offset modulo the tile stride (and to the same x columns) at once. The token blocks
     * of a row block keep the same order (they share its weights through L2). Fixed per block: deterministic. */
    const int rot = p.rot ? (int)((blockIdx.y * 13u) % (unsigned)nst) : 0;
    auto skb = [&](int s) { return kb0 + (s + rot < nst ? s + rot : s + rot - nst) * KS; };
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(q4m_smem);

    /* stage `slot` <- 64-column blocks kb .. kb + KS - 1 (zero-filled past kb1, the rows, the tokens) */
    auto load = [&](int slot, int kb) {
        const uint32_t s0 = sbase + slot * S::STAGE;
#pragma unroll
        for (int i = 0; i < (S::TILES * KS * 32 + NTHR - 1) / NTHR; i++) {
            const int c = tid + i * NTHR, gt = tile0 + c / (KS * 32), k = kb + (c / 32) % KS;
            const bool ok = c < S::TILES * KS * 32 && gt < ntl && k < kb1;
            const uint4 *src = p.codes + (((size_t)min(gt, ntl - 1) * nkb + min(k, nkb - 1)) * 32 + (c & 31));
            if (c < S::TILES * KS * 32) tc_cp16(s0 + c * 16, src, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < (S::TILES * KS * 8 + NTHR - 1) / NTHR; i++) { /* chunk: tile, block, group, 4 x 16 B */
            const int c = tid + i * NTHR, gt = tile0 + c / (KS * 8), k = kb + (c / 8) % KS, gg = (c >> 2) & 1;
            const bool ok = gt < ntl && k < kb1;
            const uint32_t *src =
                p.sb + (((size_t)min(gt, ntl - 1) * ng + min(k, nkb - 1) * 64 / p.group + gg) * 16 + (c & 3) * 4);
            if (c < S::TILES * KS * 8 && gg < ngk) tc_cp16(s0 + S::W_BYTES + c * 16, src, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < (BN * KS * 8 + NTHR - 1) / NTHR; i++) { /* chunk: token, block, 8 x 16 B */
            const int c = tid + i * NTHR, r = c / (KS * 8), kk = (c / 8) % KS, ch = c & 7, t = t0 + r;
            const bool ok = t < p.n && kb + kk < kb1;
            const __half *src = p.xh + (size_t)min(t, p.n - 1) * p.cols + min(kb + kk, nkb - 1) * 64 + ch * 8;
            if (c < BN * KS * 8)
                tc_cp16(s0 + S::W_BYTES + S::SB_BYTES + kk * BN * 128 + tc_sw<64>(r, ch), src, ok ? 16 : 0);
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][nt][i] = 0.f;

#pragma unroll
    for (int s = 0; s < ST - 1; s++) {
        if (s < nst) load(s, skb(s));
        tc_commit();
    }
    for (int it = 0; it < nst; it++) {
        tc_wait<ST - 2>();
        __syncthreads(); /* stage it landed for every thread; every warp is done with stage it - 1 */
        if (it + ST - 1 < nst) load((it + ST - 1) % ST, skb(it + ST - 1));
        tc_commit();
        const int slot = it % ST, kn = min(KS, kb1 - skb(it));
        const unsigned char *st = q4m_smem + slot * S::STAGE;
#pragma unroll 1
        for (int kk = 0; kk < kn; kk++) {
            const uint32_t *sbw = (const uint32_t *)(st + S::W_BYTES) + kk * 32;
            const uint32_t xs = sbase + slot * S::STAGE + S::W_BYTES + S::SB_BYTES + kk * BN * 128;
            uint4 wq[MT];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) wq[mt] = *(const uint4 *)(st + (((warp * MT + mt) * KS + kk) * 32 + lane) * 16);
            __half2 sg[MT], bg[MT], s8[MT], b8[MT]; /* the group's {s, s}, {b, b} of rows g, g + 8 of each tile */
#pragma unroll
            for (int j = 0; j < 4; j++) {
                if (j == 0 || (j == 2 && g32)) { /* group 32: k-steps 2, 3 are the block's second group */
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint32_t *sw = sbw + (warp * MT + mt) * KS * 32 + (j >> 1) * 16 + g;
                        q4m_sb(sw[0], p.sb_bf16, sg[mt], bg[mt]);
                        q4m_sb(sw[8], p.sb_bf16, s8[mt], b8[mt]);
                    }
                }
                uint32_t bf[NT][2];
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    if (2 * np < ntv) {
                        uint32_t r[4];
                        tc_ldsm4(r, xs + tc_sw<64>(np * 16 + ((lane >> 4) << 3) + (lane & 7), 2 * j + ((lane >> 3) & 1)));
                        bf[2 * np][0] = r[0], bf[2 * np][1] = r[1], bf[2 * np + 1][0] = r[2], bf[2 * np + 1][1] = r[3];
                    } else {
                        bf[2 * np][0] = bf[2 * np][1] = bf[2 * np + 1][0] = bf[2 * np + 1][1] = 0u;
                    }
                }
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint32_t w = j == 0 ? wq[mt].x : j == 1 ? wq[mt].y : j == 2 ? wq[mt].z : wq[mt].w;
                    uint32_t a[4];
                    q4m_deq(w, sg[mt], bg[mt], s8[mt], b8[mt], a);
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
                        if (nt < ntv) tc_mma<TL_F16>::mma(acc[mt][nt], a, bf[nt][0], bf[nt][1]);
                }
            }
        }
    }
    tc_wait<0>();

    /* epilogue: C fragment (rows g, g + 8) x (tokens 2q, 2q + 1) of each (tile, n-tile) */
    const int split = gridDim.z > 1;
    float *dst = split ? p.part + (size_t)blockIdx.z * p.n * p.rows : p.y;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int gt = tile0 + warp * MT + mt;
        if (gt >= ntl) continue;
        const int r[2] = {gt * 16 + g, gt * 16 + g + 8};
        float bv[2] = {0.f, 0.f};
        if (!split && p.bias) {
            if (r[0] < p.rows) bv[0] = p.bias[r[0]];
            if (r[1] < p.rows) bv[1] = p.bias[r[1]];
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            if (nt >= ntv) continue;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int rr = r[i >> 1], t = t0 + nt * 8 + 2 * q + (i & 1);
                if (rr < p.rows && t < p.n) dst[(size_t)t * p.rows + rr] = acc[mt][nt][i] + bv[i >> 1];
            }
        }
    }
}

/* y[t, r] = sum over s of part[s, t, r] (fixed order) + bias[r] */
__global__ void q4m_reduce_kernel(const float *__restrict__ part, const float *__restrict__ bias, float *__restrict__ y,
                                  int rows, int n, int split) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, m = (int64_t)rows * n;
    if (i >= m) return;
    float v = 0.f;
    for (int s = 0; s < split; s++) v += part[s * m + i];
    y[i] = v + (bias ? bias[i % rows] : 0.f);
}

/* xh[i] = fp16(x[i]), 4 at a time (n * cols % 4 == 0) */
__global__ void q4m_xh_kernel(const float4 *__restrict__ x, uint2 *__restrict__ xh, int64_t n4) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 v = x[i];
    xh[i] = make_uint2(q4m_u(__floats2half2_rn(v.x, v.y)), q4m_u(__floats2half2_rn(v.z, v.w)));
}

/* ---- host: configurations, split choice, launch ---- */
typedef void (*q4m_fn)(const q4m_params);
struct q4m_cfg {
    q4m_fn fn;
    int threads, bm, bn, ks, smem;
    const char *name;
};
#define Q4M_CFG(WM, MT, BN, KS, ST, MINB) \
    {q4m_kernel<WM, MT, BN, KS, ST, MINB>, WM * 32, WM * MT * 16, BN, KS, ST * q4m_shape<WM, MT, BN, KS>::STAGE, \
     "w" #WM "m" #MT "n" #BN "k" #KS "s" #ST}
/* cfg = index + 1 (tl_cu_gemm_args.cfg) */
static const q4m_cfg q4m_cfgs[TL_CU_GEMM_NCFG] = {
    Q4M_CFG(8, 2, 32, 2, 8, 1), /* 256 x 32, 2 blocks a stage, 7 stages (196 KB) in flight: few tokens (memory-bound) */
    Q4M_CFG(8, 2, 32, 4, 4, 1), /* 256 x 32, 4 blocks a stage (2 KB contiguous a tile), 3 stages in flight */
    Q4M_CFG(8, 2, 64, 2, 6, 1), /* 256 x 64, 2 blocks a stage, 5 in flight */
    Q4M_CFG(8, 2, 64, 1, 4, 2), /* 256 x 64, 1 block a stage, 2 blocks an SM: many tokens (run 1's best there) */
    Q4M_CFG(8, 2, 32, 1, 6, 2), /* 256 x 32, 1 block a stage, 2 blocks an SM (run 1's n <= 32 default) */
};

extern "C" const char *tl_cu_q4t_gemm_cfg_name(int cfg) {
    return cfg >= 1 && cfg <= TL_CU_GEMM_NCFG ? q4m_cfgs[cfg - 1].name : "?";
}

/* measured (H100, b980e99, 7B shapes): 256 x 32 with 1 block a stage at <= 32 rows (gate_up 87.9 us against 88.5 -
 * 89.6 for 2 / 4 blocks a stage), 256 x 64 two blocks an SM above (gate_up 128 rows 210 us, the others 254 - 261) */
extern "C" int tl_cu_q4t_gemm_cfg(int n) { return n <= 32 ? 5 : 4; }

/* blocks of configuration c resident on one multiprocessor (set up once: dynamic shared memory over 48 KB) */
static int q4m_occupancy(int c, tl_error *e) {
    static int occ[TL_CU_GEMM_NCFG];
    if (occ[c]) return occ[c];
    const q4m_cfg *k = &q4m_cfgs[c];
    if (cudaFuncSetAttribute(k->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, k->smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ[c], k->fn, k->threads, k->smem) != cudaSuccess ||
        occ[c] < 1) {
        cudaGetLastError();
        occ[c] = 0;
        return tl_errf(e, "cuda int4 gemm %s: cannot set up the kernel", k->name);
    }
    return occ[c];
}

static int q4m_sms(void) {
    static int n_sm;
    if (!n_sm) {
        int dev = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n_sm < 1) n_sm = 132;
    }
    return n_sm;
}

/* K split: the fewest waves per unit of work. blocks * s over `slots` resident blocks takes ceil(blocks * s /
 * slots) waves of (nkb / s) 64-column blocks each; each extra split costs 4% (partials written and summed).
 * At least 8 64-column blocks a split (the pipeline fills), partials within part_floats. */
static int q4m_split(int64_t blocks, int slots, int nkb, int64_t n_rows, size_t part_floats) {
    int best = 1;
    double bt = 1e30;
    for (int s = 1; s <= 16; s++) {
        const int kper = (nkb + s - 1) / s;
        if (s > 1 && (kper < 8 || (size_t)s * n_rows > part_floats)) break;
        const int sr = (nkb + kper - 1) / kper; /* splits actually used */
        const double waves = (double)((blocks * sr + slots - 1) / slots);
        const double t = waves * kper * (1.0 + 0.04 * (sr - 1));
        if (t < bt - 1e-9) bt = t, best = sr;
    }
    return best;
}

extern "C" int tl_cu_q4t_gemm(const tl_cu_gemm_args *a, cudaStream_t st, tl_error *e) {
    const tl_cu_q4 *w = a->w;
    if (!w->tiled || w->cols % 64 || (w->group != 32 && w->group != 64 && w->group != 128))
        return tl_errf(e, "cuda int4 gemm: needs the tiled layout, cols %% 64 == 0, group 32/64/128");
    if (a->n < 1 || a->n > 65535 * 32) return tl_errf(e, "cuda int4 gemm: n %d out of range", a->n);
    const int cfg = a->cfg ? a->cfg : tl_cu_q4t_gemm_cfg(a->n);
    if (cfg < 1 || cfg > TL_CU_GEMM_NCFG) return tl_errf(e, "cuda int4 gemm: no configuration %d", cfg);
    const q4m_cfg *k = &q4m_cfgs[cfg - 1];
    const int occ = q4m_occupancy(cfg - 1, e);
    if (occ < 0) return -1;
    const int nkb = (int)(w->cols / 64);
    const int64_t tb = (a->n + k->bn - 1) / k->bn, rb = (w->rows + k->bm - 1) / k->bm;
    if (rb > 65535) return tl_errf(e, "cuda int4 gemm: %lld rows too many", (long long)w->rows);
    int split = a->split > 0 ? a->split : q4m_split(tb * rb, occ * q4m_sms(), nkb, (int64_t)a->n * w->rows,
                                                     a->part ? a->part_floats : 0);
    int kper = (nkb + split - 1) / split;
    split = (nkb + kper - 1) / kper;
    if (split > 1 && (!a->part || (size_t)split * a->n * w->rows > a->part_floats))
        return tl_errf(e, "cuda int4 gemm: split %d needs a larger partials workspace", split);
    const int64_t n4 = (int64_t)a->n * w->cols / 4;
    q4m_xh_kernel<<<(unsigned)((n4 + 255) / 256), 256, 0, st>>>((const float4 *)a->x, (uint2 *)a->xh, n4);
    q4m_params p = {(const uint4 *)w->codes, w->sb, (const __half *)a->xh, a->bias, a->y, a->part, (int)w->rows,
                    (int)w->cols, a->n, w->group, w->sb_bf16, kper, !a->no_rot};
    k->fn<<<dim3((unsigned)tb, (unsigned)rb, (unsigned)split), k->threads, k->smem, st>>>(p);
    if (split > 1) {
        const int64_t m = (int64_t)a->n * w->rows;
        q4m_reduce_kernel<<<(unsigned)((m + 255) / 256), 256, 0, st>>>(a->part, a->bias, a->y, (int)w->rows, a->n,
                                                                       split);
    }
    TL_CU_LAUNCHED(e, "q4t_gemm");
}

/* q4_gemv.cu: the one-launch decode GEMV (INT4 weights, 1..16 token rows) on the tiled layout of q4_mma.cu
 * (q4_mma.cu's version takes three launches: x -> fp16 B fragments in global memory, the GEMV with split-K
 * over blocks, a split-K reduce). Here one kernel, q4s_kernel below, streams the weights through a
 * shared-memory ring and does the x prologue (plain, RMSNorm'ed or SiLU*up, see cuda_ops.h), the mma loop and
 * the epilogue (bias, residual). An earlier one-launch kernel that double-buffered the weights in registers
 * ("v1", 8 warps on a tile, 2-3 blocks an SM) measured 3.17-3.20 ms/token against this kernel's 2.45-2.49 on
 * an H100 (7B decode, same runs) and was removed. */
#include "backend/cuda/cu_common.cuh"

/* Dynamic shared memory a block may take (x of all tokens + group sums). Above ~113 KB only one block fits
 * a multiprocessor and the grid runs in two rounds: measured on an H200, 3584 x 18944 at 4 tokens (156 KB)
 * took 64.8 us against q4_mma.cu's 37.9; wider inputs go to q4_mma.cu (tl_cu_q4g_fits). */
#define GV_SMEM_MAX (100 * 1024)

struct q4g_params {
    const uint4 *codes;
    const uint32_t *sb;
    const float *x;
    const __half *x16; /* TL_CU_X_F16 */
    int x_stride, mode;
    __half *yh;      /* gate/up pairs: h = silu(gate) * up, [n_tok][rows / 2] (y unused) */
    const float *norm_w;
    float eps;
    const float *bias;
    const float *resid; /* may alias y */
    float *y;
    int rows, cols, n_tok, ntiles;
    int nunits, per; /* a block's work: units u = blockIdx.x, + gridDim.x, ..., each the tiles u + k * nunits, k < per
                      * (per 2: gate tile u, then up tile u + nunits) */
    int dbg; /* tl_cu_gemv_args.dbg: benchmark probes (wrong results); bit 8 also: the loop prologues at n_tok 1 */
    unsigned long long *trace; /* tl_cu_gemv_args.trace (measurement) */
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

/* ==== The kernel: weights streamed through a shared-memory ring by the bulk copy engine (cp.async.bulk, sm_90) ====
 * One block a multiprocessor (persistent grid, tiles strided), W consumer warps + a producer warp + a reducer
 * warp. A stage is
 * SK = W * 2 64-column blocks of one 16-row tile (codes, then the (scale | bias) words of their groups: two bulk
 * copies, contiguous in the tiled layout), completed on a full barrier; the consumers arrive on the stage's
 * empty barrier once they have its words in registers. The producer starts before the PDL wait (weights never
 * depend on the previous kernel) and keeps up to `ns` stages (~150 KB an SM at batch 1) in flight without
 * registers, so the memory system sees many bytes in flight however long the consumers take. Warp w takes
 * the blocks 2w, 2w + 1 of every stage (group-aligned, a function of cols only: batch invariance), so the hot
 * loop has no range checks (one warp-uniform test per stage); per tile the consumer warps hand their partials to
 * the reducer warp through two mbarrier-guarded shared buffers, and it sums them in warp order and writes the
 * epilogue, so the consumers never meet at a block barrier (v4; v3 reduced with a block barrier a tile: a 7B
 * layer's four GEMVs 65.5-65.7 against 66.6-66.7 us on an H100, bit-equal results). x: the consumers convert X of all tokens to fp16 in
 * shared memory [n_tok][cols + 16] with the per-group sums of the fp16 values [n_tok][cols / group]; inside
 * each 16-column block x is stored permuted so that a lane's two B registers are adjacent (one 8-byte load;
 * +16: the lanes of one load hit every bank once per 128 bytes). Deterministic: no atomics; results depend on (cols, group, W) only, not on n_tok or the ring.
 * Gate/up pairs (p.yh, per 2): the block's units are pairs of tiles (gate tile u, up tile u + nunits), the
 * reducer keeps the gate tile's sums in registers and writes h = SiLU(gate) * up as fp16 for down_proj's
 * TL_CU_X_F16 prologue (gs_silu: the SiLU prologue's arithmetic, so the same bits).
 * MODE 4 (v5, the default at one token): MODE 1's stages, blocks and sums (the same bits) with less bookkeeping
 * a stage (32-bit shared addresses advanced per stage, each lane releasing the stage itself, full stages without
 * range tests) and only the token's mma columns folded: 7B decode 2.03-2.06 against 2.08-2.13 ms/token on an H100
 * (same runs; Nsight Compute had counted ~60 instructions a stage outside the mma work, 2 blocks a warp). 4 blocks
 * a warp a stage measured no faster (2.06-2.16: gate/up's x waits behind twice the bytes a stage). Its full stages
 * run without tests or zeroing (the ragged last stage apart): with every weight L2-resident (dbg 1024) 1.77-1.80
 * against 1.84 ms/token, the real decode unchanged (2.03-2.07 both: gate/up and down stream at DRAM speed).
 * MODE 1 (v3, the default for 2..16 tokens): no guards in the hot loop (token rows clamped, gs_compute_lean), A fragments by
 * one LOP3 each, stage addresses and barrier addresses computed once: 7B decode 2.45 ms/token against v2w16a's
 * 2.80 for the previous form of this kernel (v2w16a: x loads guarded by t < n_tok next to each mma, two LOP3s
 * a fragment; removed) on an H100, same run. MODE 2 / 3: benchmark probes (ring alone / math alone, wrong
 * results). W = 16,
 * KW = 2 blocks a warp a stage; W = 8 and x operands loaded before the stage wait measured slower (7B decode
 * 3.24 / 2.91 against 2.81 ms/token on an H100, removed), W = 14 with KW = 4 (one 3584-column stage) too
 * (2.50-2.53 against 2.45-2.47, removed), and so did stream-K and two 8-warp blocks an SM (bench/RESULTS.md
 * "Decode GEMV v3"). */
#define GS_NSMAX 32

static __device__ __forceinline__ uint32_t gs_sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
static __device__ __forceinline__ void gs_bar_init(uint64_t *b, unsigned n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(gs_sa(b)), "r"(n) : "memory");
}
static __device__ __forceinline__ void gs_bar_expect(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(gs_sa(b)), "r"(bytes) : "memory");
}
/* One test of the phase of parity `parity` of the mbarrier at shared-window address b: 1 when complete. */
static __device__ __forceinline__ uint32_t gs_bar_try(uint32_t b, unsigned parity) {
    uint32_t ok;
    asm volatile(
        "{\n\t.reg .pred P1;\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 P1, [%1], %2;\n\t"
        "selp.u32 %0, 1, 0, P1;\n\t}"
        : "=r"(ok)
        : "r"(b), "r"(parity)
        : "memory");
    return ok;
}
/* Waits for that phase. A wait longer than 5 s (a bug: a lost stage) traps, so the launch fails with an error
 * instead of hanging the GPU. The address is a shared-window one computed once by the caller (the generic ->
 * shared conversion costs a few instructions each time in a hot loop). */
static __device__ __forceinline__ void gs_bar_wait_sa(uint32_t b, unsigned parity) {
    if (gs_bar_try(b, parity)) return;
    uint64_t t0 = 0;
    for (unsigned polls = 1;; polls++) {
        if (gs_bar_try(b, parity)) return;
        if (polls & 63) continue;
        uint64_t now;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (!t0) t0 = now;
        else if (now - t0 > 5000000000ull) __trap();
    }
}
static __device__ __forceinline__ void gs_bar_wait(uint64_t *b, unsigned parity) { gs_bar_wait_sa(gs_sa(b), parity); }
static __device__ __forceinline__ void gs_bar_arrive_sa(uint32_t b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(b) : "memory");
}
/* x first: the producer issues GS_XFIRST_PRE stages before the PDL wait, the rest only once every consumer has
 * issued its x loads, so those reach the L2 ahead of most of the ring's DRAM traffic instead of queueing behind
 * ~100 KB a multiprocessor (7B decode on an H100, 4 rows each, same run: 2 stages 2.03-2.04 ms/token, 1 stage
 * 2.09, all stages first (before) 2.05-2.07). Returns the stages before + 1, 0 for the old order. dbg bits 12-14
 * (measurements): 0 the default, 7 the old order, n stages n - 1. */
#define GS_XFIRST_PRE 2
static __device__ __forceinline__ int gs_xfirst(int dbg) {
    const int f = (dbg >> 12) & 7;
    return f == 7 ? 0 : f ? f : GS_XFIRST_PRE + 1;
}
/* A relaxed arrival: it does not wait for this thread's loads in flight (x first: the loads are issued, not done) */
static __device__ __forceinline__ void gs_bar_arrive_relaxed(uint32_t b) {
    asm volatile("mbarrier.arrive.relaxed.cta.shared::cta.b64 _, [%0];" ::"r"(b) : "memory");
}
static __device__ __forceinline__ void gs_bulk(void *dst, const void *src, unsigned bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     gs_sa(dst)),
                 "l"(src), "r"(bytes), "r"(gs_sa(b))
                 : "memory");
}
template <int NT> static __device__ __forceinline__ void gs_sync() { /* the consumer warps only */
    asm volatile("bar.sync 1, %0;" ::"n"(NT) : "memory");
}

/* A fragments from one code word: (w & 0x000F000F) | 0x64006400 and (w & 0x00F000F0) | 0x54005400 in one LOP3
 * each (written as C, the compiler makes two: both constants are immediates) */
static __device__ __forceinline__ uint32_t gs_lo(uint32_t w) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(w), "n"(0x000F000F), "n"(0x64006400));
    return d;
}
static __device__ __forceinline__ uint32_t gs_hi(uint32_t w) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(w), "n"(0x00F000F0), "n"(0x54005400));
    return d;
}

/* v3 (MODE 1): the mma work of blocks U0 .. U0 + NU - 1 of a warp's KW, without per-k-step guards. Token
 * columns past n_tok read a valid token's x (the index clamped to n_tok - 1) and their outputs are never
 * stored: column t of an mma depends on column t of B only. xb[n]: this lane's B row for n-tile n (token
 * min(8n + g, n_tok - 1), offset 4q); g0[n] / g1[n]: the group-sum rows of tokens 8n + 2q / 8n + 2q + 1
 * (clamped). Per group: C on the tensor cores (k-steps in order), then acc = fma(s, C, fma(b - off s, sum x,
 * acc)) with explicit intrinsics, so no instantiation (NTILE, NU) contracts it differently: a token's result
 * is the same bits for any n_tok and any split of a stage's blocks into calls. */
template <int NTILE, bool BF16, int G, int KW, int NU, int U0, bool ONE = false>
static __device__ __forceinline__ void gs_compute_lean(const uint4 (&qw)[KW], const uint32_t (&sw)[KW][G < 64 ? 64 / G : 1][2],
                                                       float (&acc)[NTILE][4], int kbg, const __half *const (&xb)[NTILE],
                                                       const float *const (&g0)[NTILE], const float *const (&g1)[NTILE]) {
    constexpr int SPG = G / 16;
    constexpr int NGC = (NU * 4 + SPG - 1) / SPG;
    float c[NGC][NTILE][4];
#pragma unroll
    for (int gc = 0; gc < NGC; gc++)
#pragma unroll
        for (int n = 0; n < NTILE; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) c[gc][n][i] = 0.f;
#pragma unroll
    for (int jj = 0; jj < 4; jj++) {
#pragma unroll
        for (int u = 0; u < NU; u++) {
            const int k0 = (kbg + U0 + u) * 64 + jj * 16, gc = (u * 4 + jj) / SPG;
            const uint4 &qv = qw[U0 + u];
            const uint32_t w = jj == 0 ? qv.x : jj == 1 ? qv.y : jj == 2 ? qv.z : qv.w, w8 = w >> 8;
            const uint32_t a0 = gs_lo(w), a1 = gs_hi(w), a2 = gs_lo(w8), a3 = gs_hi(w8);
#pragma unroll
            for (int n = 0; n < NTILE; n++) {
                const uint2 bv = *(const uint2 *)(xb[n] + k0);
                gv_mma(c[gc][n], a0, a1, a2, a3, bv.x, bv.y);
            }
        }
    }
#pragma unroll
    for (int gc = 0; gc < NGC; gc++) {
        const int ks0 = gc * SPG, u = U0 + ks0 / 4;
        const int gi = ((kbg + u) * 64 + (ks0 % 4) * 16) / G, h = G < 64 ? (ks0 % 4) * 16 / G : 0;
        const float2 s0 = gv_sb<BF16>(sw[u][h][0]), s1 = gv_sb<BF16>(sw[u][h][1]);
        const float bb0 = s0.y - 1024.f * s0.x, bb1 = s1.y - 64.f * s1.x;
#pragma unroll
        for (int n = 0; n < NTILE; n++) {
            const float x0 = g0[n][gi];
            acc[n][0] = __fmaf_rn(s0.x, c[gc][n][0], __fmaf_rn(bb0, x0, acc[n][0]));
            acc[n][2] = __fmaf_rn(s1.x, c[gc][n][2], __fmaf_rn(bb1, x0, acc[n][2]));
            if (!ONE) { /* ONE (one token): columns 2q + 1 hold token 0 again and are never stored */
                const float x1 = g1[n][gi];
                acc[n][1] = __fmaf_rn(s0.x, c[gc][n][1], __fmaf_rn(bb0, x1, acc[n][1]));
                acc[n][3] = __fmaf_rn(s1.x, c[gc][n][3], __fmaf_rn(bb1, x1, acc[n][3]));
            }
        }
    }
}

/* A stage's mma work for a warp holding nu of its KW blocks: nu >= KW all of them, <= 0 none (a ragged last stage:
 * 0 < nu < KW; even for group 128: nkb and SK are even). Callers may pass the count unclamped: with a clamped one
 * (max(0, min(KW, r))), ptxas 13.0 turned `nu == KW` into the predicate output of its min/max instruction, true for
 * r <= 0 too, and warps without blocks read x past its end (compute-sanitizer, H100). */
template <int NTILE, bool BF16, int G, int KW, bool ONE>
static __device__ __forceinline__ void gs_compute_nu(int nu, const uint4 (&qw)[KW], const uint32_t (&sw)[KW][G < 64 ? 64 / G : 1][2],
                                                     float (&acc)[NTILE][4], int kbg, const __half *const (&xb)[NTILE],
                                                     const float *const (&g0)[NTILE], const float *const (&g1)[NTILE]) {
    if (nu >= KW) gs_compute_lean<NTILE, BF16, G, KW, KW, 0, ONE>(qw, sw, acc, kbg, xb, g0, g1);
    else if (nu == 1) gs_compute_lean<NTILE, BF16, G, KW, 1, 0, ONE>(qw, sw, acc, kbg, xb, g0, g1);
    else if (KW > 2 && nu == 2) gs_compute_lean<NTILE, BF16, G, KW, KW >= 2 ? 2 : 1, 0, ONE>(qw, sw, acc, kbg, xb, g0, g1);
    else if (KW > 3 && nu == 3) gs_compute_lean<NTILE, BF16, G, KW, KW >= 3 ? 3 : 1, 0, ONE>(qw, sw, acc, kbg, xb, g0, g1);
}
template <int NTILE> static __device__ __forceinline__ void gs_zero(float (&acc)[NTILE][4]) {
#pragma unroll
    for (int n = 0; n < NTILE; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[n][i] = 0.f;
}

/* bytes of a stage: SK blocks of codes (512 B each) + their scale words (64 * 64 / G B each) */
static __host__ __device__ constexpr int gs_stage_bytes(int SK, int G) { return SK * (512 + 64 * 64 / G); }

/* x prologue pieces: a * inv * w (RMSNorm), SiLU(gate) * up (fast exp / divide: x is rounded to fp16 next), and
 * the store of 4 columns k..k+3 as fp16 into the permuted row (see the kernel) with their group sum (lanes of
 * one group reduce by shuffles: every lane calls it; ok: this lane's columns exist) */
static __device__ __forceinline__ float4 gs_norm4(float4 a, float inv, float4 w) {
    return make_float4(a.x * inv * w.x, a.y * inv * w.y, a.z * inv * w.z, a.w * inv * w.w);
}
static __device__ __forceinline__ float gs_silu(float g, float u) { return __fdividef(g, 1.f + __expf(-g)) * u; }
static __device__ __forceinline__ float4 gs_silu4(float4 g, float4 u) {
    return make_float4(gs_silu(g.x, u.x), gs_silu(g.y, u.y), gs_silu(g.z, u.z), gs_silu(g.w, u.w));
}
/* 4 fp16 values (8 bytes) as floats */
static __device__ __forceinline__ float4 gs_h4(uint2 v) {
    const float2 a = __half22float2(*(const __half2 *)&v.x), b = __half22float2(*(const __half2 *)&v.y);
    return make_float4(a.x, a.y, b.x, b.y);
}
template <int G>
static __device__ __forceinline__ void gs_put4(float4 v, bool ok, __half *xrow, int k, float *grow) {
    constexpr int SEG = G / 4;
    const __half2 h0 = __floats2half2_rn(v.x, v.y), h1 = __floats2half2_rn(v.z, v.w);
    float sum = (__low2float(h0) + __high2float(h0)) + (__low2float(h1) + __high2float(h1));
#pragma unroll
    for (int o = 1; o < SEG; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (ok) {
        const int c = k & 15, c2 = c + 2;
        __half *row = xrow + (k - c);
        *(__half2 *)(row + (c < 8 ? 2 * c : 2 * c - 14)) = h0;
        *(__half2 *)(row + (c2 < 8 ? 2 * c2 : 2 * c2 - 14)) = h1;
        if ((threadIdx.x & (SEG - 1)) == 0) grow[k / G] = sum;
    }
}

template <int NTILE, bool BF16, int G, int W, int KW, int MODE>
__global__ void __launch_bounds__(32 * (W + 2), 1) q4s_kernel(const q4g_params p, int ns) {
    constexpr int SK = W * KW, SBKB = 64 * 64 / G, SB = gs_stage_bytes(SK, G), NT = 32 * W;
    constexpr int NGK = G < 64 ? 64 / G : 1;
    extern __shared__ __align__(128) unsigned char gs_smem[];
    __shared__ __align__(8) uint64_t full[GS_NSMAX], empty[GS_NSMAX], rfull[2], rempty[2];
    __shared__ __align__(8) uint64_t xready; /* x first (gs_xfirst): every consumer thread arrives once its x
                                              * loads are issued; the producer waits for it before its later
                                              * stages, so x's requests go out ahead of the ring's */
    __shared__ float red[2][W][NTILE][4][32];
    __shared__ float s_inv[16], s_ss[W][16];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int cols = p.cols, nkb = cols / 64, ng = cols / G, KP = cols + 16, n_tok = p.n_tok;
    const int nst = (nkb + SK - 1) / SK; /* stages a tile */
    unsigned char *ring = gs_smem;
    __half *xh = (__half *)(gs_smem + (size_t)ns * SB);
    float *gs = (float *)(gs_smem + (size_t)ns * SB + (size_t)n_tok * KP * 2);
    if (threadIdx.x == 0) tl_cu_mark(p.trace, 0);
    if (threadIdx.x == 0) {
        for (int s = 0; s < ns; s++) gs_bar_init(&full[s], 1), gs_bar_init(&empty[s], MODE == 4 ? 32 * W : W);
        for (int b = 0; b < 2; b++) gs_bar_init(&rfull[b], W), gs_bar_init(&rempty[b], 1);
        gs_bar_init(&xready, NT);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (warp == W) { /* ---- producer: one lane issues every stage of this block's tiles, ns ahead ---- */
        if (lane == 0 && MODE != 3) {
            const unsigned char *cb = (const unsigned char *)p.codes, *sbb = (const unsigned char *)p.sb;
            int s = 0, issued = 0;
            unsigned ph = 0;
            const int xf = gs_xfirst(p.dbg); /* x first: xf - 1 stages, then wait for the x loads (0: off) */
            bool synced = !xf;
            for (int un = blockIdx.x; un < p.nunits; un += gridDim.x)
                for (int tile = un, k = 0; k < p.per; k++, tile += p.nunits)
                for (int st = 0; st < nst; st++) {
                    if (!synced && issued == xf - 1) gs_bar_wait(&xready, 0u), synced = true;
                    issued++;
                    gs_bar_wait(&empty[s], ph ^ 1u); /* pass 0: parity 1 of a fresh barrier counts as done */
                    const int kb0 = st * SK, n = min(SK, nkb - kb0);
                    gs_bar_expect(&full[s], (unsigned)(n * (512 + SBKB)));
                    unsigned char *dst = ring + (size_t)s * SB;
                    const size_t wt = p.dbg & 1024 ? tile % 64 : tile; /* probe: L2-resident weights (wrong results) */
                    gs_bulk(dst, cb + (wt * nkb + kb0) * 512, (unsigned)n * 512, &full[s]);
                    gs_bulk(dst + SK * 512, sbb + wt * ng * 64 + (size_t)kb0 * SBKB, (unsigned)n * SBKB, &full[s]);
                    if (++s == ns) s = 0, ph ^= 1u;
                }
            if (!synced) gs_bar_wait(&xready, 0u);
        }
        return;
    }
    if (warp == W + 1) { /* ---- the reducer: tile k's partials (red[k & 1]) summed in warp order, the epilogue;
                          * its bias / residual loads issued before the partials are in. Gate/up pairs (p.yh): the
                          * gate tile's sums stay in registers, the up tile's write silu(gate) * up as fp16 ---- */
        tl_cu_pdl_wait();
        int rb = 0;
        unsigned rph = 0u; /* bit b: parity of red[b]'s next use */
        constexpr int PER = NTILE * 128 / 32;
        float gate[PER];
        for (int un = blockIdx.x; un < p.nunits; un += gridDim.x)
        for (int tile = un, kt = 0; kt < p.per; kt++, tile += p.nunits) {
            float add[PER];
            size_t off[PER];
            bool ok[PER];
#pragma unroll
            for (int j = 0; j < PER; j++) {
                const int idx = j * 32 + lane, n = idx >> 7, i = (idx >> 5) & 3, l = idx & 31;
                const int r = tile * 16 + (l >> 2) + (i >= 2 ? 8 : 0), t = n * 8 + 2 * (l & 3) + (i & 1);
                ok[j] = r < p.rows && t < n_tok && !(p.dbg & 4);
                off[j] = (size_t)t * p.rows + r;
                add[j] = 0.f;
                if (ok[j] && p.bias) add[j] = p.bias[r];
            }
            float res[PER];
#pragma unroll
            for (int j = 0; j < PER; j++) res[j] = ok[j] && p.resid ? p.resid[off[j]] : 0.f;
            gs_bar_wait(&rfull[rb], (rph >> rb) & 1u);
#pragma unroll
            for (int j = 0; j < PER; j++) {
                const int idx = j * 32 + lane, n = idx >> 7, i = (idx >> 5) & 3, l = idx & 31;
                if (!__any_sync(0xffffffffu, ok[j])) continue; /* (warp-uniform; e.g. odd i at one token) */
                float v = 0.f;
#pragma unroll
                for (int w2 = 0; w2 < W; w2++) v += red[rb][w2][n][i][l];
                if (p.yh) { /* (no resid) row r of up is row r - rows / 2 of h */
                    if (p.bias) v += add[j];
                    if (kt == 0) gate[j] = v;
                    else if (ok[j]) {
                        const int r = tile * 16 + (l >> 2) + (i >= 2 ? 8 : 0), t = n * 8 + 2 * (l & 3) + (i & 1);
                        p.yh[(size_t)t * (p.rows / 2) + r - p.rows / 2] = __float2half_rn(gs_silu(gate[j], v));
                    }
                } else if (ok[j]) {
                    if (p.bias) v += add[j];
                    if (p.resid) v += res[j];
                    p.y[off[j]] = v;
                }
            }
            __syncwarp();
            if (lane == 0) gs_bar_arrive_sa(gs_sa(&rempty[rb]));
            rph ^= 1u << rb;
            rb ^= 1;
        }
        if (lane == 0) tl_cu_mark(p.trace, 3);
        return;
    }

    /* ---- consumers: x of every token -> fp16 in shared memory with group sums (as v1) ---- */
    constexpr int PB = 4;
    const int c4 = cols / 4, n4 = p.dbg & 2 ? 0 : n_tok * c4;
    /* RMSNorm of one token whose row fits PB float4 a thread: x and the norm weights loaded once, the sum of
     * squares reduced over the block, x scaled from registers: one L2 round trip instead of two (7B layer's
     * GEMVs alone, H100: 74.5 against 75.4-78.7 us). The same sums in the same order as the two-pass form
     * below, so a token's bits do not depend on n_tok. The norm weights never come from the previous kernel:
     * loaded before the PDL wait, so only x's loads follow it. */
    const bool one = p.mode == TL_CU_X_RMSNORM && n_tok == 1 && c4 <= PB * NT && !(p.dbg & 8);
    float4 b[PB];
#pragma unroll
    for (int u = 0; u < PB; u++) {
        const int k4 = u * NT + threadIdx.x;
        b[u] = one && n4 && k4 < c4 && !(p.dbg & 16) ? ((const float4 *)p.norm_w)[k4] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    tl_cu_pdl_wait();
    if (threadIdx.x == 0) tl_cu_mark(p.trace, 1);
    bool xf_due = gs_xfirst(p.dbg) != 0; /* x first: arrive once, after the x loads are issued */
    if (one && n4) {
        float4 a[PB];
        float ss = 0.f;
#pragma unroll
        for (int u = 0; u < PB; u++) {
            const int k4 = u * NT + threadIdx.x;
            a[u] = k4 < c4 ? ((const float4 *)p.x)[k4] : make_float4(0.f, 0.f, 0.f, 0.f);
            if (k4 < c4 && (p.dbg & 16)) b[u] = ((const float4 *)p.norm_w)[k4]; /* probe: as before (after the wait) */
        }
        if (xf_due) gs_bar_arrive_relaxed(gs_sa(&xready)), xf_due = false;
#pragma unroll
        for (int u = 0; u < PB; u++) ss += a[u].x * a[u].x + a[u].y * a[u].y + a[u].z * a[u].z + a[u].w * a[u].w;
        ss = tl_cu_warp_sum(ss);
        if (lane == 0) s_ss[warp][0] = ss;
        gs_sync<NT>();
        float tot = 0.f;
#pragma unroll
        for (int w2 = 0; w2 < W; w2++) tot += s_ss[w2][0];
        const float inv = rsqrtf(tot / (float)cols + p.eps);
#pragma unroll
        for (int u = 0; u < PB; u++) {
            const int k4 = u * NT + threadIdx.x;
            gs_put4<G>(gs_norm4(a[u], inv, b[u]), k4 < c4, xh, k4 * 4, gs);
        }
    }
    /* SiLU(gate) * up of one token whose row fits PS float4 a thread: every load issued at once (one L2 round
     * trip instead of ceil(c4 / (PB NT)): 3 for 7B's 18944 columns); same arithmetic as the loop below */
    constexpr int PS = 10;
    const bool one_silu = p.mode == TL_CU_X_SILU && n_tok == 1 && c4 <= PS * NT && !(p.dbg & 8);
    if (one_silu && n4) {
        float4 a[PS], b[PS];
#pragma unroll
        for (int u = 0; u < PS; u++) {
            const int k4 = u * NT + threadIdx.x;
            a[u] = b[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (k4 < c4) a[u] = ((const float4 *)p.x)[k4], b[u] = ((const float4 *)p.x)[k4 + c4];
        }
        if (xf_due) gs_bar_arrive_relaxed(gs_sa(&xready)), xf_due = false;
#pragma unroll
        for (int u = 0; u < PS; u++) {
            const int k4 = u * NT + threadIdx.x;
            gs_put4<G>(gs_silu4(a[u], b[u]), k4 < c4, xh, k4 * 4, gs);
        }
    }
    /* fp16 x (h from a gate/up pair GEMV) of one token, up to PH * 4 * 512 = 30720 columns (72B's 29568): every
     * load at once; fp16 -> float -> fp16 is exact, so the same bits as SiLU*up's prologue from the fp32 gate /
     * up rows */
    constexpr int PH = 15;
    const bool one_f16 = p.mode == TL_CU_X_F16 && n_tok == 1 && c4 <= (p.dbg & 32 ? PS : PH) * NT && !(p.dbg & 8);
    if (one_f16 && n4) {
        uint2 a[PH];
#pragma unroll
        for (int u = 0; u < PH; u++) {
            const int k4 = u * NT + threadIdx.x;
            a[u] = k4 < c4 ? ((const uint2 *)p.x16)[k4] : make_uint2(0u, 0u);
        }
        if (xf_due) gs_bar_arrive_relaxed(gs_sa(&xready)), xf_due = false;
#pragma unroll
        for (int u = 0; u < PH; u++) {
            const int k4 = u * NT + threadIdx.x;
            gs_put4<G>(gs_h4(a[u]), k4 < c4, xh, k4 * 4, gs);
        }
    }
    if (p.mode == TL_CU_X_RMSNORM && !one && n4) {
        for (int t = 0; t < n_tok; t++) {
            const float4 *xr = (const float4 *)(p.x + (size_t)t * p.x_stride);
            float ss = 0.f;
            for (int base = 0; base < c4; base += 2 * PB * NT) {
                float4 v[2 * PB];
#pragma unroll
                for (int u = 0; u < 2 * PB; u++) {
                    const int i = base + u * NT + threadIdx.x;
                    v[u] = i < c4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                }
#pragma unroll
                for (int u = 0; u < 2 * PB; u++) ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
            }
            ss = tl_cu_warp_sum(ss);
            if (lane == 0) s_ss[warp][t] = ss;
        }
        gs_sync<NT>();
        if ((int)threadIdx.x < n_tok) {
            float ss = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < W; w2++) ss += s_ss[w2][threadIdx.x];
            s_inv[threadIdx.x] = rsqrtf(ss / (float)cols + p.eps);
        }
        gs_sync<NT>();
    }
    if (!one && !one_silu && !one_f16) {
        for (int base = 0; base < n4; base += PB * NT) {
            float4 a[PB], b[PB];
#pragma unroll
            for (int u = 0; u < PB; u++) {
                const int idx = base + u * NT + threadIdx.x;
                const int t = idx / c4, k = (idx - t * c4) * 4;
                a[u] = b[u] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (idx < n4 && p.mode == TL_CU_X_F16) {
                    a[u] = gs_h4(*(const uint2 *)(p.x16 + (size_t)t * p.x_stride + k));
                } else if (idx < n4) {
                    const float *xr = p.x + (size_t)t * p.x_stride + k;
                    a[u] = *(const float4 *)xr;
                    if (p.mode == TL_CU_X_RMSNORM) b[u] = *(const float4 *)(p.norm_w + k);
                    else if (p.mode == TL_CU_X_SILU) b[u] = *(const float4 *)(xr + cols);
                }
            }
#pragma unroll
            for (int u = 0; u < PB; u++) {
                const int idx = base + u * NT + threadIdx.x;
                const int t = idx / c4, k = (idx - t * c4) * 4;
                float4 v = a[u];
                if (p.mode == TL_CU_X_RMSNORM) v = gs_norm4(a[u], idx < n4 ? s_inv[t] : 0.f, b[u]);
                else if (p.mode == TL_CU_X_SILU) v = gs_silu4(a[u], b[u]);
                gs_put4<G>(v, idx < n4, xh + (size_t)t * KP, k, gs + t * ng);
            }
        }
    }
    if (xf_due) gs_bar_arrive_relaxed(gs_sa(&xready));
    gs_sync<NT>();
    if (threadIdx.x == 0) tl_cu_mark(p.trace, 2);
    tl_cu_pdl_trigger();

    /* ---- main loop: the stages of this block's tiles, in the producer's order. Per lane, fixed offsets:
     * its codes at l0 * 512 + lane * 16 (+ 512 a block), its scale words at SK * 512 + l0 * SBKB + 4g (+ SBKB a
     * block; + 32: row g + 8) ---- */
    const __half *xb[NTILE];
    const float *g0[NTILE], *g1[NTILE];
#pragma unroll
    for (int n = 0; n < NTILE; n++) { /* v3's clamped token rows */
        xb[n] = xh + min(n * 8 + g, n_tok - 1) * KP + 4 * q;
        g0[n] = gs + min(n * 8 + 2 * q, n_tok - 1) * ng;
        g1[n] = gs + min(n * 8 + 2 * q + 1, n_tok - 1) * ng;
    }
    const int l0 = warp * KW;
    const unsigned char *my_q = ring + l0 * 512 + lane * 16, *my_s = ring + SK * 512 + l0 * SBKB + 4 * g;
    const uint32_t full_sa = gs_sa(full), empty_sa = gs_sa(empty);
    int s = 0, rb = 0;
    unsigned eph = 0u; /* bit b: parity of red[b]'s uses so far */
    unsigned ph = 0;
    const int nmine = (p.nunits - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x * p.per;
    if constexpr (MODE == 4) { /* v5 (one token, see above) */
        const int nfull = nkb / SK, rag = nkb - nfull * SK - l0;
        const uint32_t ring_sa = gs_sa(ring), q_sa = ring_sa + l0 * 512 + lane * 16,
                       s_sa = ring_sa + SK * 512 + l0 * SBKB + 4 * g;
        /* stage s's words at q_sa / s_sa + s * SB, its barriers at full_sa / empty_sa + 8 s (no wrap branches:
         * a wrap that reset three addresses made ptxas rebuild them from SR_CgaCtaId in the loop) */
        auto load = [&](int nu, uint4(&qw)[KW], uint32_t(&sw)[KW][NGK][2]) {
            const uint32_t so = (uint32_t)s * SB;
#pragma unroll
            for (int u = 0; u < KW; u++) { /* (blocks u >= nu: not loaded, never read by gs_compute_nu) */
                if (u >= nu) continue;
                const uint32_t qa = q_sa + so + u * 512;
                asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                             : "=r"(qw[u].x), "=r"(qw[u].y), "=r"(qw[u].z), "=r"(qw[u].w)
                             : "r"(qa));
                const uint32_t sa = s_sa + so + u * SBKB - (G > 64 ? (u & 1) * SBKB : 0);
#pragma unroll
                for (int h = 0; h < NGK; h++)
                    asm volatile("ld.shared.u32 %0, [%2];\n\tld.shared.u32 %1, [%2 + 32];"
                                 : "=r"(sw[u][h][0]), "=r"(sw[u][h][1])
                                 : "r"(sa + h * 64));
            }
            gs_bar_arrive_sa(empty_sa + 8 * s); /* every lane: its words are in registers */
            const bool wrap = ++s == ns;
            s = wrap ? 0 : s, ph ^= wrap ? 1u : 0u;
        };
        for (int it = 0; it < nmine; it++) {
            float acc[NTILE][4];
            gs_zero(acc);
            int kbg = l0;
            /* the full stages: KW blocks each, no tests */
            for (int st = 0; st < nfull; st++, kbg += SK) {
                gs_bar_wait_sa(full_sa + 8 * s, ph);
                uint4 qw[KW];
                uint32_t sw[KW][NGK][2];
                load(KW, qw, sw);
                gs_compute_lean<NTILE, BF16, G, KW, KW, 0, true>(qw, sw, acc, kbg, xb, g0, g1);
            }
            if (nfull < nst) { /* the ragged last stage: rag blocks, unclamped (see gs_compute_nu) */
                gs_bar_wait_sa(full_sa + 8 * s, ph);
                uint4 qw[KW];
                uint32_t sw[KW][NGK][2];
                load(rag, qw, sw);
                gs_compute_nu<NTILE, BF16, G, KW, true>(rag, qw, sw, acc, kbg, xb, g0, g1);
            }
            gs_bar_wait(&rempty[rb], ((eph >> rb) & 1u) ^ 1u);
#pragma unroll
            for (int n = 0; n < NTILE; n++) red[rb][warp][n][0][lane] = acc[n][0], red[rb][warp][n][2][lane] = acc[n][2];
            __syncwarp();
            if (lane == 0) gs_bar_arrive_sa(gs_sa(&rfull[rb]));
            eph ^= 1u << rb;
            rb ^= 1;
        }
    } else {
    for (int it = 0; it < nmine; it++) { /* this block's tiles, in the producer's order (only their count matters here) */
        float acc[NTILE][4];
        gs_zero(acc);
        for (int st = 0; st < nst; st++) {
            const int kb0 = st * SK, nu = min(SK, nkb - kb0) - l0; /* this warp's blocks in the stage, unclamped */
            if (MODE != 3) gs_bar_wait_sa(full_sa + 8 * s, ph);
            uint4 qw[KW];
            uint32_t sw[KW][NGK][2];
            if (nu > 0 && MODE != 2) {
                const int so = s * SB;
#pragma unroll
                for (int u = 0; u < KW; u++) {
                    if (u < nu) {
                        qw[u] = *(const uint4 *)(my_q + so + u * 512);
                        /* group 128: the group holding block l0 + u (l0 is even: u & 1 says which half) */
                        const uint32_t *sp = (const uint32_t *)(my_s + so + u * SBKB) - (G > 64 ? (u & 1) * SBKB / 4 : 0);
#pragma unroll
                        for (int h = 0; h < NGK; h++) sw[u][h][0] = sp[h * 16], sw[u][h][1] = sp[h * 16 + 8];
                    } else {
                        qw[u] = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                        for (int h = 0; h < NGK; h++) sw[u][h][0] = sw[u][h][1] = 0u;
                    }
                }
            }
            if (MODE != 3) {
                __syncwarp();
                if (lane == 0) gs_bar_arrive_sa(empty_sa + 8 * s);
            }
            if (++s == ns) s = 0, ph ^= 1u;
            if constexpr (MODE != 2) gs_compute_nu<NTILE, BF16, G, KW, false>(nu, qw, sw, acc, kb0 + l0, xb, g0, g1);
        }
        /* hand the partials to the reducer: wait until it has read this buffer's previous tile */
        gs_bar_wait(&rempty[rb], ((eph >> rb) & 1u) ^ 1u); /* first use: parity 1 of a fresh barrier: done */
#pragma unroll
        for (int n = 0; n < NTILE; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) red[rb][warp][n][i][lane] = acc[n][i];
        __syncwarp();
        if (lane == 0) gs_bar_arrive_sa(gs_sa(&rfull[rb]));
        eph ^= 1u << rb;
        rb ^= 1;
    }
    }
}

static size_t q4g_smem(int64_t cols, int n_tok, int group) {
    return (size_t)n_tok * (size_t)(cols + 16) * 2 + (size_t)n_tok * (size_t)(cols / group) * 4;
}

extern "C" int tl_cu_q4g_fits(int64_t cols, int n_tok) {
    return cols % 64 == 0 && n_tok >= 1 && n_tok <= 16 && q4g_smem(cols, n_tok, 32) <= GV_SMEM_MAX;
}

/* Launch. Matrices of more tiles than multiprocessors whose tiles, one a block with all its stages in
 * flight, fit the card at once (7B: q/k/v, o) get a block a tile; the others one block a multiprocessor
 * (persistent, tiles strided) with a ring of what shared memory x leaves, at most the stages one block ever
 * needs (small matrices leave room for the next kernel) and GS_NSMAX. `ring` > 0 caps the ring (tests). The
 * grid never changes results (a tile is one block's). */
template <int NT, bool BF, int G, int W, int KW, int MODE>
static cudaError_t q4s_launch(const q4g_params &p, size_t xbytes, cudaStream_t st, int pdl, int ring, int gcap) {
    void (*k)(const q4g_params, int) = q4s_kernel<NT, BF, G, W, KW, MODE>;
    static int nsm, optin, per_sm, stat_smem, occ_regs; /* per instantiation; device 0 only */
    cudaError_t err = cudaSuccess;
    if (!nsm) {
        int dev = 0, n = 0;
        cudaFuncAttributes fa;
        if ((err = cudaGetDevice(&dev)) || (err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) ||
            (err = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev)) ||
            (err = cudaFuncGetAttributes(&fa, k)) ||
            (err = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, optin - (int)fa.sharedSizeBytes)) ||
            (err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ_regs, k, 32 * (W + 2), 0)) ||
            (err = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev)))
            return err;
        stat_smem = (int)fa.sharedSizeBytes;
        nsm = n;
    }
    constexpr int SK = W * KW, SB = gs_stage_bytes(SK, G);
    const int64_t nst = (p.cols / 64 + SK - 1) / SK;
    const int64_t maxg = gcap > 0 && gcap < nsm ? gcap : nsm;
    int64_t grid = p.nunits < maxg ? p.nunits : maxg, ns = 0;
    if (p.per == 1 && p.ntiles > nsm && nst <= GS_NSMAX && ring <= 0 && gcap <= 0) { /* a block a tile, if they all fit at once */
        const int64_t ns1 = nst < 2 ? 2 : nst, smem1 = ns1 * SB + (int64_t)xbytes + stat_smem + 1024;
        const int64_t fit = TL_MIN((int64_t)occ_regs, per_sm / smem1);
        if (fit * nsm >= p.ntiles) grid = p.ntiles, ns = ns1;
    }
    if (!ns) {
        const int64_t need = (p.nunits + grid - 1) / grid * p.per * nst;
        ns = ((int64_t)optin - stat_smem - (int64_t)xbytes) / SB;
        if (ns > GS_NSMAX) ns = GS_NSMAX;
        if (ns > need) ns = need < 2 ? 2 : need;
        if (ring > 0 && ns > ring) ns = ring < 2 ? 2 : ring;
        if (ns < 2) return cudaErrorInvalidConfiguration;
    }
    const size_t smem = (size_t)ns * SB + xbytes;
    return tl_cu_launch(k, dim3((unsigned)grid), dim3(32 * (W + 2)), smem, st, pdl, p, (int)ns);
}

extern "C" int tl_cu_q4g_gemv(const tl_cu_gemv_args *a, cudaStream_t st, tl_error *e) {
    const tl_cu_q4 *w = a->w;
    if (!w->tiled || w->cols % 64 || w->cols % w->group || (w->group != 32 && w->group != 64 && w->group != 128))
        return tl_errf(e, "cuda int4 gemv: needs the tiled layout, cols %% 64 == 0, group 32/64/128");
    if (a->n_tok < 1 || a->n_tok > 16) return tl_errf(e, "cuda int4 gemv: n_tok %d outside 1..16", a->n_tok);
    if (!tl_cu_q4g_fits(w->cols, a->n_tok))
        return tl_errf(e, "cuda int4 gemv: %d x %lld inputs do not fit in shared memory", a->n_tok, (long long)w->cols);
    const int mode = a->x_mode;
    if (mode < TL_CU_X_PLAIN || mode > TL_CU_X_F16 || (mode == TL_CU_X_RMSNORM && !a->norm_w) ||
        (mode == TL_CU_X_F16 ? !a->x16 : !a->x) || a->x_stride < (mode == TL_CU_X_SILU ? 2 : 1) * w->cols ||
        a->x_stride % 4)
        return tl_errf(e, "cuda int4 gemv: bad x mode %d / stride %d", mode, a->x_stride);
    if (a->y_silu16 ? w->rows % 32 || a->resid : !a->y)
        return tl_errf(e, "cuda int4 gemv: gate/up pairs need rows %% 32 == 0 and no residual");
    q4g_params p = {};
    p.codes = (const uint4 *)w->codes, p.sb = w->sb, p.x = a->x, p.x16 = (const __half *)a->x16;
    p.x_stride = a->x_stride, p.mode = mode;
    p.yh = (__half *)a->y_silu16;
    p.norm_w = a->norm_w, p.eps = a->eps, p.bias = a->bias, p.resid = a->resid, p.y = a->y;
    p.rows = (int)w->rows, p.cols = (int)w->cols, p.n_tok = a->n_tok, p.ntiles = (int)((w->rows + 15) / 16);
    p.per = a->y_silu16 ? 2 : 1, p.nunits = p.ntiles / p.per, p.dbg = a->dbg, p.trace = a->trace;
    const size_t smem = q4g_smem(w->cols, a->n_tok, w->group);
    cudaError_t err;
    if (a->impl == TL_CU_GEMV_RING || a->impl == TL_CU_GEMV_MATH) { /* benchmark probes: 1 n-tile, group 64, fp16 */
        if (a->n_tok > 8 || w->group != 64 || w->sb_bf16)
            return tl_errf(e, "cuda int4 gemv: ring/math probes: n_tok <= 8, g64, fp16 only");
        err = a->impl == TL_CU_GEMV_RING ? q4s_launch<1, false, 64, 16, 2, 2>(p, smem, st, a->pdl, a->ring, a->grid)
                                         : q4s_launch<1, false, 64, 16, 2, 3>(p, smem, st, a->pdl, a->ring, a->grid);
    } else {
#define GS_G(NT, BF)                                                              \
    (w->group == 32   ? q4s_launch<NT, BF, 32, 16, 2, 1>(p, smem, st, a->pdl, a->ring, a->grid)  \
     : w->group == 64 ? q4s_launch<NT, BF, 64, 16, 2, 1>(p, smem, st, a->pdl, a->ring, a->grid)  \
                      : q4s_launch<NT, BF, 128, 16, 2, 1>(p, smem, st, a->pdl, a->ring, a->grid))
#define GS_G4(BF)                                                                 \
    (w->group == 32   ? q4s_launch<1, BF, 32, 16, 2, 4>(p, smem, st, a->pdl, a->ring, a->grid)  \
     : w->group == 64 ? q4s_launch<1, BF, 64, 16, 2, 4>(p, smem, st, a->pdl, a->ring, a->grid)  \
                      : q4s_launch<1, BF, 128, 16, 2, 4>(p, smem, st, a->pdl, a->ring, a->grid))
        if (a->n_tok == 1 && !(a->dbg & 128)) err = w->sb_bf16 ? GS_G4(true) : GS_G4(false);
        else if (a->n_tok <= 8) err = w->sb_bf16 ? GS_G(1, true) : GS_G(1, false);
        else err = w->sb_bf16 ? GS_G(2, true) : GS_G(2, false);
#undef GS_G
#undef GS_G4
    }
    if (err != cudaSuccess) return tl_errf(e, "cuda: q4g_gemv: %s", cudaGetErrorString(err));
    TL_CU_LAUNCHED(e, "q4g_gemv");
}

/* sample.cu: per-row sampling on the GPU (see cu_sample.h for the contract).
 *
 * One block of S_BS threads per row; the row (n_vocab fp32, ~600 KB for Qwen2) is read from global/L2:
 *   1. max + first argmax of the raw logits, then sum exp(l - max) (fp64) -> log-sum-exp
 *   greedy: done. sampled, p_i = expf((l_i - max) / T) recomputed on each pass (cheaper than storing):
 *   2a. top-k / top-p: radix select (4 passes of 8-bit histograms, integer atomics: deterministic) finds the
 *       M-th largest p (M = top_k, or CAP for top-p), the M candidates (ties at the cut: lowest ids) are
 *       gathered by a block scan over contiguous id ranges, bitonic-sorted in shared memory by (p desc,
 *       id asc), and thread 0 walks them exactly as sampler.c does (fp64 sums in the same order).
 *   2b. neither: id order; each thread walks its contiguous id range from its exclusive prefix mass, the
 *       first crossing of u * kept (atomicMin of an index: deterministic) is the token.
 * No float atomics: a row's result is a function of its logits and parameters only. */
#include <float.h>

#include "backend/cuda/cu_common.cuh"
#include "backend/cuda/cu_sample.h"

#define S_BS 512

static __device__ __forceinline__ float samp_p(const float *l, int i, float mx, float inv_t) {
    return expf((l[i] - mx) * inv_t);
}
/* f(i, p) with p = samp_p(l, i, ...) for this thread's elements, in order: strided (i = tid, tid + S_BS, ...; samp_each)
 * or a contiguous range (c0 <= i < c1; samp_range). The row is loaded SAMP_U values at a time: a loop that loaded
 * one value an iteration waited one L2 round trip each, and a nearly flat row's top-p search makes ~18 passes. */
#define SAMP_U 8
template <typename F> static __device__ __forceinline__ void samp_each(const float *l, int nv, float mx, float inv_t, F f) {
    for (int i0 = threadIdx.x; i0 < nv; i0 += SAMP_U * S_BS) {
        float v[SAMP_U];
#pragma unroll
        for (int u = 0; u < SAMP_U; u++) v[u] = i0 + u * S_BS < nv ? l[i0 + u * S_BS] : 0.f;
#pragma unroll
        for (int u = 0; u < SAMP_U; u++)
            if (i0 + u * S_BS < nv) f(i0 + u * S_BS, expf((v[u] - mx) * inv_t));
    }
}
template <typename F> static __device__ __forceinline__ void samp_range(const float *l, int c0, int c1, float mx, float inv_t, F f) {
    for (int i0 = c0; i0 < c1; i0 += SAMP_U) {
        float v[SAMP_U];
#pragma unroll
        for (int u = 0; u < SAMP_U; u++) v[u] = i0 + u < c1 ? l[i0 + u] : 0.f;
#pragma unroll
        for (int u = 0; u < SAMP_U; u++)
            if (i0 + u < c1) f(i0 + u, expf((v[u] - mx) * inv_t));
    }
}

/* sum over the block, fixed tree: deterministic */
static __device__ double block_sum_d(double v, double *red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = S_BS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    double r = red[0];
    __syncthreads();
    return r;
}

/* exclusive scan of one int per thread (thread 0 walks: S_BS values) */
static __device__ int block_excl_scan_i(int v, int *buf, int *total) {
    buf[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        int c = 0;
        for (int i = 0; i < S_BS; i++) {
            int t = buf[i];
            buf[i] = c;
            c += t;
        }
        buf[S_BS] = c;
    }
    __syncthreads();
    int r = buf[threadIdx.x];
    *total = buf[S_BS];
    __syncthreads();
    return r;
}

/* ---- Row statistics over many blocks (tl_cu_sample with scratch) ----
 * One block reading a whole row does it in a loop of L2 round trips: at batch 1 the sampler took tens of us
 * of each decode step. Here SB_NB blocks share a row: each takes a contiguous chunk and writes its max, that
 * max's first index and sum expf(l - chunk max) in fp64; the row's last block to finish (a counter, reset by
 * it) combines the chunks in order: M = max, argmax = the first chunk's index holding M (chunks ascend in id:
 * the first index overall), lse = M + log(sum_b s_b exp(m_b - M)) (fp64, chunk order: deterministic). Greedy
 * rows are done there; sample_kernel takes the others from these statistics. The max and argmax are exactly the
 * single-block ones; lse differs in the last bits (another summation). */
#define SB_NB 32
#define SB_BS 256
typedef struct {
    float m;
    int arg;
    double s;
} samp_part;
typedef struct {
    float mx;
    int argmax;
    double lse;
} samp_stats;

/* scratch: the rows' counters (zero between launches: each row's last block resets its own), statistics and
 * chunk partials, for up to TL_CU_SAMPLE_SCRATCH_ROWS rows a launch */
#define SB_ROWS TL_CU_SAMPLE_SCRATCH_ROWS
extern "C" size_t tl_cu_sample_scratch_bytes(void) {
    return SB_ROWS * (sizeof(unsigned) + sizeof(samp_stats) + SB_NB * sizeof(samp_part));
}

/* max and first index over the block (NaN never wins) */
static __device__ void block_argmax(float *bv, int *bi, float *sv, int *si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, *bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, *bi, o);
        if (ov > *bv || (ov == *bv && oi < *bi)) *bv = ov, *bi = oi;
    }
    if (lane == 0) sv[warp] = *bv, si[warp] = *bi;
    __syncthreads();
    float v = sv[0];
    int i = si[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        if (sv[w] > v || (sv[w] == v && si[w] < i)) v = sv[w], i = si[w];
    __syncthreads();
    *bv = v, *bi = i;
}

/* grid (SB_NB, n_rows), SB_BS threads */
__global__ void __launch_bounds__(SB_BS) sample_stats_kernel(const float *__restrict__ logits, int nv,
                                                             const tl_cu_samp *__restrict__ prm, samp_part *part,
                                                             samp_stats *stats, unsigned *cnt,
                                                             tl_cu_samp_out *__restrict__ out) {
    __shared__ float sv[SB_BS / 32];
    __shared__ int si[SB_BS / 32];
    __shared__ double red[SB_BS];
    __shared__ int s_last;
    const int b = blockIdx.x, row = blockIdx.y, tid = threadIdx.x;
    const tl_cu_samp P = prm[row];
    if (P.skip) return; /* (sample_kernel answers -1) */
    const float *l = logits + (size_t)row * nv;
    const int chunk = (nv + SB_NB - 1) / SB_NB, c0 = min(nv, b * chunk), c1 = min(nv, c0 + chunk);
    float bv = -INFINITY;
    int bi = INT_MAX;
#pragma unroll 8
    for (int i = c0 + tid; i < c1; i += SB_BS) {
        const float v = l[i];
        if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    block_argmax(&bv, &bi, sv, si);
    double se = 0;
#pragma unroll 8
    for (int i = c0 + tid; i < c1; i += SB_BS) se += (double)expf(l[i] - bv);
    red[tid] = se;
    __syncthreads();
    for (int h = SB_BS / 2; h > 0; h >>= 1) {
        if (tid < h) red[tid] += red[tid + h];
        __syncthreads();
    }
    samp_part *pr = part + (size_t)row * SB_NB;
    if (tid == 0) {
        pr[b] = samp_part{bv, bi, red[0]};
        __threadfence();
        s_last = atomicAdd(cnt + row, 1u) == SB_NB - 1;
    }
    __syncthreads();
    if (!s_last || tid != 0) return;
    __threadfence();
    cnt[row] = 0; /* for the next launch */
    float M = -INFINITY;
    int arg = INT_MAX;
    for (int k = 0; k < SB_NB; k++) {
        const float m = __ldcg(&pr[k].m);
        if (m > M) M = m, arg = __ldcg(&pr[k].arg);
    }
    double S = 0;
    for (int k = 0; k < SB_NB; k++) {
        const float m = __ldcg(&pr[k].m);
        if (m != -INFINITY) S += __ldcg(&pr[k].s) * exp((double)m - (double)M);
    }
    if (arg == INT_MAX) arg = 0;
    const double lse = (double)M + log(S);
    stats[row] = samp_stats{M, arg, lse};
    if (!(P.temperature > 0.0f)) out[row] = tl_cu_samp_out{arg, (float)((double)l[arg] - lse)};
}

/* ---- Top-p beyond the candidate head (session 9): exact on the device, so no row needs the host ----
 * p as an integer of 2^-40 (p <= 1; sums of 2^23 of them fit 64 bits; integer sums are exact and deterministic,
 * while sampler.c adds fp64 in sorted order: a crossing can differ at a boundary, as documented in cu_sample.h). */
static __device__ __forceinline__ unsigned long long samp_fx(float p) {
    return (unsigned long long)((double)p * 1099511627776.0);
}

/* Among the elements with key > lb (keys: the float bits of p, which order as the values; lb = -1: all), the
 * largest key v with mass(key > v) < need <= mass(key >= v), by a radix search of 8-bit digits whose histograms
 * hold masses. *above: mass(key > v) among them. Every thread calls it; 4 passes over the row. */
static __device__ unsigned samp_mass_select(const float *l, int nv, float mx, float inv_t, long long lb,
                                            unsigned long long need, unsigned long long *above,
                                            unsigned long long *hfx, unsigned long long *priv, unsigned long long *s_u64) {
    unsigned prefix = 0, mask = 0;
    unsigned long long acc = 0;
    unsigned long long *mine = priv + (threadIdx.x >> 5) * 256; /* this warp's histogram */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256 * (S_BS / 32); i += S_BS) priv[i] = 0;
        __syncthreads();
        /* a thread adds its run of one bucket at once: nearly flat rows put most of the row in one or two buckets,
         * and one shared atomic per element there serialized the block (4 ms a row at 152K); and into its warp's
         * own histogram (summed below): at the low digits the buckets change every element */
        int cur = -1;
        unsigned long long run = 0;
        samp_each(l, nv, mx, inv_t, [&](int, float p) {
            const unsigned k = __float_as_uint(p);
            if ((long long)k > lb && (k & mask) == prefix) {
                const int b = (int)((k >> shift) & 255u);
                if (b != cur) {
                    if (cur >= 0) atomicAdd(&mine[cur], run);
                    cur = b, run = 0;
                }
                run += samp_fx(p);
            }
        });
        if (cur >= 0) atomicAdd(&mine[cur], run);
        __syncthreads();
        for (int b = threadIdx.x; b < 256; b += S_BS) {
            unsigned long long t = 0;
            for (int w = 0; w < S_BS / 32; w++) t += priv[w * 256 + b];
            hfx[b] = t;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int b = 255;
            for (; b > 0; b--) {
                if (acc + hfx[b] >= need) break;
                acc += hfx[b];
            }
            s_u64[0] = (unsigned long long)b, s_u64[1] = acc;
        }
        __syncthreads();
        prefix |= (unsigned)s_u64[0] << shift;
        mask |= 255u << shift;
        acc = s_u64[1];
        __syncthreads();
    }
    *above = acc;
    return prefix;
}

/* The id of the j-th element (0-based, in id order) whose key is v; every thread calls it. c0, c1: this thread's
 * contiguous id range. -1 if there is none. */
static __device__ int samp_nth_key(const float *l, float mx, float inv_t, int c0, int c1, unsigned v, int j, int *ibuf,
                                   int *s_out) {
    int n = 0;
    samp_range(l, c0, c1, mx, inv_t, [&](int, float p) { n += __float_as_uint(p) == v; });
    int tot;
    int o = block_excl_scan_i(n, ibuf, &tot);
    if (threadIdx.x == 0) *s_out = -1;
    __syncthreads();
    if (j >= o && j < o + n)
        samp_range(l, c0, c1, mx, inv_t, [&](int i, float p) {
            if (__float_as_uint(p) == v && o++ == j) *s_out = i;
        });
    __syncthreads();
    const int r = *s_out;
    __syncthreads();
    return r;
}

/* sampler.c's top-p -> min-p -> draw for a row whose kept set is larger than the sorted head: the top-p cut by a
 * mass search (the value v_c at which the sorted mass reaches top_p * total; ties at v_c taken in id order), the
 * min-p filter as a raised threshold, then the draw (u * kept) by a second mass search over the kept set. */
static __device__ int samp_top_p_full(const float *l, int nv, float mx, float inv_t, const tl_cu_samp &P, int c0, int c1,
                                      unsigned long long *hfx, unsigned long long *priv, unsigned long long *s_u64,
                                      int *ibuf, int *s_out) {
    unsigned long long tot = 0;
    samp_each(l, nv, mx, inv_t, [&](int, float p) { tot += samp_fx(p); });
    if (threadIdx.x == 0) s_u64[2] = 0;
    __syncthreads();
    atomicAdd(&s_u64[2], tot);
    __syncthreads();
    const unsigned long long total = s_u64[2];
    __syncthreads();
    unsigned long long lim = (unsigned long long)((double)P.top_p * (double)total);
    if (lim < 1) lim = 1; /* at least one token */
    unsigned long long above_c;
    const unsigned vc = samp_mass_select(l, nv, mx, inv_t, -1, lim, &above_c, hfx, priv, s_u64);
    const unsigned long long fc = samp_fx(__uint_as_float(vc));
    long long lb = vc;                                                  /* members: key > lb, */
    unsigned long long ties = fc ? (lim - above_c + fc - 1) / fc : 1; /* and this many ties at vc, by id */
    unsigned long long kept = above_c + ties * fc;
    if (P.min_p > 0.0f && P.min_p > __uint_as_float(vc)) { /* min-p keeps p >= min_p: all above vc, no ties */
        lb = (long long)__float_as_uint(P.min_p) - 1, ties = 0;
        unsigned long long m = 0;
        samp_each(l, nv, mx, inv_t, [&](int, float p) {
            if ((long long)__float_as_uint(p) > lb) m += samp_fx(p);
        });
        if (threadIdx.x == 0) s_u64[2] = 0;
        __syncthreads();
        atomicAdd(&s_u64[2], m);
        __syncthreads();
        kept = s_u64[2];
        __syncthreads();
    }
    /* the draw: the first kept element (sorted order) whose cumulative mass exceeds u * kept */
    const unsigned long long need = (unsigned long long)(P.u * (double)kept) + 1, part = kept - ties * fc;
    if (need <= part) { /* above the ties: a value vd > lb, then its j-th element by id */
        unsigned long long above_d;
        const unsigned vd = samp_mass_select(l, nv, mx, inv_t, lb, need, &above_d, hfx, priv, s_u64);
        const unsigned long long fd = samp_fx(__uint_as_float(vd));
        const int j = fd ? (int)((need - above_d + fd - 1) / fd) - 1 : 0;
        const int t = samp_nth_key(l, mx, inv_t, c0, c1, vd, j, ibuf, s_out);
        if (t >= 0) return t;
    }
    /* among the ties at vc (or no crossing by rounding: the last kept) */
    long long j = fc ? (long long)((need - part + fc - 1) / fc) - 1 : 0;
    if (j > (long long)ties - 1) j = (long long)ties - 1;
    if (j < 0) j = 0;
    const int t = samp_nth_key(l, mx, inv_t, c0, c1, vc, (int)j, ibuf, s_out);
    return t >= 0 ? t : 0;
}

static_assert(TL_CU_SAMPLE_CAP >= 256 * (S_BS / 32), "keys holds every warp's 256-bucket histogram");

__global__ void __launch_bounds__(S_BS) sample_kernel(const float *__restrict__ logits, int nv,
                                                      const tl_cu_samp *__restrict__ prm, tl_cu_samp_out *__restrict__ out,
                                                      const samp_stats *__restrict__ stats) {
    __shared__ unsigned long long keys[TL_CU_SAMPLE_CAP]; /* (p bits << 32) | ~id */
    __shared__ double red[S_BS];
    __shared__ int ibuf[S_BS + 1];
    __shared__ unsigned hist[256];
    __shared__ float s_best_v[32];
    __shared__ int s_best_i[32];
    __shared__ int s_misc[4];
    __shared__ double s_kept;
    __shared__ unsigned long long hfx[256], s_u64[4]; /* samp_top_p_full */
    __shared__ int s_nth;
    const int row = blockIdx.x, tid = threadIdx.x;
    const tl_cu_samp P = prm[row];
    const float *l = logits + (size_t)row * nv;
    if (P.skip) {
        if (tid == 0) out[row] = tl_cu_samp_out{-1, 0.f};
        return;
    }
    if (stats && !(P.temperature > 0.0f)) return; /* greedy: answered by sample_stats_kernel */
    float mx;
    int argmax;
    double lse;
    if (stats) {
        mx = stats[row].mx, argmax = stats[row].argmax, lse = stats[row].lse;
    } else {
    /* 1. max and first argmax (NaN never wins: comparisons with NaN are false, as on the CPU) */
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = tid; i < nv; i += S_BS) {
        float v = l[i];
        if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    block_argmax(&bv, &bi, s_best_v, s_best_i);
    mx = bv;
    argmax = bi == INT_MAX ? 0 : bi;
    double se = 0;
    for (int i = tid; i < nv; i += S_BS) se += (double)expf(l[i] - mx);
    lse = (double)mx + log(block_sum_d(se, red));
    }
    int tok = argmax;

    if (P.temperature > 0.0f) {
        const float inv_t = 1.0f / P.temperature;
        const bool top_p = P.top_p > 0.0f && P.top_p < 1.0f;
        const bool top_k = P.top_k > 0 && P.top_k < nv;
        const int chunk = (nv + S_BS - 1) / S_BS, c0 = min(nv, tid * chunk), c1 = min(nv, c0 + chunk);
        if (top_k || top_p) {
            int M = top_k ? P.top_k : min(nv, P.head > 0 ? min(P.head, TL_CU_SAMPLE_CAP) : TL_CU_SAMPLE_HEAD_P);
            double total = 0;
            if (!top_k) { /* the full mass, for the top-p limit */
                double t = 0;
                samp_each(l, nv, mx, inv_t, [&](int, float p) { t += (double)p; });
                total = block_sum_d(t, red);
            }
            if (M > TL_CU_SAMPLE_CAP) {
                if (tid == 0) out[row] = tl_cu_samp_out{-1, 0.f};
                return;
            }
            /* radix select: the M-th largest key and how many of its ties to take */
            unsigned prefix = 0, mask = 0;
            int rem = M;
            unsigned *wh = (unsigned *)keys, *mine = wh + (tid >> 5) * 256; /* the warps' histograms (keys is free
                                                                            * until the gather) */
            for (int shift = 24; shift >= 0; shift -= 8) {
                for (int i = tid; i < 256 * (S_BS / 32); i += S_BS) wh[i] = 0;
                __syncthreads();
                /* a thread adds its run of one bucket at once, into its warp's histogram (as samp_mass_select): on
                 * a nearly flat row one shared atomic per element into the same bucket serialized the block */
                int cur = -1;
                unsigned run = 0;
                samp_each(l, nv, mx, inv_t, [&](int, float p) {
                    const unsigned k = __float_as_uint(p);
                    if ((k & mask) == prefix) {
                        const int b = (int)((k >> shift) & 255u);
                        if (b != cur) {
                            if (cur >= 0) atomicAdd(&mine[cur], run);
                            cur = b, run = 0;
                        }
                        run++;
                    }
                });
                if (cur >= 0) atomicAdd(&mine[cur], run);
                __syncthreads();
                for (int b = tid; b < 256; b += S_BS) {
                    unsigned t = 0;
                    for (int w = 0; w < S_BS / 32; w++) t += wh[w * 256 + b];
                    hist[b] = t;
                }
                __syncthreads();
                if (tid == 0) {
                    int cum = 0, b = 255;
                    for (; b > 0; b--) {
                        if (cum + (int)hist[b] >= rem) break;
                        cum += (int)hist[b];
                    }
                    s_misc[0] = b;
                    s_misc[1] = rem - cum;
                }
                __syncthreads();
                prefix |= (unsigned)s_misc[0] << shift;
                mask |= 255u << shift;
                rem = s_misc[1];
                __syncthreads();
            }
            /* gather: keys > cut all, keys == cut the first `rem` by id */
            int n_gt = 0, n_eq = 0;
            samp_range(l, c0, c1, mx, inv_t, [&](int, float p) {
                const unsigned k = __float_as_uint(p);
                n_gt += k > prefix;
                n_eq += k == prefix;
            });
            int tot_gt, tot_eq;
            int o_gt = block_excl_scan_i(n_gt, ibuf, &tot_gt);
            int o_eq = block_excl_scan_i(n_eq, ibuf, &tot_eq);
            samp_range(l, c0, c1, mx, inv_t, [&](int i, float p) {
                const unsigned k = __float_as_uint(p);
                const unsigned long long key = ((unsigned long long)k << 32) | (0xffffffffu - (unsigned)i);
                if (k > prefix) keys[o_gt++] = key;
                else if (k == prefix && o_eq < rem) keys[tot_gt + o_eq++] = key;
            });
            const int n = tot_gt + rem; /* == M */
            int S = 2;
            while (S < n) S <<= 1;
            for (int i = n + tid; i < S; i += S_BS) keys[i] = 0ull; /* sorts last */
            __syncthreads();
            for (int k = 2; k <= S; k <<= 1) /* bitonic sort, descending */
                for (int j = k >> 1; j > 0; j >>= 1) {
                    for (int i = tid; i < S; i += S_BS) {
                        int ixj = i ^ j;
                        if (ixj > i) {
                            unsigned long long a = keys[i], b = keys[ixj];
                            if (((i & k) == 0) ? a < b : a > b) keys[i] = b, keys[ixj] = a;
                        }
                    }
                    __syncthreads();
                }
            if (tid == 0) { /* sampler.c, step by step, on the sorted candidates */
#define KP(i) __uint_as_float((unsigned)(keys[i] >> 32))
#define KID(i) (int)(0xffffffffu - (unsigned)(keys[i] & 0xffffffffu))
                int m = n;
                bool defer = false;
                if (top_k) {
                    total = 0;
                    for (int i = 0; i < m; i++) total += KP(i);
                } else if (m < nv) { /* the head must hold the top-p mass, else the host sorts everything */
                    double head = 0;
                    for (int i = 0; i < m; i++) head += KP(i);
                    defer = head < (double)P.top_p * total;
                }
                if (!defer) {
                    if (top_p) {
                        double cum = 0, lim = (double)P.top_p * total;
                        int keep = 0;
                        while (keep < m && (keep == 0 || cum < lim)) cum += KP(keep++);
                        m = keep;
                    }
                    if (P.min_p > 0.0f) { /* keep p >= min_p (p_max = 1), order kept */
                        int keep = 0;
                        for (int i = 0; i < m; i++)
                            if (KP(i) >= P.min_p) keys[keep++] = keys[i];
                        m = keep > 0 ? keep : 1;
                    }
                    double kept = 0;
                    for (int i = 0; i < m; i++) kept += KP(i);
                    double u = P.u * kept, cum = 0;
                    int t = KID(m - 1);
                    for (int i = 0; i < m; i++) {
                        cum += KP(i);
                        if (u < cum) {
                            t = KID(i);
                            break;
                        }
                    }
                    s_misc[2] = t;
                }
                s_misc[3] = defer;
#undef KP
#undef KID
            }
            __syncthreads();
            /* (keys is free again: its 32 KB hold the warps' histograms of the mass searches) */
            tok = s_misc[3] ? samp_top_p_full(l, nv, mx, inv_t, P, c0, c1, hfx, keys, s_u64, ibuf, &s_nth) : s_misc[2];
        } else { /* id order: min-p filter, then the first crossing of u * kept */
            const float thr = P.min_p > 0.0f ? P.min_p : -1.0f;
            double part = 0;
            int last = -1;
            samp_range(l, c0, c1, mx, inv_t, [&](int i, float p) {
                if (p >= thr) part += p, last = i;
            });
            /* exclusive prefix of the per-thread masses (thread 0 walks them in order) */
            red[tid] = part;
            if (tid == 0) s_misc[0] = INT_MAX, s_misc[1] = -1;
            __syncthreads();
            if (tid == 0) {
                double c = 0;
                for (int i = 0; i < S_BS; i++) {
                    double t = red[i];
                    red[i] = c;
                    c += t;
                }
                s_kept = c;
            }
            __syncthreads();
            const double kept = s_kept;
            const double u = P.u * kept;
            double cum = red[tid];
            for (int i = c0; i < c1; i++) {
                float p = samp_p(l, i, mx, inv_t);
                if (!(p >= thr)) continue;
                cum += p;
                if (u < cum) {
                    atomicMin(&s_misc[0], i);
                    break;
                }
            }
            if (last >= 0) atomicMax(&s_misc[1], last);
            __syncthreads();
            /* no crossing (rounding): the last kept token; nothing kept (min_p > 1): id 0, as sampler.c */
            tok = s_misc[0] != INT_MAX ? s_misc[0] : s_misc[1] >= 0 ? s_misc[1] : 0;
        }
    }
    if (tid == 0) out[row] = tl_cu_samp_out{tok, (float)((double)l[tok] - lse)};
}

extern "C" int tl_cu_sample(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, tl_cu_samp_out *out,
                            void *scratch, cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    if (n_vocab <= 0) return tl_errf(e, "cuda sample: n_vocab %d", n_vocab);
    if (!scratch) {
        sample_kernel<<<n_rows, S_BS, 0, st>>>(logits, n_vocab, p, out, NULL);
        TL_CU_LAUNCHED(e, "sample");
    }
    unsigned *cnt = (unsigned *)scratch;
    samp_stats *stats = (samp_stats *)(cnt + SB_ROWS);
    samp_part *part = (samp_part *)(stats + SB_ROWS);
    for (int r0 = 0; r0 < n_rows; r0 += SB_ROWS) {
        const int n = n_rows - r0 < SB_ROWS ? n_rows - r0 : SB_ROWS;
        const float *lg = logits + (size_t)r0 * n_vocab;
        sample_stats_kernel<<<dim3(SB_NB, (unsigned)n), SB_BS, 0, st>>>(lg, n_vocab, p + r0, part, stats, cnt, out + r0);
        sample_kernel<<<n, S_BS, 0, st>>>(lg, n_vocab, p + r0, out + r0, stats);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return tl_errf(e, "cuda sample: %s", cudaGetErrorString(err));
    }
    return 0;
}

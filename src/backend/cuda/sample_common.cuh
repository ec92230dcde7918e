/* sample_common.cuh: what sample.cu (row statistics, one block a row, the launcher) and sample_chunk.cu
 * (sampled rows over many blocks) share: block helpers, the one-block draw of a sampled row (samp_row) and
 * the scratch layout. Included by those two files only (static device functions: each its own copy). */
#ifndef TL_SAMPLE_COMMON_CUH
#define TL_SAMPLE_COMMON_CUH

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

/* exclusive prefix sums of one value a thread over the block (S_BS threads), and *total the block's sum: shuffles
 * within a warp, then warp 0 over the warps' totals; a fixed order (deterministic; integers: the same sums as
 * thread 0's walk over S_BS values, which took ~3 us). buf: >= 2 S_BS / 32 values. Every thread calls it. */
template <typename T> static __device__ T block_excl_scan(T v, T *buf, T *total) {
    constexpr int NW = S_BS / 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    T x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    const T ex = __shfl_up_sync(0xffffffffu, x, 1); /* the lanes before this one (lane 0: none) */
    if (lane == 31) buf[warp] = x;
    __syncthreads();
    if (warp == 0) {
        T w = lane < NW ? buf[lane] : T(0);
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const T y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        if (lane < NW) buf[NW + lane] = w; /* inclusive over warps */
    }
    __syncthreads();
    const T r = (warp ? buf[NW + warp - 1] : T(0)) + (lane ? ex : T(0));
    *total = buf[2 * NW - 1];
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

#define SB_ROWS TL_CU_SAMPLE_SCRATCH_ROWS

/* The SB_NB blocks of a row meet here after writing their chunk's results: true in the row's last block to
 * arrive (thread 0's stores fenced before its block is counted, the others' before it reads them), which resets
 * the counter for the next launch. Every thread calls it; s_last: a shared int. */
static __device__ __forceinline__ bool samp_last_block(unsigned *cnt, int row, int *s_last) {
    if (threadIdx.x == 0) {
        __threadfence();
        *s_last = atomicAdd(cnt + row, 1u) == SB_NB - 1;
    }
    __syncthreads();
    if (!*s_last) return false;
    __threadfence();
    if (threadIdx.x == 0) cnt[row] = 0;
    return true;
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
    int o = block_excl_scan<int>(n, ibuf, &tot);
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

/* shared memory of the one-block draw (sample_kernel, and sample_chunk_kernel's last block) */
struct samp_sm {
    unsigned long long keys[TL_CU_SAMPLE_CAP]; /* (p bits << 32) | ~id */
    double red[S_BS];
    int ibuf[S_BS + 1];
    unsigned hist[256];
    float best_v[32];
    int best_i[32];
    int misc[4];
    double kept;
    unsigned long long hfx[256], u64[4]; /* samp_top_p_full */
    int nth;
};

/* keys[0, S) sorted descending (S a power of two; pad with 0: sorts last); every thread calls it */
static __device__ void samp_bitonic_desc(unsigned long long *keys, int S) {
    for (int k = 2; k <= S; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < S; i += blockDim.x) {
                const int ixj = i ^ j;
                if (ixj > i) {
                    const unsigned long long a = keys[i], b = keys[ixj];
                    if (((i & k) == 0) ? a < b : a > b) keys[i] = b, keys[ixj] = a;
                }
            }
            __syncthreads();
        }
}

/* sampler.c, step by step, on n candidates sorted by (p desc, id asc) (thread 0 alone): top-k is the first n
 * (top_k: n == top_k), top-p's cut (total: the row's whole mass), min-p, the draw with u. *defer: top-p alone
 * and the n candidates do not hold top_p of the mass (the caller then searches the whole row). */
static __device__ int samp_walk(unsigned long long *keys, int n, const tl_cu_samp &P, double total, bool top_k,
                                bool top_p, int nv, bool *defer) {
#define KP(i) __uint_as_float((unsigned)(keys[i] >> 32))
#define KID(i) (int)(0xffffffffu - (unsigned)(keys[i] & 0xffffffffu))
    int m = n;
    *defer = false;
    if (top_k) {
        total = 0;
        for (int i = 0; i < m; i++) total += KP(i);
    }
    if (top_p) { /* the cut; top-p alone over a head (m < nv) that never reaches it: defer (the head's mass, summed
                  * in the same order, is below top_p of the row's) */
        double cum = 0, lim = (double)P.top_p * total;
        int keep = 0;
        while (keep < m && (keep == 0 || cum < lim)) cum += KP(keep++);
        if (!top_k && m < nv && cum < lim) {
            *defer = true;
            return -1;
        }
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
    const double u = P.u * kept;
    double cum = 0;
    for (int i = 0; i < m; i++) {
        cum += KP(i);
        if (u < cum) return KID(i);
    }
    return KID(m - 1);
#undef KP
#undef KID
}

/* One block draws a sampled row (temperature > 0) from its max: the passes over the whole row described at the
 * top. Every thread calls it; the token, or -1 (top_k > CAP: the host samples the row). */
static __device__ int samp_row(const float *l, int nv, const tl_cu_samp &P, float mx, samp_sm &sm) {
    const int tid = threadIdx.x;
    const float inv_t = 1.0f / P.temperature;
    const bool top_p = P.top_p > 0.0f && P.top_p < 1.0f;
    const bool top_k = P.top_k > 0 && P.top_k < nv;
    const int chunk = (nv + S_BS - 1) / S_BS, c0 = min(nv, tid * chunk), c1 = min(nv, c0 + chunk);
    if (top_k || top_p) {
        const int M = top_k ? P.top_k : min(nv, P.head > 0 ? min(P.head, TL_CU_SAMPLE_CAP) : TL_CU_SAMPLE_HEAD_P);
        double total = 0;
        if (!top_k) { /* the full mass, for the top-p limit */
            double t = 0;
            samp_each(l, nv, mx, inv_t, [&](int, float p) { t += (double)p; });
            total = block_sum_d(t, sm.red);
        }
        if (M > TL_CU_SAMPLE_CAP) return -1;
        /* radix select: the M-th largest key and how many of its ties to take */
        unsigned prefix = 0, mask = 0;
        int rem = M;
        unsigned *wh = (unsigned *)sm.keys, *mine = wh + (tid >> 5) * 256; /* the warps' histograms (keys is free
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
                sm.hist[b] = t;
            }
            __syncthreads();
            if (tid == 0) {
                int cum = 0, b = 255;
                for (; b > 0; b--) {
                    if (cum + (int)sm.hist[b] >= rem) break;
                    cum += (int)sm.hist[b];
                }
                sm.misc[0] = b;
                sm.misc[1] = rem - cum;
            }
            __syncthreads();
            prefix |= (unsigned)sm.misc[0] << shift;
            mask |= 255u << shift;
            rem = sm.misc[1];
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
        int o_gt = block_excl_scan<int>(n_gt, sm.ibuf, &tot_gt);
        int o_eq = block_excl_scan<int>(n_eq, sm.ibuf, &tot_eq);
        samp_range(l, c0, c1, mx, inv_t, [&](int i, float p) {
            const unsigned k = __float_as_uint(p);
            const unsigned long long key = ((unsigned long long)k << 32) | (0xffffffffu - (unsigned)i);
            if (k > prefix) sm.keys[o_gt++] = key;
            else if (k == prefix && o_eq < rem) sm.keys[tot_gt + o_eq++] = key;
        });
        const int n = tot_gt + rem; /* == M */
        int S = 2;
        while (S < n) S <<= 1;
        for (int i = n + tid; i < S; i += S_BS) sm.keys[i] = 0ull; /* sorts last */
        __syncthreads();
        samp_bitonic_desc(sm.keys, S);
        if (tid == 0) {
            bool defer;
            sm.misc[2] = samp_walk(sm.keys, n, P, total, top_k, top_p, nv, &defer);
            sm.misc[3] = defer;
        }
        __syncthreads();
        /* (keys is free again: its 32 KB hold the warps' histograms of the mass searches) */
        const bool defer = sm.misc[3];
        const int t = sm.misc[2];
        __syncthreads();
        return defer ? samp_top_p_full(l, nv, mx, inv_t, P, c0, c1, sm.hfx, sm.keys, sm.u64, sm.ibuf, &sm.nth) : t;
    }
    /* id order: min-p filter, then the first crossing of u * kept */
    const float thr = P.min_p > 0.0f ? P.min_p : -1.0f;
    double part = 0;
    int last = -1;
    samp_range(l, c0, c1, mx, inv_t, [&](int i, float p) {
        if (p >= thr) part += p, last = i;
    });
    /* exclusive prefix of the per-thread masses (thread 0 walks them in order) */
    sm.red[tid] = part;
    if (tid == 0) sm.misc[0] = INT_MAX, sm.misc[1] = -1;
    __syncthreads();
    if (tid == 0) {
        double c = 0;
        for (int i = 0; i < S_BS; i++) {
            double t = sm.red[i];
            sm.red[i] = c;
            c += t;
        }
        sm.kept = c;
    }
    __syncthreads();
    const double kept = sm.kept;
    const double u = P.u * kept;
    double cum = sm.red[tid];
    for (int i = c0; i < c1; i++) {
        float p = samp_p(l, i, mx, inv_t);
        if (!(p >= thr)) continue;
        cum += p;
        if (u < cum) {
            atomicMin(&sm.misc[0], i);
            break;
        }
    }
    if (last >= 0) atomicMax(&sm.misc[1], last);
    __syncthreads();
    /* no crossing (rounding): the last kept token; nothing kept (min_p > 1): id 0, as sampler.c */
    const int t = sm.misc[0] != INT_MAX ? sm.misc[0] : sm.misc[1] >= 0 ? sm.misc[1] : 0;
    __syncthreads();
    return t;
}

/* ---- Sampled rows over many blocks (session 11) ----
 * One block walking a 152K row takes ~7 passes for top-p (~0.24 ms a step at batch 1 on a trained model's peaked
 * rows). Here the SB_NB blocks of sample_stats_kernel's chunks each take their chunk once, from the row's max:
 *   - p = expf((l - max) / T) of the chunk's <= SC_U elements a thread, held in registers; the chunk's mass
 *     (fp64; with neither top-k nor top-p: of p >= min_p, and the last such id);
 *   - top-k / top-p: the chunk's largest keys (p bits) by two 8-bit digits (the exponent, then 8 mantissa bits):
 *     `cut`, the smallest 16-bit key prefix with at most SC_CH keys at or above it; those keys (with ~id) go to
 *     the scratch. Every key of the chunk left out is below cut << 15.
 * The row's last block (a counter it resets) then:
 *   - top-k / top-p: the union of the chunks' keys at or above U = max over chunks of cut << 15 holds every key
 *     >= U of the row, and every other key of the row is < U, so sorted by (p desc, id asc) it is the row's
 *     head: sampler.c's walk on it (samp_walk) is exact when it has top_k keys (top-k) or its mass reaches top_p
 *     of the row's (top-p alone). Else (flat rows) the one-block draw over the whole row (samp_row).
 *   - else: the chunk whose prefix mass crosses u * kept (chunk order, fp64), then the crossing inside it by
 *     per-thread prefix masses as samp_row does over the row.
 * Deterministic: the union's order in the scratch depends on atomics, its sort does not. */
#define SC_CH 128 /* keys a chunk hands over at most: the union of 32 chunks fits sm.keys */
#define SC_U 16   /* chunk elements a thread holds at most: rows up to SB_NB * S_BS * SC_U (262144) */
static_assert(SB_NB * SC_CH <= TL_CU_SAMPLE_CAP, "the chunks' union fits sm.keys");
typedef struct {
    double mass;
    int n;         /* keys handed over */
    unsigned cut;  /* their 16-bit prefix bound */
    int last;      /* id order: the chunk's last kept id, -1 */
} samp_chunk;

/* sample_top.cu: the top-n logprobs of rows with n_top > 0 over grid (SB_NB, n_rows) on st, after
 * sample_stats_kernel (its lse); part: SB_ROWS * SB_NB * TL_CU_TOPN candidates, cnt: SB_ROWS counters (zero) */
typedef struct {
    float v;
    int id;
} samp_cand;
cudaError_t tl_cu_sample_top_launch(const float *logits, int n_rows, int nv, const tl_cu_samp *p,
                                    const samp_stats *stats, samp_cand *part, unsigned *cnt, tl_cu_top *out,
                                    cudaStream_t st);

/* sample_chunk.cu: sample_chunk_kernel over grid (SB_NB, n_rows) on st, after sample_stats_kernel */
cudaError_t tl_cu_sample_chunk_launch(const float *logits, int n_rows, int nv, const tl_cu_samp *p,
                                      tl_cu_samp_out *out, const samp_stats *stats, samp_chunk *rec,
                                      unsigned long long *cand, unsigned *cnt, cudaStream_t st);

#endif

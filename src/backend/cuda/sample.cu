/* sample.cu: per-row sampling on the GPU (see cu_sample.h for the contract).
 *
 * With scratch (the backend's path), every row first goes through sample_stats_kernel: SB_NB blocks a row each
 * take a contiguous chunk (max, first argmax, sum exp(l - max)), the row's last block combines them: max,
 * argmax, log-sum-exp. Greedy rows are done there. Sampled rows (temperature > 0) then go through
 * sample_chunk_kernel (below: the chunks again, each once, from the row's max; its last block draws), or with
 * chunked = 0 (comparisons) through sample_kernel's one block a row. Without scratch, sample_kernel does all:
 * One block of S_BS threads per row; the row (n_vocab fp32, ~600 KB for Qwen2) is read from global/L2:
 *   1. max + first argmax of the raw logits, then sum exp(l - max) (fp64) -> log-sum-exp
 *   greedy: done. sampled, p_i = expf((l_i - max) / T) recomputed on each pass (cheaper than storing):
 *   2a. top-k / top-p: radix select (4 passes of 8-bit histograms, integer atomics: deterministic) finds the
 *       M-th largest p (M = top_k, or the head's size for top-p), the M candidates (ties at the cut: lowest ids)
 *       are gathered by a block scan over contiguous id ranges, bitonic-sorted in shared memory by (p desc,
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

#define SB_ROWS TL_CU_SAMPLE_SCRATCH_ROWS

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
        int o_gt = block_excl_scan_i(n_gt, sm.ibuf, &tot_gt);
        int o_eq = block_excl_scan_i(n_eq, sm.ibuf, &tot_eq);
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

/* grid (n_rows), S_BS threads: one block a row (stats NULL: the row's max and log-sum-exp too) */
__global__ void __launch_bounds__(S_BS) sample_kernel(const float *__restrict__ logits, int nv,
                                                      const tl_cu_samp *__restrict__ prm, tl_cu_samp_out *__restrict__ out,
                                                      const samp_stats *__restrict__ stats) {
    __shared__ samp_sm sm;
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
        /* max and first argmax (NaN never wins: comparisons with NaN are false, as on the CPU) */
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int i = tid; i < nv; i += S_BS) {
            float v = l[i];
            if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
        }
        block_argmax(&bv, &bi, sm.best_v, sm.best_i);
        mx = bv;
        argmax = bi == INT_MAX ? 0 : bi;
        double se = 0;
        for (int i = tid; i < nv; i += S_BS) se += (double)expf(l[i] - mx);
        lse = (double)mx + log(block_sum_d(se, sm.red));
    }
    const int tok = P.temperature > 0.0f ? samp_row(l, nv, P, mx, sm) : argmax;
    if (tid == 0) out[row] = tok < 0 ? tl_cu_samp_out{-1, 0.f} : tl_cu_samp_out{tok, (float)((double)l[tok] - lse)};
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
    int pad;
} samp_chunk;

/* Warp 0 (every lane calls it): the smallest bucket b (0..256) with base + count(buckets >= b) <= limit, and that
 * count in *cnt. h: 256 counts. */
static __device__ int samp_cut(const unsigned *h, unsigned limit, unsigned base, unsigned *cnt) {
    const int lane = threadIdx.x & 31;
    unsigned t = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) t += h[8 * lane + j];
    unsigned suf = t; /* lanes >= lane */
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const unsigned v = __shfl_down_sync(0xffffffffu, suf, o);
        if (lane + o < 32) suf += v;
    }
    unsigned s = base + suf - t; /* count(buckets >= 8 lane + 8): S is non-increasing in b */
    int best = 256;
    unsigned sb = 0;
    bool ok = s <= limit;
#pragma unroll
    for (int j = 7; j >= 0; j--) {
        s += h[8 * lane + j];
        ok = ok && s <= limit;
        if (ok) best = 8 * lane + j, sb = s;
    }
    const int b = __reduce_min_sync(0xffffffffu, best);
    const unsigned owner = __ballot_sync(0xffffffffu, best == b && b < 256);
    *cnt = owner ? __shfl_sync(0xffffffffu, sb, __ffs(owner) - 1) : base;
    return b;
}

/* exclusive prefix sums of one fp64 a thread, fixed tree (deterministic); *total: the block's sum */
static __device__ double block_excl_scan_d(double v, double *buf, double *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) buf[warp] = x;
    __syncthreads();
    if (warp == 0) {
        double w = lane < S_BS / 32 ? buf[lane] : 0.0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const double y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        if (lane < S_BS / 32) buf[32 + lane] = w; /* inclusive over warps */
    }
    __syncthreads();
    const double r = (warp ? buf[32 + warp - 1] : 0.0) + x - v;
    *total = buf[32 + S_BS / 32 - 1];
    __syncthreads();
    return r;
}

/* warp-aggregated slot: each lane with take gets the next free index of *ctr (one shared atomic a warp); every
 * lane of the warp calls it */
static __device__ __forceinline__ int samp_slot(bool take, int *ctr) {
    const unsigned m = __ballot_sync(0xffffffffu, take);
    if (!m) return -1;
    const int lane = threadIdx.x & 31, leader = __ffs(m) - 1;
    int base = 0;
    if (lane == leader) base = atomicAdd(ctr, __popc(m));
    base = __shfl_sync(0xffffffffu, base, leader);
    return take ? base + __popc(m & ((1u << lane) - 1u)) : -1;
}

/* keys[0, n) distinct, n <= SC_KPT S_BS: the M (1 <= M <= n) largest moved to keys[0, M) (in their old order), by
 * a radix select of the 64-bit keys (8 passes of 8-bit digits over registers, warp 0 finding each digit) and a
 * stable in-place compaction. Every thread calls it. */
#define SC_KPT 8
static __device__ void samp_top_m(unsigned long long *keys, int n, int M, samp_sm &sm) {
    const int tid = threadIdx.x, per = (n + S_BS - 1) / S_BS, k0 = min(n, tid * per), k1 = min(n, k0 + per);
    unsigned long long kr[SC_KPT];
#pragma unroll
    for (int j = 0; j < SC_KPT; j++) kr[j] = k0 + j < k1 ? keys[k0 + j] : 0ull;
    unsigned long long prefix = 0, mask = 0;
    unsigned rem = (unsigned)M, above = 0; /* rem: how many of the keys matching prefix are still to take */
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += S_BS) sm.hist[i] = 0;
        __syncthreads();
#pragma unroll
        for (int j = 0; j < SC_KPT; j++)
            if (k0 + j < k1 && (kr[j] & mask) == prefix) atomicAdd(&sm.hist[(unsigned)(kr[j] >> shift) & 255u], 1u);
        __syncthreads();
        if (tid < 32) { /* the digit b with count(> b) < rem <= count(>= b): samp_cut's b' = b + 1 */
            unsigned c;
            const int b1 = samp_cut(sm.hist, rem - 1, 0, &c);
            if (tid == 0) sm.misc[0] = b1 - 1, sm.misc[1] = (int)c;
        }
        __syncthreads();
        prefix |= (unsigned long long)(unsigned)sm.misc[0] << shift;
        mask |= 255ull << shift;
        rem -= (unsigned)sm.misc[1];
        above += (unsigned)sm.misc[1];
        __syncthreads();
    }
    (void)above;
    /* prefix is the M-th largest key: take keys >= prefix (exactly M: distinct) */
    int c = 0;
#pragma unroll
    for (int j = 0; j < SC_KPT; j++) c += k0 + j < k1 && kr[j] >= prefix;
    int tot;
    int o = block_excl_scan_i(c, sm.ibuf, &tot); /* (its barriers: every thread's keys are in registers) */
#pragma unroll
    for (int j = 0; j < SC_KPT; j++)
        if (k0 + j < k1 && kr[j] >= prefix) keys[o++] = kr[j];
    __syncthreads();
}

/* The chunks' keys at or above U (16-bit prefix) into keys (any order; *n counts them, zero on entry): chunk k
 * handed over cn[k] keys at cd[k SC_CH ..]. Every thread calls it; its loads are issued at once. */
static __device__ void samp_union(const unsigned long long *cd, const int *cn, unsigned U, unsigned long long *keys,
                                  int *n) {
    constexpr int R = SB_NB * SC_CH / S_BS;
    static_assert(SB_NB * SC_CH % S_BS == 0, "whole rounds");
    unsigned long long kk[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int i = (int)threadIdx.x + r * S_BS;
        kk[r] = i % SC_CH < cn[i / SC_CH] ? __ldcg(&cd[i]) : 0ull;
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int i = (int)threadIdx.x + r * S_BS;
        const bool take = i % SC_CH < cn[i / SC_CH] && (unsigned)(kk[r] >> 47) >= U;
        const int slot = samp_slot(take, n);
        if (take) keys[slot] = kk[r];
    }
}

/* grid (SB_NB, n_rows), S_BS threads; after sample_stats_kernel (stats[row].mx, lse). (__launch_bounds__(S_BS) let
 * ptxas stop at 64 registers and spill; 96 without.) */
__global__ void __maxnreg__(128) sample_chunk_kernel(const float *__restrict__ logits, int nv,
                                                            const tl_cu_samp *__restrict__ prm,
                                                            tl_cu_samp_out *__restrict__ out,
                                                            const samp_stats *__restrict__ stats, samp_chunk *rec,
                                                            unsigned long long *cand, unsigned *cnt) {
    __shared__ samp_sm sm;
    __shared__ int s_last, s_n;
    __shared__ double s_mass[SB_NB];
    __shared__ unsigned s_cut[SB_NB];
    __shared__ int s_cn[SB_NB], s_lastid[SB_NB];
    const int b = blockIdx.x, row = blockIdx.y, tid = threadIdx.x;
    const float *l = logits + (size_t)row * nv;
    const int chunk = (nv + SB_NB - 1) / SB_NB, c0 = min(nv, b * chunk), c1 = min(nv, c0 + chunk);
    const tl_cu_samp P = prm[row];
    const float mx = stats[row].mx; /* (loaded with P: no round trip for it after the test) */
    const double lse = stats[row].lse;
    if (P.skip) {
        if (b == 0 && tid == 0) out[row] = tl_cu_samp_out{-1, 0.f};
        return;
    }
    if (!(P.temperature > 0.0f)) return; /* greedy: answered by sample_stats_kernel (its row is not read again) */
    /* the chunk: element c0 + tid + u S_BS of thread tid, all loaded at once */
    float v[SC_U];
#pragma unroll
    for (int u = 0; u < SC_U; u++) {
        const int i = c0 + tid + u * S_BS;
        v[u] = i < c1 && chunk <= SC_U * S_BS ? l[i] : 0.f;
    }
    const float inv_t = 1.0f / P.temperature;
    const bool top_p = P.top_p > 0.0f && P.top_p < 1.0f, top_k = P.top_k > 0 && P.top_k < nv, head = top_p || top_k;
    if (chunk > SC_U * S_BS || (top_k && P.top_k > TL_CU_SAMPLE_CAP)) { /* one block over the row */
        if (b) return;
        const int tok = samp_row(l, nv, P, mx, sm);
        if (tid == 0) out[row] = tok < 0 ? tl_cu_samp_out{-1, 0.f} : tl_cu_samp_out{tok, (float)((double)l[tok] - lse)};
        return;
    }
    unsigned key[SC_U];
    const float thr = head ? -1.0f : P.min_p > 0.0f ? P.min_p : -1.0f;
    double ms = 0;
    int last = -1;
#pragma unroll
    for (int u = 0; u < SC_U; u++) {
        const int i = c0 + tid + u * S_BS;
        const float p = expf((v[u] - mx) * inv_t);
        key[u] = __float_as_uint(p);
        if (i < c1 && p >= thr) ms += (double)p, last = i;
    }
    if (tid == 0) s_n = 0, sm.misc[3] = -1;
    const double mass = block_sum_d(ms, sm.red); /* (its barriers publish s_n, misc[3]) */
    unsigned cut = 0;
    if (head) {
        unsigned *h = sm.hist;
        for (int i = tid; i < 256; i += S_BS) h[i] = 0;
        __syncthreads();
#pragma unroll
        for (int u = 0; u < SC_U; u++)
            if (c0 + tid + u * S_BS < c1) atomicAdd(&h[key[u] >> 23 & 255u], 1u);
        __syncthreads();
        if (tid < 32) {
            unsigned c1n;
            const int b1 = samp_cut(h, SC_CH, 0, &c1n);
            if (tid == 0) sm.misc[0] = b1, sm.misc[1] = (int)c1n;
        }
        __syncthreads();
        const int b1 = sm.misc[0];
        const unsigned c1n = (unsigned)sm.misc[1];
        if (b1 > 0) { /* bucket b1 - 1 has too many: its next 8 bits */
            __syncthreads();
            for (int i = tid; i < 256; i += S_BS) h[i] = 0;
            __syncthreads();
#pragma unroll
            for (int u = 0; u < SC_U; u++)
                if (c0 + tid + u * S_BS < c1 && (key[u] >> 23 & 255u) == (unsigned)(b1 - 1)) atomicAdd(&h[key[u] >> 15 & 255u], 1u);
            __syncthreads();
            if (tid < 32) {
                unsigned c2n;
                const int b2 = samp_cut(h, SC_CH, c1n, &c2n);
                if (tid == 0) sm.misc[2] = b2;
            }
            __syncthreads();
            cut = ((unsigned)(b1 - 1) << 8) + (unsigned)sm.misc[2];
        }
        unsigned long long *cd = cand + ((size_t)row * SB_NB + b) * SC_CH;
#pragma unroll
        for (int u = 0; u < SC_U; u++) {
            const int i = c0 + tid + u * S_BS;
            const bool take = i < c1 && (key[u] >> 15) >= cut;
            const int slot = samp_slot(take, &s_n);
            if (take && slot < SC_CH) cd[slot] = ((unsigned long long)key[u] << 32) | (0xffffffffu - (unsigned)i);
        }
    }
    /* the chunk's record; every thread's stores fenced before the block is counted */
    if (!head && last >= 0) atomicMax(&sm.misc[3], last);
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        rec[(size_t)row * SB_NB + b] = samp_chunk{mass, head ? min(s_n, SC_CH) : 0, cut, head ? -1 : sm.misc[3], 0};
        __threadfence();
        s_last = atomicAdd(cnt + row, 1u) == SB_NB - 1;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (tid == 0) cnt[row] = 0; /* for the next launch */
    const samp_chunk *rr = rec + (size_t)row * SB_NB;
    if (tid < SB_NB) {
        s_mass[tid] = __ldcg(&rr[tid].mass), s_cn[tid] = __ldcg(&rr[tid].n);
        s_cut[tid] = __ldcg(&rr[tid].cut), s_lastid[tid] = __ldcg(&rr[tid].last);
    }
    if (tid == 0) s_n = 0;
    __syncthreads();
    int tok;
    if (head) {
        unsigned U = 0;
        for (int k = 0; k < SB_NB; k++) U = max(U, s_cut[k]);
        const unsigned long long *cd = cand + (size_t)row * SB_NB * SC_CH;
        samp_union(cd, s_cn, U, sm.keys, &s_n);
        __syncthreads();
        const int n = s_n;
        /* the head: the top_k (top-k), else the TL_CU_SAMPLE_HEAD_P largest of the union; top-p alone whose head
         * does not reach the cut tries the whole union before the whole row */
        const int M = top_k ? P.top_k : min(n, P.head > 0 ? min(P.head, TL_CU_SAMPLE_CAP) : TL_CU_SAMPLE_HEAD_P);
        bool fall = n < M || n == 0;
        if (!top_k && !fall) { /* top-p alone: a union whose mass is short of the cut (flat rows) goes to the row */
            double um = 0;
            for (int i = tid; i < n; i += S_BS) um += (double)__uint_as_float((unsigned)(sm.keys[i] >> 32));
            um = block_sum_d(um, sm.red);
            double total = 0;
            for (int k = 0; k < SB_NB; k++) total += s_mass[k];
            fall = um < (double)P.top_p * total * (1.0 - 1e-9); /* (margin: another summation order) */
        }
        for (int pass = 0; pass < 2 && !fall; pass++) {
            const int m = pass ? n : M;
            if (pass == 0 && M < n) samp_top_m(sm.keys, n, M, sm);
            if (pass == 1) { /* the whole union again (samp_top_m kept only M of it in keys): gather once more */
                if (tid == 0) s_n = 0;
                __syncthreads();
                samp_union(cd, s_cn, U, sm.keys, &s_n);
                __syncthreads();
            }
            int S = 2;
            while (S < m) S <<= 1;
            for (int i = m + tid; i < S; i += S_BS) sm.keys[i] = 0ull;
            __syncthreads();
            samp_bitonic_desc(sm.keys, S);
            if (tid == 0) {
                double total = 0;
                for (int k = 0; k < SB_NB; k++) total += s_mass[k];
                bool defer;
                const int t = samp_walk(sm.keys, m, P, total, top_k, top_p, nv, &defer);
                sm.misc[0] = t, sm.misc[1] = defer;
            }
            __syncthreads();
            tok = sm.misc[0];
            const bool defer = sm.misc[1];
            __syncthreads();
            if (!defer) break;
            fall = pass == 1 || m == n;
        }
        if (fall) tok = samp_row(l, nv, P, mx, sm); /* (uniform) */
    } else {
        /* the chunk holding the crossing of u * kept, in chunk order */
        if (tid == 0) {
            double kept = 0;
            for (int k = 0; k < SB_NB; k++) kept += s_mass[k];
            const double u = P.u * kept;
            double cum = 0;
            int cs = -1, lastk = -1;
            for (int k = 0; k < SB_NB; k++) {
                if (s_lastid[k] >= 0) lastk = s_lastid[k];
                if (cs < 0 && u < cum + s_mass[k]) cs = k, sm.kept = cum;
                cum += s_mass[k];
            }
            sm.misc[0] = cs, sm.misc[1] = lastk, sm.misc[2] = INT_MAX;
            sm.u64[0] = (unsigned long long)__double_as_longlong(u);
        }
        __syncthreads();
        const int cs = sm.misc[0];
        if (cs < 0) {
            tok = sm.misc[1] >= 0 ? sm.misc[1] : 0; /* no crossing (rounding): the last kept; none: id 0 */
        } else {
            const double u = __longlong_as_double((long long)sm.u64[0]);
            const int a0 = min(nv, cs * chunk), a1 = min(nv, a0 + chunk);
            const int per = (a1 - a0 + S_BS - 1) / S_BS, t0 = min(a1, a0 + tid * per), t1 = min(a1, t0 + per);
            float pv[SC_U]; /* per <= SC_U (chunk <= SC_U S_BS): this thread's run, loaded at once */
#pragma unroll
            for (int j = 0; j < SC_U; j++) pv[j] = t0 + j < t1 ? l[t0 + j] : 0.f;
            double part = 0;
#pragma unroll
            for (int j = 0; j < SC_U; j++) {
                pv[j] = t0 + j < t1 ? expf((pv[j] - mx) * inv_t) : -2.0f; /* -2: past the run, never kept */
                if (pv[j] >= thr) part += pv[j];
            }
            double tot;
            double cum = sm.kept + block_excl_scan_d(part, sm.red, &tot);
#pragma unroll
            for (int j = 0; j < SC_U; j++) {
                if (!(pv[j] >= thr)) continue;
                cum += pv[j];
                if (u < cum) {
                    atomicMin(&sm.misc[2], t0 + j);
                    break;
                }
            }
            __syncthreads();
            tok = sm.misc[2] != INT_MAX ? sm.misc[2] : s_lastid[cs] >= 0 ? s_lastid[cs] : 0;
        }
    }
    if (tid == 0) out[row] = tok < 0 ? tl_cu_samp_out{-1, 0.f} : tl_cu_samp_out{tok, (float)((double)l[tok] - lse)};
}

/* scratch, for up to TL_CU_SAMPLE_SCRATCH_ROWS rows a launch: the two kernels' row counters (zero between
 * launches: each row's last block resets its own), statistics, chunk partials, chunk records, chunk keys */
extern "C" size_t tl_cu_sample_scratch_bytes(void) {
    return SB_ROWS * (2 * sizeof(unsigned) + sizeof(samp_stats) + SB_NB * (sizeof(samp_part) + sizeof(samp_chunk)) +
                      (size_t)SB_NB * SC_CH * sizeof(unsigned long long));
}

extern "C" int tl_cu_sample(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, tl_cu_samp_out *out,
                            void *scratch, int chunked, cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    if (n_vocab <= 0) return tl_errf(e, "cuda sample: n_vocab %d", n_vocab);
    if (!scratch) {
        sample_kernel<<<n_rows, S_BS, 0, st>>>(logits, n_vocab, p, out, NULL);
        TL_CU_LAUNCHED(e, "sample");
    }
    unsigned *cnt = (unsigned *)scratch, *cnt2 = cnt + SB_ROWS;
    samp_stats *stats = (samp_stats *)(cnt2 + SB_ROWS);
    samp_part *part = (samp_part *)(stats + SB_ROWS);
    samp_chunk *rec = (samp_chunk *)(part + SB_ROWS * SB_NB);
    unsigned long long *cand = (unsigned long long *)(rec + SB_ROWS * SB_NB);
    for (int r0 = 0; r0 < n_rows; r0 += SB_ROWS) {
        const int n = n_rows - r0 < SB_ROWS ? n_rows - r0 : SB_ROWS;
        const float *lg = logits + (size_t)r0 * n_vocab;
        sample_stats_kernel<<<dim3(SB_NB, (unsigned)n), SB_BS, 0, st>>>(lg, n_vocab, p + r0, part, stats, cnt, out + r0);
        if (chunked)
            sample_chunk_kernel<<<dim3(SB_NB, (unsigned)n), S_BS, 0, st>>>(lg, n_vocab, p + r0, out + r0, stats, rec,
                                                                            cand, cnt2);
        else
            sample_kernel<<<n, S_BS, 0, st>>>(lg, n_vocab, p + r0, out + r0, stats);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return tl_errf(e, "cuda sample: %s", cudaGetErrorString(err));
    }
    return 0;
}

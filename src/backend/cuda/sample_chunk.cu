/* sample_chunk.cu: sampled rows (temperature > 0) drawn over many blocks, after sample.cu's row statistics;
 * see "Sampled rows over many blocks" in sample_common.cuh. */
#include "backend/cuda/sample_common.cuh"

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
    unsigned rem = (unsigned)M; /* how many of the keys matching prefix are still to take */
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
        __syncthreads();
    }
    /* prefix is the M-th largest key: take keys >= prefix (exactly M: distinct) */
    int c = 0;
#pragma unroll
    for (int j = 0; j < SC_KPT; j++) c += k0 + j < k1 && kr[j] >= prefix;
    int tot;
    int o = block_excl_scan<int>(c, sm.ibuf, &tot); /* (its barriers: every thread's keys are in registers) */
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
    if (tid == 0) rec[(size_t)row * SB_NB + b] = samp_chunk{mass, head ? min(s_n, SC_CH) : 0, cut, head ? -1 : sm.misc[3]};
    if (!samp_last_block(cnt, row, &s_last)) return;
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
            double cum = sm.kept + block_excl_scan<double>(part, sm.red, &tot);
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

cudaError_t tl_cu_sample_chunk_launch(const float *logits, int n_rows, int nv, const tl_cu_samp *p,
                                      tl_cu_samp_out *out, const samp_stats *stats, samp_chunk *rec,
                                      unsigned long long *cand, unsigned *cnt, cudaStream_t st) {
    sample_chunk_kernel<<<dim3(SB_NB, (unsigned)n_rows), S_BS, 0, st>>>(logits, nv, p, out, stats, rec, cand, cnt);
    return cudaGetLastError();
}

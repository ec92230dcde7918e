/* sample.cu: per-row sampling on the GPU (see cu_sample.h for the contract).
 *
 * With scratch (the backend's path), every row first goes through sample_stats_kernel: SB_NB blocks a row each
 * take a contiguous chunk (max, first argmax, sum exp(l - max)), the row's last block combines them: max,
 * argmax, log-sum-exp. Greedy rows are done there. Sampled rows (temperature > 0) then go through
 * sample_chunk_kernel (sample_chunk.cu: the chunks again, each once, from the row's max; its last block draws), or with
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
#include "backend/cuda/sample_common.cuh"

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
                                                             tl_cu_samp_out *__restrict__ out, tl_cu_lraw *lr) {
    __shared__ float sv[SB_BS / 32];
    __shared__ int si[SB_BS / 32];
    __shared__ double red[SB_BS];
    __shared__ int s_last;
    const int b = blockIdx.x, row = blockIdx.y, tid = threadIdx.x;
    const tl_cu_samp P = prm[row];
    if (P.skip) return; /* (sample_kernel answers -1) */
    if (lr && P.n_top <= 0) return; /* (lr: the raw rows' pass before the penalties, rows with top-n only) */
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
    if (lr) lr[row].lse = lse;
    else if (!(P.temperature > 0.0f)) out[row] = tl_cu_samp_out{arg, (float)((double)l[arg] - lse)};
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

/* A penalized logit (sampler.c's apply_penalties, one token): repetition (HF), then count * frequency + presence
 * for a token generated count > 0 times; explicit roundings, as the host's C (contraction off) */
static __device__ __forceinline__ float pen_one(const tl_cu_samp &P, float v, int count) {
    if (P.rep != 1.0f && P.rep > 0.0f) v = v > 0.f ? __fdiv_rn(v, P.rep) : __fmul_rn(v, P.rep);
    if (count > 0) v = __fsub_rn(v, __fadd_rn(__fmul_rn((float)count, P.freq), P.pres));
    return v;
}

/* grid (n_rows), PEN_BS threads: a row's distinct tokens one a thread (no two threads write one logit) */
#define PEN_BS 256
__global__ void __launch_bounds__(PEN_BS) penalize_kernel(float *logits, int nv, const tl_cu_samp *__restrict__ prm,
                                                          const int32_t *__restrict__ pen,
                                                          const int32_t *__restrict__ tokens,
                                                          const int32_t *__restrict__ rows, float *raw,
                                                          tl_cu_lraw *lr) {
    __shared__ int found;
    const int row = blockIdx.x;
    const tl_cu_samp P = prm[row];
    if (P.skip || !tl_cu_samp_has_pen(&P)) return;
    float *l = logits + (size_t)row * nv;
    const int32_t last = tokens[rows[row]], *ent = pen + 2 * (size_t)P.pen_off;
    const bool save = raw && P.n_top > 0; /* (the row's logprobs are of the raw logits: tl_cu_logprob_raw) */
    if (threadIdx.x == 0) found = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < P.pen_n; j += PEN_BS) {
        const int32_t t = ent[2 * j];
        int count = ent[2 * j + 1];
        if (t == last) count += P.last_gen, found = 1;
        if (t >= 0 && t < nv) {
            if (save) raw[P.pen_off + j] = l[t];
            l[t] = pen_one(P, l[t], count);
        }
    }
    __syncthreads();
    /* (a prompt token with the repetition penalty off: pen_one returns it unchanged) */
    if (threadIdx.x == 0 && !found && last >= 0 && last < nv) {
        if (save) lr[row].last = l[last];
        l[last] = pen_one(P, l[last], P.last_gen);
    }
}

/* grid (n_rows), 32 threads: on rows with penalties and top-n, the drawn token's logprob of the raw logits (its
 * raw value saved by penalize_kernel where that rewrote it: an entry's, or the last token's outside them) */
__global__ void __launch_bounds__(32) logprob_raw_kernel(const float *__restrict__ logits, int nv,
                                                         const tl_cu_samp *__restrict__ prm,
                                                         const int32_t *__restrict__ pen,
                                                         const int32_t *__restrict__ tokens,
                                                         const int32_t *__restrict__ rows, const float *__restrict__ raw,
                                                         const tl_cu_lraw *__restrict__ lr, tl_cu_samp_out *out) {
    const int row = blockIdx.x, lane = threadIdx.x;
    const tl_cu_samp P = prm[row];
    if (P.skip || P.n_top <= 0 || !tl_cu_samp_has_pen(&P)) return;
    const int tok = out[row].token;
    if (tok < 0 || tok >= nv) return;
    const int32_t last = tokens[rows[row]], *ent = pen + 2 * (size_t)P.pen_off;
    int hit = -1; /* the entry of tok (distinct tokens: at most one) */
    bool last_in = false;
    for (int j = lane; j < P.pen_n; j += 32) {
        const int32_t t = ent[2 * j];
        if (t == tok) hit = j;
        last_in |= t == last;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) hit = max(hit, __shfl_xor_sync(0xffffffffu, hit, o));
    last_in = __any_sync(0xffffffffu, last_in);
    if (lane) return;
    float v = logits[(size_t)row * nv + tok];
    if (hit >= 0) v = raw[P.pen_off + hit];
    else if (tok == last && !last_in) v = lr[row].last;
    out[row].logprob = (float)((double)v - lr[row].lse);
}

extern "C" int tl_cu_logprob_raw(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p,
                                 const int32_t *pen, const int32_t *tokens, const int32_t *rows, const float *raw,
                                 const tl_cu_lraw *lr, tl_cu_samp_out *out, cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    logprob_raw_kernel<<<n_rows, 32, 0, st>>>(logits, n_vocab, p, pen, tokens, rows, raw, lr, out);
    TL_CU_LAUNCHED(e, "logprob_raw");
}

extern "C" int tl_cu_penalize(float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, const int32_t *pen,
                              const int32_t *tokens, const int32_t *rows, float *raw, tl_cu_lraw *lr,
                              cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    if (!raw != !lr) return tl_errf(e, "cuda penalize: raw and lr go together");
    penalize_kernel<<<n_rows, PEN_BS, 0, st>>>(logits, n_vocab, p, pen, tokens, rows, raw, lr);
    TL_CU_LAUNCHED(e, "penalize");
}

/* scratch, for up to TL_CU_SAMPLE_SCRATCH_ROWS rows a launch: the three kernels' row counters (zero between
 * launches: each row's last block resets its own), statistics, chunk partials, chunk records, chunk keys, the
 * chunks' top-n candidates */
extern "C" size_t tl_cu_sample_scratch_bytes(void) {
    return SB_ROWS * (3 * sizeof(unsigned) + sizeof(samp_stats) + SB_NB * (sizeof(samp_part) + sizeof(samp_chunk)) +
                      (size_t)SB_NB * SC_CH * sizeof(unsigned long long) + (size_t)SB_NB * TL_CU_TOPN * sizeof(samp_cand));
}

/* the scratch's parts (tl_cu_sample_scratch_bytes' order) */
typedef struct samp_scr {
    unsigned *cnt, *cnt2, *cnt3; /* the three kernels' row counters */
    samp_stats *stats;
    samp_part *part;
    samp_chunk *rec;
    unsigned long long *cand;
    samp_cand *tcand;
} samp_scr;
static samp_scr scr_of(void *scratch) {
    samp_scr S;
    S.cnt = (unsigned *)scratch, S.cnt2 = S.cnt + SB_ROWS, S.cnt3 = S.cnt2 + SB_ROWS;
    S.stats = (samp_stats *)(S.cnt3 + SB_ROWS); /* (3 SB_ROWS counters: 8-byte aligned) */
    S.part = (samp_part *)(S.stats + SB_ROWS);
    S.rec = (samp_chunk *)(S.part + SB_ROWS * SB_NB);
    S.cand = (unsigned long long *)(S.rec + SB_ROWS * SB_NB);
    S.tcand = (samp_cand *)(S.cand + (size_t)SB_ROWS * SB_NB * SC_CH);
    return S;
}

/* The scratch passes over rows in groups of SB_ROWS: statistics, then the draw (out) and the top-n (top, NULL:
 * none); with lr (the raw rows' pass before the penalties, cu_sample.h) only rows with top-n, no draw, and each
 * row's raw log-sum-exp into lr. */
static int sample_passes(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, tl_cu_samp_out *out,
                         void *scratch, int chunked, tl_cu_top *top, tl_cu_lraw *lr, cudaStream_t st, tl_error *e) {
    const samp_scr S = scr_of(scratch);
    for (int r0 = 0; r0 < n_rows; r0 += SB_ROWS) {
        const int n = n_rows - r0 < SB_ROWS ? n_rows - r0 : SB_ROWS;
        const float *lg = logits + (size_t)r0 * n_vocab;
        sample_stats_kernel<<<dim3(SB_NB, (unsigned)n), SB_BS, 0, st>>>(lg, n_vocab, p + r0, S.part, S.stats, S.cnt,
                                                                         lr ? NULL : out + r0, lr ? lr + r0 : NULL);
        cudaError_t err = cudaGetLastError();
        if (err == cudaSuccess && !lr) {
            if (chunked) err = tl_cu_sample_chunk_launch(lg, n, n_vocab, p + r0, out + r0, S.stats, S.rec, S.cand, S.cnt2, st);
            else sample_kernel<<<n, S_BS, 0, st>>>(lg, n_vocab, p + r0, out + r0, S.stats);
        }
        if (err == cudaSuccess) err = cudaGetLastError();
        if (err == cudaSuccess && top)
            err = tl_cu_sample_top_launch(lg, n, n_vocab, p + r0, S.stats, S.tcand, S.cnt3, top + r0, st);
        if (err == cudaSuccess) err = cudaGetLastError();
        if (err != cudaSuccess) return tl_errf(e, "cuda sample: %s", cudaGetErrorString(err));
    }
    return 0;
}

extern "C" int tl_cu_sample(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, tl_cu_samp_out *out,
                            void *scratch, int chunked, tl_cu_top *top, cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    if (n_vocab <= 0) return tl_errf(e, "cuda sample: n_vocab %d", n_vocab);
    if (top && !scratch) return tl_errf(e, "cuda sample: the top-n logprobs need the scratch");
    if (!scratch) {
        sample_kernel<<<n_rows, S_BS, 0, st>>>(logits, n_vocab, p, out, NULL);
        TL_CU_LAUNCHED(e, "sample");
    }
    return sample_passes(logits, n_rows, n_vocab, p, out, scratch, chunked, top, NULL, st, e);
}

/* the raw rows' pass (cu_sample.h): statistics and top-n of rows with n_top > 0 before the penalties */
extern "C" int tl_cu_sample_top_raw(const float *logits, int n_rows, int n_vocab, const tl_cu_samp *p, void *scratch,
                                    tl_cu_top *top, tl_cu_lraw *lr, cudaStream_t st, tl_error *e) {
    if (n_rows <= 0) return 0;
    if (n_vocab <= 0) return tl_errf(e, "cuda sample: n_vocab %d", n_vocab);
    if (!scratch || !top || !lr) return tl_errf(e, "cuda sample: the raw top-n pass needs scratch, top and lr");
    return sample_passes(logits, n_rows, n_vocab, p, NULL, scratch, 0, top, lr, st, e);
}

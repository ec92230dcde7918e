/* sample_top.cu: a row's top-n logprobs on the GPU (OpenAI's top_logprobs, n <= 20), as engine/sampler.c's
 * fill_logprobs: the n largest raw logits in (logit desc, id asc) order, each minus the row's log-sum-exp.
 * Grid (SB_NB, n_rows) of SB_BS threads, after sample_stats_kernel: block b takes chunk b of the row and picks its
 * n best by n rounds of a block-wide argmax over what comes after the previous pick in that order (the chunk is
 * read from L2 each round: only rows that ask for it pay); the row's last block (a counter it resets) picks the
 * n best of the SB_NB * n candidates the same way and writes them with lse from the statistics. NaN logits are
 * never picked (sampler.c's insertion may keep one: a NaN row is not a distribution). Deterministic. */
#include "backend/cuda/sample_common.cuh"

/* (v, i) comes after (pv, pi) in (logit desc, id asc) order; better: earlier in it */
static __device__ __forceinline__ bool top_after(float v, int i, float pv, int pi) {
    return v < pv || (v == pv && i > pi);
}
static __device__ __forceinline__ bool top_better(float v, int i, float bv, int bi) {
    return bi < 0 || v > bv || (v == bv && i < bi);
}

/* the block's best (v, i) (bi -1: none): shuffles, then the warps' bests in shared memory */
static __device__ void top_block_best(float *bv, int *bi, samp_cand *sw) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, *bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, *bi, o);
        if (oi >= 0 && top_better(ov, oi, *bv, *bi)) *bv = ov, *bi = oi;
    }
    if (lane == 0) sw[warp] = samp_cand{*bv, *bi};
    __syncthreads();
    float v = sw[0].v;
    int i = sw[0].id;
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        if (sw[w].id >= 0 && top_better(sw[w].v, sw[w].id, v, i)) v = sw[w].v, i = sw[w].id;
    __syncthreads();
    *bv = v, *bi = i;
}

__global__ void __launch_bounds__(SB_BS) sample_top_kernel(const float *__restrict__ logits, int nv,
                                                           const tl_cu_samp *__restrict__ prm,
                                                           const samp_stats *__restrict__ stats, samp_cand *part,
                                                           unsigned *cnt, tl_cu_top *__restrict__ out) {
    __shared__ samp_cand sw[SB_BS / 32], cand[SB_NB * TL_CU_TOPN];
    __shared__ int s_last;
    const int b = blockIdx.x, row = blockIdx.y, tid = threadIdx.x;
    const tl_cu_samp P = prm[row];
    const int n = min(min(P.n_top, TL_CU_TOPN), nv);
    if (P.skip || n <= 0) return;
    const float *l = logits + (size_t)row * nv;
    const int chunk = (nv + SB_NB - 1) / SB_NB, c0 = min(nv, b * chunk), c1 = min(nv, c0 + chunk);
    samp_cand *pr = part + (size_t)row * SB_NB * TL_CU_TOPN;
    float pv = INFINITY;
    int pi = -1;
    for (int k = 0; k < n; k++) { /* this chunk's k-th best */
        float bv = 0.f;
        int bi = -1;
        for (int i = c0 + tid; i < c1; i += SB_BS) {
            const float v = l[i];
            if (v == v && top_after(v, i, pv, pi) && top_better(v, i, bv, bi)) bv = v, bi = i;
        }
        top_block_best(&bv, &bi, sw);
        if (tid == 0) pr[b * TL_CU_TOPN + k] = samp_cand{bv, bi};
        pv = bv, pi = bi;
        if (bi < 0) break; /* (the chunk has fewer than n: -1 marks the end) */
    }
    if (!samp_last_block(cnt, row, &s_last)) return;
    for (int j = tid; j < SB_NB * n; j += SB_BS) { /* every chunk's picks, -1 past a short chunk's end */
        const int cb = j / n, k = j % n;
        samp_cand c = {__ldcg(&pr[cb * TL_CU_TOPN + k].v), __ldcg(&pr[cb * TL_CU_TOPN + k].id)};
        for (int q = 0; q < k && c.id >= 0; q++) c.id = __ldcg(&pr[cb * TL_CU_TOPN + q].id) < 0 ? -1 : c.id;
        cand[j] = c;
    }
    __syncthreads();
    const double lse = stats[row].lse;
    pv = INFINITY, pi = -1;
    int got = 0;
    for (int k = 0; k < n; k++) {
        float bv = 0.f;
        int bi = -1;
        for (int j = tid; j < SB_NB * n; j += SB_BS) {
            const samp_cand c = cand[j];
            if (c.id >= 0 && top_after(c.v, c.id, pv, pi) && top_better(c.v, c.id, bv, bi)) bv = c.v, bi = c.id;
        }
        top_block_best(&bv, &bi, sw);
        if (bi < 0) break;
        if (tid == 0) out[row].id[k] = bi, out[row].lp[k] = (float)((double)bv - lse);
        pv = bv, pi = bi, got++;
    }
    if (tid == 0) out[row].n = got;
}

cudaError_t tl_cu_sample_top_launch(const float *logits, int n_rows, int nv, const tl_cu_samp *p,
                                    const samp_stats *stats, samp_cand *part, unsigned *cnt, tl_cu_top *out,
                                    cudaStream_t st) {
    sample_top_kernel<<<dim3(SB_NB, (unsigned)n_rows), SB_BS, 0, st>>>(logits, nv, p, stats, part, cnt, out);
    return cudaGetLastError();
}

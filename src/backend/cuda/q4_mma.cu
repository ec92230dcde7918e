/* q4_mma.cu: the decode GEMV on tensor cores (INT4 weights, 1..16 token rows), Marlin-style.
 *
 * Layout (made at upload by tl_cu_q4t_repack, "tiled"): rows padded to 16; for each 16-row tile and each
 * 64-column block, 32 lanes x uint4 (512 contiguous bytes, one 16-byte load per lane). Word j of a lane's
 * uint4 is that lane's A fragment of mma.m16n8k16 for k-step j, with lane = 4g + q:
 *   nibble 0,4 = W[g][k0+2q, +1]   nibble 1,5 = W[g+8][k0+2q, +1]
 *   nibble 2,6 = W[g][k0+8+2q, +1] nibble 3,7 = W[g+8][k0+8+2q, +1]
 * so (w >> 4i) & 0x000F000F | 0x64006400 is the fp16 pair (1024 + code) of fragment register i: no
 * conversion instructions. Scales/biases: [tile][group][16 rows] (scale | bias << 16).
 * Math: per group, C = sum_k (1024 + q_k) x_k on the tensor cores (fp16 x, fp32 accumulate, exact
 * products), then y += s * C + (b - 1024 s) * Xs with Xs = sum_k x_k of the same fp16 x (precomputed).
 * x is rounded to fp16 once (|x| must stay below 65504); weights are never rounded.
 * A block (8 warps) takes one 16-row tile; the warps split K in group-aligned ranges (and blocks along grid.y
 * too when there are few tiles: partials summed in a fixed order by q4t_reduce_kernel, so results are
 * deterministic), each lane with 8 loads in flight; smem reduction across the warps. */
#include "backend/cuda/cu_common.cuh"

#define T_WARPS 8

/* ---- host: repack MLX rows into the tiled layout ---- */
extern "C" int tl_cu_q4t_repack(const uint32_t *codes, const uint16_t *scales, const uint16_t *biases, int64_t rows,
                                int64_t cols, int group, uint32_t *out_codes, uint32_t *out_sb) {
    if (cols % 64 || (group != 32 && group != 64 && group != 128)) return -1;
    const int64_t nt = (rows + 15) / 16, nkb = cols / 64, ng = cols / group, wpr = cols / 8;
    for (int64_t t = 0; t < nt; t++) {
        for (int64_t kb = 0; kb < nkb; kb++)
            for (int lane = 0; lane < 32; lane++)
                for (int j = 0; j < 4; j++) {
                    int g = lane / 4, q = lane % 4;
                    int64_t k0 = kb * 64 + j * 16;
                    /* (row offset, column) of nibbles 0..7 */
                    const int ro[8] = {0, 8, 0, 8, 0, 8, 0, 8};
                    const int co[8] = {2 * q, 2 * q, 8 + 2 * q, 8 + 2 * q, 2 * q + 1, 2 * q + 1, 9 + 2 * q, 9 + 2 * q};
                    uint32_t w = 0;
                    for (int i = 0; i < 8; i++) {
                        int64_t r = t * 16 + g + ro[i], c = k0 + co[i];
                        uint32_t code = r < rows ? (codes[r * wpr + c / 8] >> (4 * (c % 8))) & 15u : 0u;
                        w |= code << (4 * i);
                    }
                    out_codes[((t * nkb + kb) * 32 + lane) * 4 + j] = w;
                }
        for (int64_t gi = 0; gi < ng; gi++)
            for (int r = 0; r < 16; r++) {
                int64_t row = t * 16 + r;
                out_sb[(t * ng + gi) * 16 + r] =
                    row < rows ? (uint32_t)scales[row * ng + gi] | ((uint32_t)biases[row * ng + gi] << 16) : 0u;
            }
    }
    return 0;
}

template <bool BF16> static __device__ __forceinline__ float2 sb2(uint32_t v) {
    if (BF16) return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    return make_float2(tl_cu_f16f((uint16_t)(v & 0xffffu)), tl_cu_f16f((uint16_t)(v >> 16)));
}

/* ---- x -> B fragments: xf[(ks * NTILE + nt) * 32 + lane] = {b0, b1}; xs[gi * 16 + t] = sum of fp16 x ---- */
__global__ void q4t_xprep_kernel(const float *__restrict__ x, uint2 *__restrict__ xf, float *__restrict__ xs, int cols,
                                 int group, int n_tok, int ntile) {
    const int lane = threadIdx.x & 31;
    const int64_t idx = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* (ks, nt) */
    const int nks = cols / 16;
    if (idx < (int64_t)nks * ntile) {
        const int ks = (int)(idx / ntile), nt = (int)(idx % ntile);
        const int t = nt * 8 + lane / 4, k = ks * 16 + 2 * (lane % 4);
        __half2 b0 = __floats2half2_rn(0.f, 0.f), b1 = b0;
        if (t < n_tok) {
            const float *xr = x + (size_t)t * cols;
            b0 = __floats2half2_rn(xr[k], xr[k + 1]);
            b1 = __floats2half2_rn(xr[k + 8], xr[k + 9]);
        }
        xf[idx * 32 + lane] = make_uint2(*(uint32_t *)&b0, *(uint32_t *)&b1);
    }
    /* group sums: one thread per (group, token slot) */
    const int64_t gidx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int ng = cols / group;
    if (gidx < (int64_t)ng * 16) {
        const int gi = (int)(gidx / 16), t = (int)(gidx % 16);
        float s = 0.f;
        if (t < n_tok)
            for (int k = 0; k < group; k++) s += __half2float(__float2half_rn(x[(size_t)t * cols + gi * group + k]));
        xs[gidx] = s;
    }
}

static __device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#define T_UNROLL 8 /* 16-byte loads in flight per lane before the math */
#define T_TARGET_BLOCKS 512 /* ~4 blocks per multiprocessor on H100/H200 (132): split K until the grid has this */

template <int NTILE, bool BF16, int G>
__global__ void __launch_bounds__(32 * T_WARPS)
    q4t_gemv_kernel(const uint4 *__restrict__ codes, const uint32_t *__restrict__ sb, const uint2 *__restrict__ xf,
                    const float *__restrict__ xs, float *__restrict__ y, float *__restrict__ part, int rows, int cols,
                    int n_tok) {
    constexpr int group = G;
    const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, q = lane & 3;
    const int nkb = cols / 64, ng = cols / group;
    const int kb_group = group > 64 ? group / 64 : 1;               /* kbs per group (>= 1) */
    const int nw = gridDim.y * T_WARPS, gw = blockIdx.y * T_WARPS + warp;
    int per = (nkb + nw - 1) / nw;
    per = (per + kb_group - 1) / kb_group * kb_group;
    const int kb0 = gw * per, kb1 = min(nkb, kb0 + per);
    float acc[NTILE][4], c[NTILE][4];
#pragma unroll
    for (int n = 0; n < NTILE; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[n][i] = 0.f, c[n][i] = 0.f;
    const uint4 *cp = codes + (size_t)tile * nkb * 32 + lane;
    const uint32_t *sbp = sb + (size_t)tile * ng * 16;
    for (int kbb = kb0; kbb < kb1; kbb += T_UNROLL) {
        uint4 qv[T_UNROLL];
#pragma unroll
        for (int u = 0; u < T_UNROLL; u++)
            qv[u] = kbb + u < kb1 ? __ldg(cp + (size_t)(kbb + u) * 32) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < T_UNROLL; u++) {
            if (kbb + u >= kb1) break;
            const uint32_t wv[4] = {qv[u].x, qv[u].y, qv[u].z, qv[u].w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int ks = (kbb + u) * 4 + j;
                const uint32_t w = wv[j];
                const uint32_t a0 = (w & 0x000F000Fu) | 0x64006400u, a1 = ((w >> 4) & 0x000F000Fu) | 0x64006400u;
                const uint32_t a2 = ((w >> 8) & 0x000F000Fu) | 0x64006400u, a3 = ((w >> 12) & 0x000F000Fu) | 0x64006400u;
#pragma unroll
                for (int n = 0; n < NTILE; n++) {
                    uint2 b = __ldg(xf + ((size_t)ks * NTILE + n) * 32 + lane);
                    mma16816(c[n], a0, a1, a2, a3, b.x, b.y);
                }
                if (((j + 1) * 16) % (G < 64 ? G : 64) == 0 && (G < 128 || ((kbb + u) & 1))) { /* group ends: fold */
                    const int gi = ks * 16 / G;
                    float2 s0 = sb2<BF16>(__ldg(sbp + gi * 16 + g)), s1 = sb2<BF16>(__ldg(sbp + gi * 16 + g + 8));
                    const float b0 = s0.y - 1024.f * s0.x, b1 = s1.y - 1024.f * s1.x;
#pragma unroll
                    for (int n = 0; n < NTILE; n++) {
                        const float x0 = __ldg(xs + gi * 16 + n * 8 + 2 * q), x1 = __ldg(xs + gi * 16 + n * 8 + 2 * q + 1);
                        acc[n][0] += s0.x * c[n][0] + b0 * x0;
                        acc[n][1] += s0.x * c[n][1] + b0 * x1;
                        acc[n][2] += s1.x * c[n][2] + b1 * x0;
                        acc[n][3] += s1.x * c[n][3] + b1 * x1;
#pragma unroll
                        for (int i = 0; i < 4; i++) c[n][i] = 0.f;
                    }
                }
            }
        }
    }
    __shared__ float red[T_WARPS][NTILE][4][32];
#pragma unroll
    for (int n = 0; n < NTILE; n++)
#pragma unroll
        for (int i = 0; i < 4; i++) red[warp][n][i][lane] = acc[n][i];
    __syncthreads();
    if (warp < NTILE) {
        const int n = warp;
        float v[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[i] = 0.f;
#pragma unroll
            for (int w = 0; w < T_WARPS; w++) v[i] += red[w][n][i][lane];
        }
        const int r[2] = {tile * 16 + g, tile * 16 + g + 8}, t[2] = {n * 8 + 2 * q, n * 8 + 2 * q + 1};
        /* one split: final values; several: partials in a fixed order for q4t_reduce (deterministic) */
        float *dst = gridDim.y > 1 ? part + (size_t)blockIdx.y * n_tok * rows : y;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int rr = r[i / 2], tt = t[i % 2];
            if (rr < rows && tt < n_tok) dst[(size_t)tt * rows + rr] = v[i];
        }
    }
}

/* y[t, r] = sum over splits of part[s, t, r] (+ bias[r]); or just the bias add when there was one split */
__global__ void q4t_reduce_kernel(const float *__restrict__ part, const float *__restrict__ bias, float *__restrict__ y,
                                  int rows, int n_tok, int ksplit) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n = (int64_t)rows * n_tok;
    if (i >= n) return;
    float v = 0.f;
    if (ksplit > 1)
        for (int s = 0; s < ksplit; s++) v += part[s * n + i];
    else
        v = y[i];
    y[i] = v + (bias ? bias[i % rows] : 0.f);
}

/* xf, xs, then split-K partials: ksplit > 1 only below T_TARGET_BLOCKS tiles, so
 * ksplit * 16 * rows <= (T_TARGET_BLOCKS / tiles + 1) * 16 * 16 * tiles <= 2 * T_TARGET_BLOCKS * 256 floats */
#define T_PART_FLOATS ((size_t)2 * T_TARGET_BLOCKS * 256)
extern "C" size_t tl_cu_q4t_ws_bytes(int64_t cols) {
    return (size_t)cols / 16 * 2 * 32 * 8 + (size_t)cols / 32 * 16 * 4 + T_PART_FLOATS * 4 + 512;
}

extern "C" int tl_cu_q4t_gemv(const tl_cu_q4 *w, const float *x, const float *bias, float *y, int n_tok, void *ws,
                              cudaStream_t st, tl_error *e) {
    if (!w->tiled || w->cols % 64 || (w->group != 32 && w->group != 64 && w->group != 128))
        return tl_errf(e, "cuda int4 mma gemv: needs the tiled layout, cols %% 64 == 0, group 32/64/128");
    if (n_tok < 1 || n_tok > 16) return tl_errf(e, "cuda int4 mma gemv: n_tok %d outside 1..16", n_tok);
    const int ntile = n_tok > 8 ? 2 : 1;
    const int nks = (int)(w->cols / 16);
    uint2 *xf = (uint2 *)ws;
    float *xs = (float *)((char *)ws + ((size_t)nks * 2 * 32 * 8));
    const unsigned tiles = (unsigned)((w->rows + 15) / 16);
    int ksplit = (int)((T_TARGET_BLOCKS + tiles - 1) / tiles);
    int kmax = (int)(w->cols / 64 / T_WARPS);
    if (ksplit > kmax) ksplit = kmax;
    if (ksplit < 1) ksplit = 1;
    int64_t warps = (int64_t)nks * ntile, thr = TL_MAX(warps * 32, (int64_t)(w->cols / w->group) * 16);
    float *part = (float *)((char *)xs + ((size_t)w->cols / 32 * 16 * 4 + 255) / 256 * 256);
    TL_ASSERT((size_t)ksplit * n_tok * w->rows <= T_PART_FLOATS || ksplit == 1);
    q4t_xprep_kernel<<<(unsigned)((thr + 255) / 256), 256, 0, st>>>(x, xf, xs, (int)w->cols, w->group, n_tok, ntile);
    dim3 grid(tiles, (unsigned)ksplit);
#define LAUNCH(NT, BF, G) \
    q4t_gemv_kernel<NT, BF, G><<<grid, 32 * T_WARPS, 0, st>>>((const uint4 *)w->codes, w->sb, xf, xs, y, part, \
                                                              (int)w->rows, (int)w->cols, n_tok)
#define LAUNCH_G(NT, BF) \
    do { \
        if (w->group == 32) LAUNCH(NT, BF, 32); \
        else if (w->group == 64) LAUNCH(NT, BF, 64); \
        else LAUNCH(NT, BF, 128); \
    } while (0)
    if (ntile == 1) {
        if (w->sb_bf16) LAUNCH_G(1, true); else LAUNCH_G(1, false);
    } else {
        if (w->sb_bf16) LAUNCH_G(2, true); else LAUNCH_G(2, false);
    }
#undef LAUNCH_G
#undef LAUNCH
    if (ksplit > 1 || bias) {
        int64_t n = (int64_t)n_tok * w->rows;
        q4t_reduce_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(part, bias, y, (int)w->rows, n_tok, ksplit);
    }
    TL_CU_LAUNCHED(e, "q4t_gemv");
}

/* dequantize rows [r0, r0 + nr) (r0 % 16 == 0) of the tiled layout to bf16 [nr, cols]: one thread per lane-uint4 */
template <bool BF16>
__global__ void q4t_dequant_kernel(const uint4 *__restrict__ codes, const uint32_t *__restrict__ sb,
                                   uint32_t *__restrict__ out, int64_t r0, int64_t nr, int64_t rows, int cols, int group) {
    const int nkb = cols / 64, ng = cols / group;
    const int64_t t0 = r0 / 16, ntl = (nr + 15) / 16;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ntl * nkb * 32) return;
    const int lane = (int)(i % 32), kb = (int)((i / 32) % nkb);
    const int64_t t = t0 + i / 32 / nkb;
    const int g = lane / 4, q = lane % 4;
    const uint4 cv = codes[(t * nkb + kb) * 32 + lane];
    const uint32_t wv[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int k0 = kb * 64 + j * 16, gi = k0 / group;
        const uint32_t w = wv[j];
#pragma unroll
        for (int half = 0; half < 2; half++) { /* rows g, g + 8 */
            const int64_t row = t * 16 + g + 8 * half;
            if (row >= rows || row - r0 >= nr) continue;
            const float2 s = sb2<BF16>(sb[(t * ng + gi) * 16 + g + 8 * half]);
#pragma unroll
            for (int hi = 0; hi < 2; hi++) { /* columns 2q (+8 when hi) and the next one */
                const int nib = half + 2 * hi;
                const float a = (float)((w >> (4 * nib)) & 15u) * s.x + s.y;
                const float b = (float)((w >> (4 * (nib + 4))) & 15u) * s.x + s.y;
                const int64_t col = k0 + 8 * hi + 2 * q;
                out[((row - r0) * cols + col) / 2] = (uint32_t)tl_cu_f32_bf16(a) | ((uint32_t)tl_cu_f32_bf16(b) << 16);
            }
        }
    }
}

extern "C" int tl_cu_q4t_dequant_bf16(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st,
                                      tl_error *e) {
    if (!w->tiled || r0 % 16 || r0 < 0 || nr < 0 || r0 + nr > w->rows)
        return tl_errf(e, "cuda int4 tiled dequant: rows [%lld, +%lld) not allowed", (long long)r0, (long long)nr);
    const int64_t n = (nr + 15) / 16 * (w->cols / 64) * 32;
    if (n == 0) return 0;
    if (w->sb_bf16)
        q4t_dequant_kernel<true><<<(unsigned)((n + 255) / 256), 256, 0, st>>>((const uint4 *)w->codes, w->sb,
                                                                              (uint32_t *)out, r0, nr, w->rows,
                                                                              (int)w->cols, w->group);
    else
        q4t_dequant_kernel<false><<<(unsigned)((n + 255) / 256), 256, 0, st>>>((const uint4 *)w->codes, w->sb,
                                                                               (uint32_t *)out, r0, nr, w->rows,
                                                                               (int)w->cols, w->group);
    TL_CU_LAUNCHED(e, "q4t_dequant_bf16");
}

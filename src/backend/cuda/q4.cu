/* q4.cu: INT4 (MLX affine group-wise) kernels: the decode GEMV for 1..16 token rows, dequantize to bf16
 * for the prefill path (then cuBLAS), and small conversions.
 *
 * GEMV: one warp per R=2 output rows; lane l reads 16-byte chunks l, l+32, ... of each row (32 codes,
 * always inside one group since group >= 32), so a warp load is 512 contiguous bytes per row. Per chunk:
 * dot = scale * sum(q_i x_i) + bias * sum(x_i); sum(x_i) is shared by the R rows. fp32 throughout. */
#include "backend/cuda/cu_common.cuh"

#define Q4_R 2    /* rows per warp */
#define Q4_WARPS 4 /* warps per block */

extern "C" void tl_cu_q4_pack_sb(const uint16_t *scales, const uint16_t *biases, size_t n, uint32_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = (uint32_t)scales[i] | ((uint32_t)biases[i] << 16);
}

template <bool BF16> static __device__ __forceinline__ float2 sb_unpack(uint32_t v) {
    if (BF16) return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    return make_float2(tl_cu_f16f((uint16_t)(v & 0xffffu)), tl_cu_f16f((uint16_t)(v >> 16)));
}

/* code i of word w as float, exactly: 2^23 + q built by bit operations, minus 2^23 */
static __device__ __forceinline__ float q4_code(uint32_t w, int i) {
    return __uint_as_float(((w >> (4 * i)) & 15u) | 0x4B000000u) - 8388608.0f;
}

/* y[b, r] for b < n_tok, r < rows. x: [n_tok, cols]; NT: compile-time upper bound of n_tok. */
template <int NT, bool BF16>
__global__ void __launch_bounds__(32 * Q4_WARPS) q4_gemv_kernel(const uint4 *__restrict__ codes,
                                                                const uint32_t *__restrict__ sb,
                                                                const float *__restrict__ x,
                                                                const float *__restrict__ bias, float *__restrict__ y,
                                                                int rows, int cols, int group, int n_tok) {
    const int lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * Q4_WARPS + (threadIdx.x >> 5)) * Q4_R;
    if (row0 >= rows) return;
    const int nchunk = cols / 32, ngroup = cols / group;
    float acc[Q4_R][NT];
#pragma unroll
    for (int r = 0; r < Q4_R; r++)
#pragma unroll
        for (int b = 0; b < NT; b++) acc[r][b] = 0.f;
    bool has[Q4_R];
#pragma unroll
    for (int r = 0; r < Q4_R; r++) has[r] = row0 + r < rows;

    for (int c = lane; c < nchunk; c += 32) {
        uint4 w[Q4_R];
        float2 s[Q4_R];
        const int g = (c * 32) / group;
#pragma unroll
        for (int r = 0; r < Q4_R; r++) {
            int rr = has[r] ? row0 + r : row0;
            w[r] = codes[(size_t)rr * nchunk + c];
            s[r] = sb_unpack<BF16>(sb[(size_t)rr * ngroup + g]);
        }
#pragma unroll
        for (int b = 0; b < NT; b++) {
            if (b >= n_tok) break;
            const float4 *xp = (const float4 *)(x + (size_t)b * cols + c * 32);
            float dq[Q4_R], sx = 0.f;
#pragma unroll
            for (int r = 0; r < Q4_R; r++) dq[r] = 0.f;
#pragma unroll
            for (int k = 0; k < 4; k++) { /* word k of the chunk: codes 8k .. 8k+7 */
                float4 xa = __ldg(xp + 2 * k), xb = __ldg(xp + 2 * k + 1);
                float xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    sx += xv[i];
#pragma unroll
                    for (int r = 0; r < Q4_R; r++) {
                        uint32_t wk = k == 0 ? w[r].x : k == 1 ? w[r].y : k == 2 ? w[r].z : w[r].w;
                        dq[r] = fmaf(q4_code(wk, i), xv[i], dq[r]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < Q4_R; r++) acc[r][b] += s[r].x * dq[r] + s[r].y * sx;
        }
    }
#pragma unroll
    for (int r = 0; r < Q4_R; r++)
#pragma unroll
        for (int b = 0; b < NT; b++) {
            if (b >= n_tok) break;
            float v = tl_cu_warp_sum(acc[r][b]);
            if (lane == 0 && has[r]) y[(size_t)b * rows + row0 + r] = v + (bias ? bias[row0 + r] : 0.f);
        }
}

template <int NT>
static void q4_gemv_launch(const tl_cu_q4 *w, const float *x, const float *bias, float *y, int n_tok,
                           cudaStream_t st) {
    int rows_per_block = Q4_R * Q4_WARPS;
    dim3 grid((unsigned)((w->rows + rows_per_block - 1) / rows_per_block));
    if (w->sb_bf16)
        q4_gemv_kernel<NT, true><<<grid, 32 * Q4_WARPS, 0, st>>>((const uint4 *)w->codes, w->sb, x, bias, y,
                                                               (int)w->rows, (int)w->cols, w->group, n_tok);
    else
        q4_gemv_kernel<NT, false><<<grid, 32 * Q4_WARPS, 0, st>>>((const uint4 *)w->codes, w->sb, x, bias, y,
                                                                (int)w->rows, (int)w->cols, w->group, n_tok);
}

static int q4_check(const tl_cu_q4 *w, tl_error *e) {
    if (w->group != 32 && w->group != 64 && w->group != 128)
        return tl_errf(e, "cuda int4: group size %d not supported (32, 64, 128)", w->group);
    if (w->cols % w->group || w->cols % 32)
        return tl_errf(e, "cuda int4: cols %lld not a multiple of the group size %d", (long long)w->cols, w->group);
    if (w->rows <= 0 || w->rows > INT32_MAX || w->cols > INT32_MAX) return tl_errf(e, "cuda int4: bad shape");
    return 0;
}

extern "C" int tl_cu_q4_gemv(const tl_cu_q4 *w, const float *x, const float *bias, float *y, int n_tok,
                             cudaStream_t st, tl_error *e) {
    if (q4_check(w, e)) return -1;
    if (n_tok < 1 || n_tok > 16) return tl_errf(e, "cuda int4 gemv: n_tok %d outside 1..16", n_tok);
    if (n_tok == 1) q4_gemv_launch<1>(w, x, bias, y, n_tok, st);
    else if (n_tok == 2) q4_gemv_launch<2>(w, x, bias, y, n_tok, st);
    else if (n_tok <= 4) q4_gemv_launch<4>(w, x, bias, y, n_tok, st);
    else if (n_tok <= 8) q4_gemv_launch<8>(w, x, bias, y, n_tok, st);
    else q4_gemv_launch<16>(w, x, bias, y, n_tok, st);
    TL_CU_LAUNCHED(e, "q4_gemv");
}

/* One thread per word: 8 bf16 out, one 16-byte store. */
template <bool BF16>
__global__ void q4_dequant_kernel(const uint32_t *__restrict__ codes, const uint32_t *__restrict__ sb,
                                  uint4 *__restrict__ out, int64_t r0, int64_t nr, int cols, int group) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* word index inside the row range */
    int wpr = cols / 8;
    if (i >= nr * wpr) return;
    int64_t r = r0 + i / wpr;
    int col = (int)(i % wpr) * 8;
    uint32_t w = codes[r * wpr + col / 8];
    float2 s = sb_unpack<BF16>(sb[r * (cols / group) + col / group]);
    uint32_t o[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float a = fmaf(q4_code(w, 2 * k), s.x, s.y), b = fmaf(q4_code(w, 2 * k + 1), s.x, s.y);
        o[k] = (uint32_t)tl_cu_f32_bf16(a) | ((uint32_t)tl_cu_f32_bf16(b) << 16);
    }
    out[i] = make_uint4(o[0], o[1], o[2], o[3]);
}

extern "C" int tl_cu_q4_dequant_bf16(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st,
                                     tl_error *e) {
    if (q4_check(w, e)) return -1;
    if (r0 < 0 || nr < 0 || r0 + nr > w->rows) return tl_errf(e, "cuda int4 dequant: rows out of range");
    int64_t n = nr * (w->cols / 8);
    if (n == 0) return 0;
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (w->sb_bf16)
        q4_dequant_kernel<true><<<blocks, 256, 0, st>>>(w->codes, w->sb, (uint4 *)out, r0, nr, (int)w->cols, w->group);
    else
        q4_dequant_kernel<false><<<blocks, 256, 0, st>>>(w->codes, w->sb, (uint4 *)out, r0, nr, (int)w->cols,
                                                         w->group);
    TL_CU_LAUNCHED(e, "q4_dequant_bf16");
}

__global__ void f32_bf16_kernel(const float *__restrict__ x, uint16_t *__restrict__ y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = tl_cu_f32_bf16(x[i]);
}

extern "C" int tl_cu_f32_to_bf16(const float *x, uint16_t *y, size_t n, cudaStream_t st, tl_error *e) {
    if (n == 0) return 0;
    f32_bf16_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(x, y, n);
    TL_CU_LAUNCHED(e, "f32_to_bf16");
}

__global__ void add_bias_kernel(float *y, const float *bias, int n_tok, int n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)n_tok * n) y[i] += bias[i % n];
}

extern "C" int tl_cu_add_bias(float *y, const float *bias, int n_tok, int n, cudaStream_t st, tl_error *e) {
    size_t total = (size_t)n_tok * n;
    if (total == 0) return 0;
    add_bias_kernel<<<(unsigned)((total + 255) / 256), 256, 0, st>>>(y, bias, n_tok, n);
    TL_CU_LAUNCHED(e, "add_bias");
}

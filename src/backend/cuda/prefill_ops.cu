/* prefill_ops.cu: the bf16-activation ops of the prefill path (batches of > CU_BIG_T tokens), where cuBLAS
 * takes bf16 inputs: producers write bf16 directly instead of fp32 + a conversion pass (the RMSNorm is
 * ops.cu's rmsnorm_kernel<uint16_t>), and the INT4 matrices are dequantized by a kernel whose stores are
 * whole 128-byte lines.
 *   - silu_mul_bf16: gate/up in bf16 (cuBLAS bf16 output), silu(g) * u in fp32, rounded to bf16
 *   - q4t_dequant_bf16_lines: q4t_dequant_kernel's arithmetic per element (bit-identical output), but a
 *     warp stages its 16x64 tile in shared memory and writes 4 rows x 128 bytes per store instruction
 *     (the direct version writes 16-byte pieces of 8 rows per instruction: half-used sectors, ~1.6 TB/s). */
#include "backend/cuda/cu_common.cuh"

/* 8 outputs per thread (n_ff % 8 == 0: 16-byte loads and stores). */
__global__ void silu_mul_bf16_kernel(const uint16_t *__restrict__ gu, uint16_t *__restrict__ out, int n_tok, int n_ff) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= (size_t)n_tok * n_ff) return;
    const size_t t = i / n_ff, j = i % n_ff;
    const uint4 gv = *(const uint4 *)(gu + t * 2 * n_ff + j), uv = *(const uint4 *)(gu + t * 2 * n_ff + n_ff + j);
    const uint32_t g4[4] = {gv.x, gv.y, gv.z, gv.w}, u4[4] = {uv.x, uv.y, uv.z, uv.w};
    uint32_t o[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float g0 = __uint_as_float(g4[k] << 16), g1 = __uint_as_float(g4[k] & 0xffff0000u);
        const float u0 = __uint_as_float(u4[k] << 16), u1 = __uint_as_float(u4[k] & 0xffff0000u);
        o[k] = (uint32_t)tl_cu_f32_bf16(g0 / (1.f + expf(-g0)) * u0) |
               (uint32_t)tl_cu_f32_bf16(g1 / (1.f + expf(-g1)) * u1) << 16;
    }
    *(uint4 *)(out + i) = make_uint4(o[0], o[1], o[2], o[3]);
}

extern "C" int tl_cu_silu_mul_bf16(const uint16_t *gu, uint16_t *out, int n_tok, int n_ff, cudaStream_t st,
                                   tl_error *e) {
    if (n_ff % 8) return tl_errf(e, "cuda silu_mul_bf16: n_ff %d is not a multiple of 8", n_ff);
    const size_t n = (size_t)n_tok * n_ff / 8;
    if (n == 0) return 0;
    silu_mul_bf16_kernel<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(gu, out, n_tok, n_ff);
    TL_CU_LAUNCHED(e, "silu_mul_bf16");
}

/* Tiled INT4 layout (q4_mma.cu): lane (g = lane/4, q = lane%4) of row tile t, 64-column block kb holds a
 * uint4; word j covers columns kb*64 + j*16 ..; its nibble nib = half + 2*hi is (row g + 8 half, column
 * 8 hi + 2q), nibble nib + 4 the next column. sb[(t * ng + group) * 16 + row in tile]. */
template <bool BF16> static __device__ __forceinline__ float2 dq_sb(uint32_t p) {
    if (BF16) return make_float2(__uint_as_float(p << 16), __uint_as_float(p & 0xffff0000u));
    return make_float2(tl_cu_f16f((uint16_t)(p & 0xffffu)), tl_cu_f16f((uint16_t)(p >> 16)));
}

#define DQ_WARPS 8
#define DQ_PITCH 72 /* bf16 per staged row: 64 + 8 (144 bytes: the 8 rows x 4 lanes of a store hit 32 banks) */

/* a warp per (row tile, 64-column block), DQ_WARPS warps a block */
template <bool BF16>
__global__ void __launch_bounds__(32 * DQ_WARPS)
    q4t_dequant_lines_kernel(const uint4 *__restrict__ codes, const uint32_t *__restrict__ sb, uint16_t *__restrict__ out,
                             int64_t r0, int64_t nr, int64_t rows, int cols, int group) {
    __shared__ __align__(16) uint16_t tile[DQ_WARPS][16][DQ_PITCH];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nkb = cols / 64, ng = cols / group;
    const int64_t unit = (int64_t)blockIdx.x * DQ_WARPS + warp, ntl = (nr + 15) / 16;
    if (unit >= ntl * nkb) return; /* whole warp: no block barrier below */
    const int kb = (int)(unit % nkb);
    const int64_t t = r0 / 16 + unit / nkb;
    const int g = lane / 4, q = lane % 4;
    const uint4 cv = codes[(t * nkb + kb) * 32 + lane];
    const uint32_t wv[4] = {cv.x, cv.y, cv.z, cv.w};
    uint16_t(*ts)[DQ_PITCH] = tile[warp];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int k0 = kb * 64 + j * 16, gi = k0 / group;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const float2 s = dq_sb<BF16>(sb[(t * ng + gi) * 16 + g + 8 * half]);
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                const int nib = half + 2 * hi;
                const float a = (float)((wv[j] >> (4 * nib)) & 15u) * s.x + s.y;
                const float b = (float)((wv[j] >> (4 * (nib + 4))) & 15u) * s.x + s.y;
                *(uint32_t *)&ts[g + 8 * half][j * 16 + 8 * hi + 2 * q] =
                    (uint32_t)tl_cu_f32_bf16(a) | ((uint32_t)tl_cu_f32_bf16(b) << 16);
            }
        }
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 4; i++) { /* rows lane/8 + 4i, 16-byte chunk lane%8 */
        const int r = lane / 8 + 4 * i;
        const int64_t row = t * 16 + r;
        if (row >= rows || row - r0 >= nr) continue;
        *(uint4 *)(out + (row - r0) * cols + kb * 64 + (lane % 8) * 8) = *(const uint4 *)&ts[r][(lane % 8) * 8];
    }
}

extern "C" int tl_cu_q4t_dequant_bf16_lines(const tl_cu_q4 *w, int64_t r0, int64_t nr, uint16_t *out, cudaStream_t st,
                                            tl_error *e) {
    if (!w->tiled || r0 % 16 || r0 < 0 || nr < 0 || r0 + nr > w->rows || w->cols % 64)
        return tl_errf(e, "cuda int4 tiled dequant: rows [%lld, +%lld) not allowed", (long long)r0, (long long)nr);
    const int64_t units = (nr + 15) / 16 * (w->cols / 64);
    if (units == 0) return 0;
    const unsigned blocks = (unsigned)((units + DQ_WARPS - 1) / DQ_WARPS);
    if (w->sb_bf16)
        q4t_dequant_lines_kernel<true><<<blocks, 32 * DQ_WARPS, 0, st>>>((const uint4 *)w->codes, w->sb, out, r0, nr,
                                                                         w->rows, (int)w->cols, w->group);
    else
        q4t_dequant_lines_kernel<false><<<blocks, 32 * DQ_WARPS, 0, st>>>((const uint4 *)w->codes, w->sb, out, r0, nr,
                                                                          w->rows, (int)w->cols, w->group);
    TL_CU_LAUNCHED(e, "q4t_dequant_bf16_lines");
}

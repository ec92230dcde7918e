/* cu_common.cuh: helpers shared by the .cu files (launch checks, bf16/fp16 loads, warp reductions). */
#ifndef TL_CU_COMMON_CUH
#define TL_CU_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_ops.h"
extern "C" {
#include "model/model.h"
}

/* After a launch: turn a launch error into -1 + message naming the kernel. */
#define TL_CU_LAUNCHED(e, what)                                                                     \
    do {                                                                                            \
        cudaError_t err_ = cudaGetLastError();                                                      \
        if (err_ != cudaSuccess) return tl_errf(e, "cuda: %s: %s", what, cudaGetErrorString(err_)); \
        return 0;                                                                                   \
    } while (0)

static __device__ __forceinline__ float tl_cu_bf16f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
static __device__ __forceinline__ float tl_cu_f16f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
static __device__ __forceinline__ uint16_t tl_cu_f32_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

static __device__ __forceinline__ float tl_cu_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float tl_cu_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* KV element type by tl_dtype. */
template <int DT> struct tl_cu_kv;
template <> struct tl_cu_kv<TL_F32> {
    typedef float T;
    static __device__ __forceinline__ float load(const float *p, int i) { return p[i]; }
    static __device__ __forceinline__ void store(float *p, int i, float v) { p[i] = v; }
};
template <> struct tl_cu_kv<TL_BF16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(const uint16_t *p, int i) { return tl_cu_bf16f(p[i]); }
    static __device__ __forceinline__ void store(uint16_t *p, int i, float v) { p[i] = tl_cu_f32_bf16(v); }
};
template <> struct tl_cu_kv<TL_F16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(const uint16_t *p, int i) { return tl_cu_f16f(p[i]); }
    static __device__ __forceinline__ void store(uint16_t *p, int i, float v) {
        p[i] = __half_as_ushort(__float2half_rn(v));
    }
};

#endif

/* cu_common.cuh: helpers shared by the .cu files (launch checks, bf16/fp16 loads, warp reductions). */
#ifndef TL_CU_COMMON_CUH
#define TL_CU_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <utility>

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

/* Programmatic dependent launch (sm_90): a kernel launched with tl_cu_launch(..., pdl = 1) may start while
 * the previous kernel in the stream is still running; it must call tl_cu_pdl_wait() before it reads
 * anything an earlier kernel wrote (or writes anything an earlier kernel reads). Work before the wait
 * (address math, loads of weights) overlaps the previous kernel's tail. tl_cu_pdl_trigger() lets the next
 * kernel launch before this one ends. Both are no-ops for a kernel launched without the attribute. */
static __device__ __forceinline__ void tl_cu_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void tl_cu_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/* Decode-step trace (measurement only, TL_CUDA_TRACE=1): a kernel handed a record row writes %globaltimer (ns)
 * for its block b (linear over the grid) at rec[4 b + i]: i = 0 its start, 1 its PDL wait returned, 2 its inputs
 * in (the x prologue / q loaded), 3 its end. NULL: nothing (one predictable branch). */
static __device__ __forceinline__ void tl_cu_mark(unsigned long long *rec, int i) {
    if (!rec) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    rec[4 * (blockIdx.x + gridDim.x * blockIdx.y) + i] = t;
}
/* kernel<<<grid, block, smem, st>>>(args...), with the programmatic-serialization attribute when pdl */
template <typename K, typename... A>
static cudaError_t tl_cu_launch(K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t st, int pdl, A &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

/* RoPE of pair i (of hd / 2) at position pos, shared by ops.cu's rope_kv_kernel and attn_decode.cu's fused
 * kernel so both give the same bits: inv_freq in fp32 from a double pow and the angle in double (as the CPU
 * reference); the rotation with its products rounded explicitly (no compiler-chosen FMA contraction). */
static __device__ __forceinline__ void tl_cu_rope_cs(float theta, int i, int hd, int pos, float *c, float *s) {
    const float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / hd));
    double sd, cd;
    sincos((double)pos * (double)inv, &sd, &cd);
    *c = (float)cd, *s = (float)sd;
}
/* (a, b) rotated by (c, s): (a c - b s, a s + b c) */
static __device__ __forceinline__ float2 tl_cu_rope_rot(float a, float b, float c, float s) {
    return make_float2(fmaf(a, c, -__fmul_rn(b, s)), fmaf(a, s, __fmul_rn(b, c)));
}

/* Flash-decoding merge: the output element d of one (token, head) from its n_split context slices pp[s] = (m, l,
 * acc[D]) (m in units of the scaled score, natural exp), summed in slice order. attn.cu's and attn_decode.cu's
 * merges (kernel and in-kernel) all use it: the same bits; attn_decode.cu's cluster merge repeats its arithmetic
 * on distributed shared memory. */
static __device__ __forceinline__ float tl_cu_merge_one(const float *pp, int n_split, int D, int d) {
    constexpr int U = 8; /* up to U slices: every load issued at once (one L2 round trip), the same arithmetic */
    if (n_split <= U) {
        float m[U], lv[U], av[U];
#pragma unroll
        for (int s = 0; s < U; s++)
            if (s < n_split) m[s] = __ldcg(pp + s * (D + 2)), lv[s] = __ldcg(pp + s * (D + 2) + 1), av[s] = __ldcg(pp + s * (D + 2) + 2 + d);
        float M = -INFINITY;
#pragma unroll
        for (int s = 0; s < U; s++)
            if (s < n_split) M = fmaxf(M, m[s]);
        float L = 0.f, A = 0.f;
        if (M != -INFINITY)
#pragma unroll
            for (int s = 0; s < U; s++)
                if (s < n_split) {
                    const float f = __expf(m[s] - M);
                    L = fmaf(lv[s], f, L);
                    A = fmaf(av[s], f, A);
                }
        return L > 0.f ? A / L : 0.f;
    }
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, __ldcg(pp + s * (D + 2)));
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
        for (int s = 0; s < n_split; s++) {
            const float f = __expf(__ldcg(pp + s * (D + 2)) - M);
            L = fmaf(__ldcg(pp + s * (D + 2) + 1), f, L);
            A = fmaf(__ldcg(pp + s * (D + 2) + 2 + d), f, A);
        }
    return L > 0.f ? A / L : 0.f;
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

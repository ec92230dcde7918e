/* gpu_bench.h: what the GPU benchmarks share: CU() (exit on a CUDA error), median, and the card's own
 * ceilings measured in the same run -- copy_bw (device-to-device copy, bytes read + written, TB/s) and
 * gemm_rate (cuBLAS bf16 8192^3 on random data, fp32 accumulate, TFLOP/s). */
#ifndef TL_GPU_BENCH_H
#define TL_GPU_BENCH_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "model/model.h" /* tl_f32_to_bf16 */
#include "gpu/cu_check.h" /* CU() */
#include "tl_test.h"     /* tl_t_randf */

static inline int tl_b_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static inline double median(double *v, int n) {
    qsort(v, n, sizeof *v, tl_b_cmp_d);
    return v[n / 2];
}
static inline double copy_bw(void) { /* TB/s, read + write */
    size_t n = (size_t)2 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, n));
    CU(cudaMalloc(&b, n));
    CU(cudaMemset(a, 0x3c, n));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    double t[10];
    for (int i = -2; i < 10; i++) {
        cudaEventRecord(e0, 0);
        CU(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
        cudaEventRecord(e1, 0);
        CU(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0) t[i] = ms * 1e-3;
    }
    cudaFree(a), cudaFree(b);
    return 2.0 * n / median(t, 10) / 1e12;
}

static inline double gemm_rate(void) { /* TFLOP/s, bf16 in/out, fp32 accumulate, random data */
    const int N = 8192;
    void *a, *b, *c;
    CU(cudaMalloc(&a, (size_t)N * N * 2));
    CU(cudaMalloc(&b, (size_t)N * N * 2));
    CU(cudaMalloc(&c, (size_t)N * N * 2));
    uint16_t *h = tl_malloc((size_t)N * N * 2);
    unsigned long long s = 3;
    for (size_t i = 0; i < (size_t)N * N; i++) h[i] = tl_f32_to_bf16(tl_t_randf(&s));
    CU(cudaMemcpy(a, h, (size_t)N * N * 2, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(b, h, (size_t)N * N * 2, cudaMemcpyHostToDevice));
    free(h);
    cublasHandle_t bl;
    cublasCreate(&bl);
    const float one = 1, zero = 0;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    double t[10];
    for (int i = -3; i < 10; i++) {
        cudaEventRecord(e0, 0);
        cublasStatus_t st = cublasGemmEx(bl, CUBLAS_OP_T, CUBLAS_OP_N, N, N, N, &one, a, CUDA_R_16BF, N, b, CUDA_R_16BF,
                                         N, &zero, c, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        cudaEventRecord(e1, 0);
        CU(cudaEventSynchronize(e1));
        if (st != CUBLAS_STATUS_SUCCESS) fprintf(stderr, "cublas %d\n", (int)st), exit(2);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0) t[i] = ms * 1e-3;
    }
    cublasDestroy(bl);
    cudaFree(a), cudaFree(b), cudaFree(c);
    return 2.0 * N * N * (double)N / median(t, 10) / 1e12;
}

#endif

/* cu_check.h: CU(x), shared by the GPU tests and benchmarks: run a CUDA runtime call, and on an error print
 * where and which call, then exit(2) (a CUDA error leaves nothing worth checking after it). */
#ifndef TL_CU_CHECK_H
#define TL_CU_CHECK_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#define CU(x)                                                                                     \
    do {                                                                                          \
        cudaError_t err_ = (x);                                                                   \
        if (err_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(err_)); \
            exit(2);                                                                              \
        }                                                                                         \
    } while (0)

#endif

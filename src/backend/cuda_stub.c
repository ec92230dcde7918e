/* cuda_stub.c: tl_backend_cuda_new for builds without nvcc (the real one is backend/cuda/cuda_backend.c). */
#ifndef TL_HAVE_CUDA
#include "backend/backend.h"

tl_backend *tl_backend_cuda_new(float gpu_mem_util, tl_error *e) {
    (void)gpu_mem_util;
    tl_errf(e, "this tinyllm was built without CUDA (nvcc not found at configure time); use --backend cpu");
    return NULL;
}
#else
typedef int tl_cuda_stub_unused; /* ISO C forbids an empty translation unit */
#endif

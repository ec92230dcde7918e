/* flash_scalar.c: the scalar reference of the flash inner kernels (see flash.h for the tiles). */
#include <math.h>

#include "backend/cpu/flash.h"

static void qk(const float *Q, const float *KT, float *S, int M, int nkp, int hd, int ldk, int lds) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < nkp; c++) {
            float dot = 0;
            for (int d = 0; d < hd; d++) dot += Q[(size_t)m * hd + d] * KT[(size_t)d * ldk + c];
            S[(size_t)m * lds + c] = dot;
        }
}

static void pv(float *acc, const float *S, const float *V, int M, int nkp, int hd, int lds) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < nkp; c++) {
            float p = S[(size_t)m * lds + c];
            if (p == 0) continue;
            for (int d = 0; d < hd; d++) acc[(size_t)m * hd + d] += p * V[(size_t)c * hd + d];
        }
}

static float expsum(float *x, int n, float m) {
    float sum = 0;
    for (int i = 0; i < n; i++) sum += (x[i] = expf(x[i] - m));
    return sum;
}

static void load(float *dst, const void *src, int n, tl_dtype t) {
    if (t == TL_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    for (int i = 0; i < n; i++) dst[i] = tl_kv_load(src, i, t);
}

const tl_flash_kern *tl_flash_kern_scalar(void) {
    static const tl_flash_kern k = {"scalar", 1, 1, qk, pv, expsum, load};
    return &k;
}

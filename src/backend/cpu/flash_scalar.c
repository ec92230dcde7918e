/* flash_scalar.c: the scalar reference of the flash inner kernels (see flash.h for the tiles). */
#include <math.h>

#include "backend/cpu/flash.h"

static void qk(const float *const *krow, int nk, const float *QT, int Mp, int hd, float *ST, int ldq) {
    for (int c = 0; c < nk; c++)
        for (int m = 0; m < Mp; m++) {
            float dot = 0;
            for (int d = 0; d < hd; d++) dot += krow[c][d] * QT[(size_t)d * ldq + m];
            ST[(size_t)c * ldq + m] = dot;
        }
}

static void softmax(float *ST, int nk, int Mp, int ldq, float *mrow, float *lrow, float *corr) {
    for (int m = 0; m < Mp; m++) {
        float mx = mrow[m];
        for (int c = 0; c < nk; c++) mx = fmaxf(mx, ST[(size_t)c * ldq + m]);
        float base = mx == -INFINITY ? 0 : mx; /* keeps exp(-inf - base) = 0, never NaN */
        float sum = 0;
        for (int c = 0; c < nk; c++) sum += (ST[(size_t)c * ldq + m] = expf(ST[(size_t)c * ldq + m] - base));
        corr[m] = expf(mrow[m] - base);
        lrow[m] = lrow[m] * corr[m] + sum;
        mrow[m] = mx;
    }
}

static void pv(float *acc, int M, const float *ST, int ldq, const float *const *vrow, int nk, int hd) {
    for (int m = 0; m < M; m++)
        for (int c = 0; c < nk; c++) {
            float p = ST[(size_t)c * ldq + m];
            for (int d = 0; d < hd; d++) acc[(size_t)m * hd + d] += p * vrow[c][d];
        }
}

static void load(float *dst, const void *src, int n, tl_dtype t) {
    for (int i = 0; i < n; i++) dst[i] = tl_kv_load(src, i, t);
}

const tl_flash_kern *tl_flash_kern_scalar(void) {
    static const tl_flash_kern k = {"scalar", 1, 1, qk, softmax, pv, load};
    return &k;
}

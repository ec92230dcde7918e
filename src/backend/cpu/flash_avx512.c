/* flash_avx512.c: AVX-512F flash inner kernels (see flash.h for the tiles; flash_scalar.c is the
 * reference). Register blocking: 4 query rows x 32 columns (2 zmm) = 8 accumulators. Selected only
 * when cpuid reports the AVX-512 tier (core/cpu.h). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/flash.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void qk_block(const float *Q, const float *KT, float *S, int R, int c, int hd, int ldk, int lds) {
    __m512 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m512 k0 = _mm512_loadu_ps(KT + (size_t)d * ldk + c), k1 = _mm512_loadu_ps(KT + (size_t)d * ldk + c + 16);
        for (int r = 0; r < R; r++) {
            __m512 q = _mm512_set1_ps(Q[(size_t)r * hd + d]);
            acc[r][0] = _mm512_fmadd_ps(q, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(q, k1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(S + (size_t)r * lds + c, acc[r][0]);
        _mm512_storeu_ps(S + (size_t)r * lds + c + 16, acc[r][1]);
    }
}

static void qk(const float *Q, const float *KT, float *S, int M, int nkp, int hd, int ldk, int lds) {
    int m = 0;
    for (; m + 4 <= M; m += 4)
        for (int c = 0; c < nkp; c += 32) qk_block(Q + (size_t)m * hd, KT, S + (size_t)m * lds, 4, c, hd, ldk, lds);
    for (; m < M; m++)
        for (int c = 0; c < nkp; c += 32) qk_block(Q + (size_t)m * hd, KT, S + (size_t)m * lds, 1, c, hd, ldk, lds);
}

ALWAYS_INLINE void pv_block(float *acc, const float *S, const float *V, int R, int d, int nkp, int hd, int lds) {
    __m512 a[4][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = _mm512_loadu_ps(acc + (size_t)r * hd + d);
        a[r][1] = _mm512_loadu_ps(acc + (size_t)r * hd + d + 16);
    }
    for (int c = 0; c < nkp; c++) {
        __m512 v0 = _mm512_loadu_ps(V + (size_t)c * hd + d), v1 = _mm512_loadu_ps(V + (size_t)c * hd + d + 16);
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_set1_ps(S[(size_t)r * lds + c]);
            a[r][0] = _mm512_fmadd_ps(p, v0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(p, v1, a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(acc + (size_t)r * hd + d, a[r][0]);
        _mm512_storeu_ps(acc + (size_t)r * hd + d + 16, a[r][1]);
    }
}

static void pv(float *acc, const float *S, const float *V, int M, int nkp, int hd, int lds) {
    int m = 0;
    for (; m + 4 <= M; m += 4)
        for (int d = 0; d < hd; d += 32) pv_block(acc + (size_t)m * hd, S + (size_t)m * lds, V, 4, d, nkp, hd, lds);
    for (; m < M; m++)
        for (int d = 0; d < hd; d += 32) pv_block(acc + (size_t)m * hd, S + (size_t)m * lds, V, 1, d, nkp, hd, lds);
}

/* Same polynomial as flash_avx2.c's exp8; lanes below -87 give exactly 0. */
static inline __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f), hi = _mm512_set1_ps(88.3762626647949f);
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    __m512i n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mov_ps(keep, _mm512_mul_ps(y, _mm512_castsi512_ps(n)));
}

static float expsum(float *x, int n, float m) {
    __m512 vm = _mm512_set1_ps(m), vs = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    float sum = _mm512_reduce_add_ps(vs);
    for (; i < n; i++) sum += (x[i] = expf(x[i] - m));
    return sum;
}

static void load(float *dst, const void *src, int n, tl_dtype t) {
    int i = 0;
    if (t == TL_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = src;
    if (t == TL_F16)
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    else
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                          _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i))), 16)));
    for (; i < n; i++) dst[i] = tl_kv_load(src, i, t);
}

const tl_flash_kern *tl_flash_kern_avx512(void) {
    static const tl_flash_kern k = {"avx512", 32, 32, qk, pv, expsum, load};
    return &k;
}

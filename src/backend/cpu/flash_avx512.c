/* flash_avx512.c: AVX-512F flash inner kernels (see flash.h for the tiles; flash_scalar.c is the
 * reference). Register blocking 8 x 32 (2 zmm, 16 accumulators): qk 8 keys x 32 query rows, pv 8 rows x 32 of
 * head_dim (then 4-wide and 1-wide remainders). Selected only
 * when cpuid reports the AVX-512 tier (core/cpu.h). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/flash.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ST[c + r][m .. m + NV*16) for R keys (R = 1..8, NV = 1..2: constants after inlining) */
ALWAYS_INLINE void qk_block(const float *const *kr, int R, const float *QT, int m, int NV, int hd, int Mp,
                            float *ST, int ldq) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m512 q0 = _mm512_loadu_ps(QT + (size_t)d * Mp + m), q1 = NV > 1 ? _mm512_loadu_ps(QT + (size_t)d * Mp + m + 16) : q0;
        for (int r = 0; r < R; r++) {
            __m512 k = _mm512_set1_ps(*(kr[r] + d));
            acc[r][0] = _mm512_fmadd_ps(k, q0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm512_fmadd_ps(k, q1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(ST + (size_t)r * ldq + m, acc[r][0]);
        if (NV > 1) _mm512_storeu_ps(ST + (size_t)r * ldq + m + 16, acc[r][1]);
    }
}

static void qk(const float *const *krow, int nk, const float *QT, int Mp, int hd, float *ST, int ldq) {
    for (int m = 0; m < Mp; m += 32) {
        int c = 0;
        if (m + 32 <= Mp) {
            for (; c + 8 <= nk; c += 8) qk_block(krow + c, 8, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c + 4 <= nk; c += 4) qk_block(krow + c, 4, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c < nk; c++) qk_block(krow + c, 1, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
        } else { /* the last 16 rows */
            for (; c + 8 <= nk; c += 8) qk_block(krow + c, 8, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c + 4 <= nk; c += 4) qk_block(krow + c, 4, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c < nk; c++) qk_block(krow + c, 1, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
        }
    }
}

/* acc[m + r][d .. d + 32) += sum_c ST[c][m + r] vrow[c][d ..] for R rows */
ALWAYS_INLINE void pv_block(float *acc, int R, const float *ST, int ldq, const float *const *vrow, int nk, int d,
                            int hd) {
    __m512 a[8][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = _mm512_loadu_ps(acc + (size_t)r * hd + d);
        a[r][1] = _mm512_loadu_ps(acc + (size_t)r * hd + d + 16);
    }
    for (int c = 0; c < nk; c++) {
        __m512 v0 = _mm512_loadu_ps(vrow[c] + d), v1 = _mm512_loadu_ps(vrow[c] + d + 16);
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_set1_ps(*((ST + (size_t)c * ldq + r)));
            a[r][0] = _mm512_fmadd_ps(p, v0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(p, v1, a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(acc + (size_t)r * hd + d, a[r][0]);
        _mm512_storeu_ps(acc + (size_t)r * hd + d + 16, a[r][1]);
    }
}

static void pv(float *acc, int M, const float *ST, int ldq, const float *const *vrow, int nk, int hd) {
    int m = 0;
    for (; m + 8 <= M; m += 8)
        for (int d = 0; d < hd; d += 32) pv_block(acc + (size_t)m * hd, 8, ST + m, ldq, vrow, nk, d, hd);
    for (; m + 4 <= M; m += 4)
        for (int d = 0; d < hd; d += 32) pv_block(acc + (size_t)m * hd, 4, ST + m, ldq, vrow, nk, d, hd);
    for (; m < M; m++)
        for (int d = 0; d < hd; d += 32) pv_block(acc + (size_t)m * hd, 1, ST + m, ldq, vrow, nk, d, hd);
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

static void softmax(float *ST, int nk, int Mp, int ldq, float *mrow, float *lrow, float *corr) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int m = 0; m < Mp; m += 16) {
        __m512 mo = _mm512_loadu_ps(mrow + m), mx = mo, sum = _mm512_setzero_ps();
        for (int c = 0; c < nk; c++) mx = _mm512_max_ps(mx, _mm512_loadu_ps(ST + (size_t)c * ldq + m));
        /* rows without any visible key yet: subtract 0 so that exp(-inf) = 0, never NaN */
        __m512 base = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(mx, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
        for (int c = 0; c < nk; c++) {
            __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ST + (size_t)c * ldq + m), base));
            _mm512_storeu_ps(ST + (size_t)c * ldq + m, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 cr = exp16(_mm512_sub_ps(mo, base));
        _mm512_storeu_ps(corr + m, cr);
        _mm512_storeu_ps(lrow + m, _mm512_fmadd_ps(_mm512_loadu_ps(lrow + m), cr, sum));
        _mm512_storeu_ps(mrow + m, mx);
    }
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
    static const tl_flash_kern k = {"avx512", 16, 32, qk, softmax, pv, load};
    return &k;
}

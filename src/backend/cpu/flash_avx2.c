/* flash_avx2.c: AVX2/FMA/F16C flash inner kernels (see flash.h for the tiles; flash_scalar.c is
 * the reference). Register blocking 6 x 16 (2 ymm, 12 accumulators): qk 6 keys x 16 query rows, pv 6 rows x 16 of
 * head_dim (then 3-wide and 1-wide remainders). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/flash.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ST[c + r][m .. m + NV*8) for R keys (R = 1..6, NV = 1..2: constants after inlining) */
ALWAYS_INLINE void qk_block(const float *const *kr, int R, const float *QT, int m, int NV, int hd, int Mp,
                            float *ST, int ldq) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 q0 = _mm256_loadu_ps(QT + (size_t)d * Mp + m), q1 = NV > 1 ? _mm256_loadu_ps(QT + (size_t)d * Mp + m + 8) : q0;
        for (int r = 0; r < R; r++) {
            __m256 k = _mm256_broadcast_ss(kr[r] + d);
            acc[r][0] = _mm256_fmadd_ps(k, q0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm256_fmadd_ps(k, q1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(ST + (size_t)r * ldq + m, acc[r][0]);
        if (NV > 1) _mm256_storeu_ps(ST + (size_t)r * ldq + m + 8, acc[r][1]);
    }
}

static void qk(const float *const *krow, int nk, const float *QT, int Mp, int hd, float *ST, int ldq) {
    for (int m = 0; m < Mp; m += 16) {
        int c = 0;
        if (m + 16 <= Mp) {
            for (; c + 6 <= nk; c += 6) qk_block(krow + c, 6, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c + 3 <= nk; c += 3) qk_block(krow + c, 3, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c < nk; c++) qk_block(krow + c, 1, QT, m, 2, hd, Mp, ST + (size_t)c * ldq, ldq);
        } else { /* the last 8 rows */
            for (; c + 6 <= nk; c += 6) qk_block(krow + c, 6, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c + 3 <= nk; c += 3) qk_block(krow + c, 3, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
            for (; c < nk; c++) qk_block(krow + c, 1, QT, m, 1, hd, Mp, ST + (size_t)c * ldq, ldq);
        }
    }
}

/* acc[m + r][d .. d + 16) += sum_c ST[c][m + r] vrow[c][d ..] for R rows */
ALWAYS_INLINE void pv_block(float *acc, int R, const float *ST, int ldq, const float *const *vrow, int nk, int d,
                            int hd) {
    __m256 a[6][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = _mm256_loadu_ps(acc + (size_t)r * hd + d);
        a[r][1] = _mm256_loadu_ps(acc + (size_t)r * hd + d + 8);
    }
    for (int c = 0; c < nk; c++) {
        __m256 v0 = _mm256_loadu_ps(vrow[c] + d), v1 = _mm256_loadu_ps(vrow[c] + d + 8);
        for (int r = 0; r < R; r++) {
            __m256 p = _mm256_broadcast_ss((ST + (size_t)c * ldq + r));
            a[r][0] = _mm256_fmadd_ps(p, v0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(p, v1, a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(acc + (size_t)r * hd + d, a[r][0]);
        _mm256_storeu_ps(acc + (size_t)r * hd + d + 8, a[r][1]);
    }
}

static void pv(float *acc, int M, const float *ST, int ldq, const float *const *vrow, int nk, int hd) {
    int m = 0;
    for (; m + 6 <= M; m += 6)
        for (int d = 0; d < hd; d += 16) pv_block(acc + (size_t)m * hd, 6, ST + m, ldq, vrow, nk, d, hd);
    for (; m + 3 <= M; m += 3)
        for (int d = 0; d < hd; d += 16) pv_block(acc + (size_t)m * hd, 3, ST + m, ldq, vrow, nk, d, hd);
    for (; m < M; m++)
        for (int d = 0; d < hd; d += 16) pv_block(acc + (size_t)m * hd, 1, ST + m, ldq, vrow, nk, d, hd);
}

/* exp(x) for 8 lanes, Cephes-style: 2^n * p(r), r = x - n ln2, |rel err| ~ 2 ulp on [-87, 88];
 * lanes below -87 (masked scores, -inf) give exactly 0. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.3762626647949f);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(n)), keep);
}

static void softmax(float *ST, int nk, int Mp, int ldq, float *mrow, float *lrow, float *corr) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int m = 0; m < Mp; m += 8) {
        __m256 mo = _mm256_loadu_ps(mrow + m), mx = mo, sum = _mm256_setzero_ps();
        for (int c = 0; c < nk; c++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(ST + (size_t)c * ldq + m));
        /* rows without any visible key yet: subtract 0 so that exp(-inf) = 0, never NaN */
        __m256 base = _mm256_andnot_ps(_mm256_cmp_ps(mx, ninf, _CMP_EQ_OQ), mx);
        for (int c = 0; c < nk; c++) {
            __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ST + (size_t)c * ldq + m), base));
            _mm256_storeu_ps(ST + (size_t)c * ldq + m, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 cr = exp8(_mm256_sub_ps(mo, base));
        _mm256_storeu_ps(corr + m, cr);
        _mm256_storeu_ps(lrow + m, _mm256_fmadd_ps(_mm256_loadu_ps(lrow + m), cr, sum));
        _mm256_storeu_ps(mrow + m, mx);
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
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                          _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i))), 16)));
    for (; i < n; i++) dst[i] = tl_kv_load(src, i, t);
}

const tl_flash_kern *tl_flash_kern_avx2(void) {
    static const tl_flash_kern k = {"avx2", 8, 16, qk, softmax, pv, load};
    return &k;
}

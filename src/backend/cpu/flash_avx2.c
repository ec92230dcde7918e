/* flash_avx2.c: AVX2/FMA/F16C flash inner kernels (see flash.h for the tiles; flash_scalar.c is
 * the reference). Register blocking: 4 query rows x 16 columns (2 ymm) = 8 accumulators. */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/flash.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* S[r][c..c+16) for R rows (R = 1..4, a constant after inlining) */
ALWAYS_INLINE void qk_block(const float *Q, const float *KT, float *S, int R, int c, int hd, int ldk, int lds) {
    __m256 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 k0 = _mm256_loadu_ps(KT + (size_t)d * ldk + c), k1 = _mm256_loadu_ps(KT + (size_t)d * ldk + c + 8);
        for (int r = 0; r < R; r++) {
            __m256 q = _mm256_broadcast_ss(Q + (size_t)r * hd + d);
            acc[r][0] = _mm256_fmadd_ps(q, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(q, k1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(S + (size_t)r * lds + c, acc[r][0]);
        _mm256_storeu_ps(S + (size_t)r * lds + c + 8, acc[r][1]);
    }
}

static void qk(const float *Q, const float *KT, float *S, int M, int nkp, int hd, int ldk, int lds) {
    int m = 0;
    for (; m + 4 <= M; m += 4)
        for (int c = 0; c < nkp; c += 16) qk_block(Q + (size_t)m * hd, KT, S + (size_t)m * lds, 4, c, hd, ldk, lds);
    for (; m < M; m++)
        for (int c = 0; c < nkp; c += 16) qk_block(Q + (size_t)m * hd, KT, S + (size_t)m * lds, 1, c, hd, ldk, lds);
}

/* acc[r][d..d+16) += sum_c S[r][c] V[c][d..d+16) for R rows */
ALWAYS_INLINE void pv_block(float *acc, const float *S, const float *V, int R, int d, int nkp, int hd, int lds) {
    __m256 a[4][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = _mm256_loadu_ps(acc + (size_t)r * hd + d);
        a[r][1] = _mm256_loadu_ps(acc + (size_t)r * hd + d + 8);
    }
    for (int c = 0; c < nkp; c++) {
        __m256 v0 = _mm256_loadu_ps(V + (size_t)c * hd + d), v1 = _mm256_loadu_ps(V + (size_t)c * hd + d + 8);
        for (int r = 0; r < R; r++) {
            __m256 p = _mm256_broadcast_ss(S + (size_t)r * lds + c);
            a[r][0] = _mm256_fmadd_ps(p, v0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(p, v1, a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(acc + (size_t)r * hd + d, a[r][0]);
        _mm256_storeu_ps(acc + (size_t)r * hd + d + 8, a[r][1]);
    }
}

static void pv(float *acc, const float *S, const float *V, int M, int nkp, int hd, int lds) {
    int m = 0;
    for (; m + 4 <= M; m += 4)
        for (int d = 0; d < hd; d += 16) pv_block(acc + (size_t)m * hd, S + (size_t)m * lds, V, 4, d, nkp, hd, lds);
    for (; m < M; m++)
        for (int d = 0; d < hd; d += 16) pv_block(acc + (size_t)m * hd, S + (size_t)m * lds, V, 1, d, nkp, hd, lds);
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

static float expsum(float *x, int n, float m) {
    __m256 vm = _mm256_set1_ps(m), vs = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(vs), _mm256_extractf128_ps(vs, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    float sum = _mm_cvtss_f32(s4);
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
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(
                                          _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i))), 16)));
    for (; i < n; i++) dst[i] = tl_kv_load(src, i, t);
}

const tl_flash_kern *tl_flash_kern_avx2(void) {
    static const tl_flash_kern k = {"avx2", 16, 16, qk, pv, expsum, load};
    return &k;
}

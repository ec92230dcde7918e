/* ops_avx2.c: AVX2 + FMA SiLU * up for the CPU backend (ops.c's scalar loop with expf is the
 * reference; test_ops compares). Why: 4864 expf calls per layer per token were the largest piece
 * of single-threaded work in a 0.5B INT4 decode (~2.5% of the token, the pool worker idle). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/cpu_ops.h"

/* e^x: n = round(x log2 e), r = x - n ln 2 (two-part ln 2), e^r = 1 + r + r^2 p(r) with Cephes
 * expf's degree-5 p (|r| <= ln2/2: ~1-2 ulp), times 2^n built in the exponent field. x is clamped to
 * [-87.3, 88.3] so that n stays in [-126, 127] (normal); above 88.3 the result is +inf, as expf's. */
static inline __m256 exp256(__m256 x0) {
    __m256 x = _mm256_min_ps(_mm256_max_ps(x0, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    e = _mm256_mul_ps(e, _mm256_castsi256_ps(pow2n));
    return _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x0, _mm256_set1_ps(88.3f), _CMP_GT_OQ));
}

/* gate[i] = gate[i] / (1 + e^-gate[i]) * up[i]; a tail of n % 8 goes through the scalar formula. */
size_t tl_cpu_silu_mul_avx2(float *gate, const float *up, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    return i;
}

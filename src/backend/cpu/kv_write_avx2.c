/* kv_write_avx2.c: fp32 -> f16 (F16C, round to nearest even) and fp32 -> bf16 (round to nearest
 * even, NaN kept quiet: the same rule as core's tl_f32_to_bf16) for KV rows. kv_write.c's scalar
 * loop is the reference; test_attention compares the stored bits. */
#include <immintrin.h>

#include "backend/cpu/flash.h"

static inline __m128i bf16x8(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, nan, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    /* 8 x u32 (each <= 0xffff) -> 8 x u16 in order */
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    return _mm256_castsi256_si128(p);
}

void tl_kv_store_row_avx2(void *dst, const float *src, int n, tl_dtype t) {
    uint16_t *d = dst;
    int i = 0;
    if (t == TL_F16)
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    else
        for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(d + i), bf16x8(_mm256_loadu_ps(src + i)));
    for (; i < n; i++) d[i] = t == TL_F16 ? tl_f32_to_f16(src[i]) : tl_f32_to_bf16(src[i]);
}

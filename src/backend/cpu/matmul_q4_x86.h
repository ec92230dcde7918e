/* matmul_q4_x86.h: AVX2 pieces shared by the 4-row int8 x int4 kernels of matmul_avx2.c and matmul_avx512.c
 * (both compiled with -mavx2; include only there). */
#ifndef TL_MATMUL_Q4_X86_H
#define TL_MATMUL_Q4_X86_H
#include <immintrin.h>

#include "backend/cpu/matmul_impl.h"

/* The end of one token of a 4-row block: acc = [rows r..r+3 | rows r..r+3] partial sums (the scale terms),
 * plus the bias term sum_g b[r+i, g] * gsum[t, g] (four row dots over bf [4][ngp], 8 groups a step; gsum read
 * with a masked load at the tail, bf zero-padded to ngp), folded and stored to y[0..3]. The same order for
 * both ISAs: AVX-512 == AVX2 bit for bit. */
static inline void tl_mm_q4_finish_4rows(const float *gs, const float *bf, int64_t ng, int64_t ngp, __m256 acc,
                                         float *y) {
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(ng & 7)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 b[4];
    for (int i = 0; i < 4; i++) b[i] = _mm256_setzero_ps();
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        __m256 gv = _mm256_loadu_ps(gs + g);
        for (int i = 0; i < 4; i++) b[i] = _mm256_fmadd_ps(_mm256_loadu_ps(bf + i * ngp + g), gv, b[i]);
    }
    if (g < ng) {
        __m256 gv = _mm256_maskload_ps(gs + g, tail);
        for (int i = 0; i < 4; i++) b[i] = _mm256_fmadd_ps(_mm256_loadu_ps(bf + i * ngp + g), gv, b[i]);
    }
    /* [r0 r1 r2 r3 | r0 r1 r2 r3] partial sums, the same lane order as acc */
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b[0], b[1]), _mm256_hadd_ps(b[2], b[3]));
    __m256 v8 = _mm256_add_ps(acc, h);
    _mm_storeu_ps(y, _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1)));
}

#endif

/* matmul_avx512.c: AVX-512 (F/BW/VL/DQ + VNNI) kernels for the matmul driver (see matmul_impl.h).
 * The AVX2 kernels' structure with 16-wide fp32 vectors for the dense decode dots, dequantization
 * and the micro-GEMM, and VNNI vpdpbusd (u8 x s8 -> s32 accumulate) for the Q4 x int8 dot in
 * place of vpmaddubsw + vpmaddwd. Selected only when cpuid reports the whole AVX-512 tier.
 * Scalar references: matmul.c. */
#include <immintrin.h>

#include "backend/cpu/matmul_impl.h"
#include "backend/cpu/matmul_q4_x86.h"

#define AI static inline __attribute__((always_inline))

AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hsum16(__m512 v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1))); }

AI __m512 load_bf16x16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
AI __m512 load_f16x16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

AI float sb1(tl_dtype t, const void *p, int64_t i) {
    const uint16_t *h = p;
    return t == TL_BF16 ? tl_bf16_to_f32(h[i]) : t == TL_F16 ? tl_f16_to_f32(h[i]) : ((const float *)p)[i];
}

AI __m256 load_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
AI __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* out[0..n) = fp32 of n scales/biases (for per-row conversion ahead of the Q4 loops). */
static void sb_row(tl_dtype t, const void *p, int64_t off, int64_t n, float *out) {
    int64_t i = 0;
    const uint16_t *h = (const uint16_t *)p + off;
    if (t == TL_F16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load_f16(h + i));
    else if (t == TL_BF16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load_bf16(h + i));
    for (; i < n; i++) out[i] = sb1(t, p, off + i);
}

/* ---- dequantize W[r, k0..k0+n) ---- */
static void deq_avx512(const tl_tensor *w, int64_t r, int64_t k0, int n, float *out) {
    int64_t cols = w->cols;
    int i = 0;
    switch (w->type) {
    case TL_F32: memcpy(out, (const float *)w->data + r * cols + k0, (size_t)n * sizeof(float)); return;
    case TL_F16: {
        const uint16_t *p = (const uint16_t *)w->data + r * cols + k0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load_f16x16(p + i));
        for (; i < n; i++) out[i] = tl_f16_to_f32(p[i]);
        return;
    }
    case TL_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + r * cols + k0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load_bf16x16(p + i));
        for (; i < n; i++) out[i] = tl_bf16_to_f32(p[i]);
        return;
    }
    case TL_Q4: { /* k0 and n are multiples of the group (driver: KC % group == 0, cols % group == 0) */
        const uint32_t *q = (const uint32_t *)w->data + r * (cols / 8) + k0 / 8;
        int64_t g0 = r * (cols / w->group) + k0 / w->group;
        const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), m4 = _mm256_set1_epi32(15);
        for (int g = 0; g * w->group < n; g++) {
            __m256 s = _mm256_set1_ps(sb1(w->sb_type, w->scales, g0 + g));
            __m256 b = _mm256_set1_ps(sb1(w->sb_type, w->biases, g0 + g));
            for (int j = g * w->group; j < (g + 1) * w->group; j += 8) {
                __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)q[j / 8]), shifts), m4);
                _mm256_storeu_ps(out + j, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), s, b));
            }
        }
        return;
    }
    case TL_Q8: {
        const int8_t *q = (const int8_t *)w->data + r * cols + k0;
        const float *sc = (const float *)w->scales + r * (cols / w->group);
        if (w->group % 8 == 0 && k0 % w->group == 0) {
            for (; i + 8 <= n; i += 8) {
                __m256i c = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + i)));
                __m256 s = _mm256_set1_ps(sc[(k0 + i) / w->group]);
                _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(c), s));
            }
        }
        for (; i < n; i++) out[i] = (float)q[i] * sc[(k0 + i) / w->group];
        return;
    }
    }
    TL_ASSERT(0 && "unknown dtype");
}

/* ---- fp32 micro-GEMM: y[t, i] += x[t, :n] . p[i, :n] for a T x R tile ---- */
AI void micro(const float *x, int64_t ldx, const float *p, int ldp, float *y, int64_t ldy, int n, const int T,
              const int R) {
    __m512 acc[4][3];
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 pv[3];
        for (int r = 0; r < R; r++) pv[r] = _mm512_loadu_ps(p + r * ldp + k);
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_loadu_ps(x + t * ldx + k);
            for (int r = 0; r < R; r++) acc[t][r] = _mm512_fmadd_ps(xv, pv[r], acc[t][r]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            float s = hsum16(acc[t][r]);
            for (int kk = k; kk < n; kk++) s += x[t * ldx + kk] * p[r * ldp + kk];
            y[t * ldy + r] += s;
        }
}

static void gemm_avx512(const float *x, int64_t ldx, const float *p, int ldp, float *y, int64_t ldy, int nt, int nr,
                      int n) {
    for (int t0 = 0; t0 < nt; t0 += 4) {
        int T = TL_MIN(4, nt - t0);
        for (int r0 = 0; r0 < nr; r0 += 3) {
            int R = TL_MIN(3, nr - r0);
            const float *xt = x + t0 * ldx, *pr = p + (int64_t)r0 * ldp;
            float *yt = y + t0 * ldy + r0;
            switch (T * 4 + R) {
#define CASE(a, b)                                                                                               \
    case a * 4 + b: micro(xt, ldx, pr, ldp, yt, ldy, n, a, b); break;
                CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(2, 1) CASE(2, 2) CASE(2, 3)
                CASE(3, 1) CASE(3, 2) CASE(3, 3) CASE(4, 1) CASE(4, 2) CASE(4, 3)
#undef CASE
            }
        }
    }
}

/* ---- dense decode: R rows x T tokens per pass, weights converted in registers ---- */
AI __m512 load_w(tl_dtype t, const void *base, int64_t i) {
    if (t == TL_F32) return _mm512_loadu_ps((const float *)base + i);
    if (t == TL_BF16) return load_bf16x16((const uint16_t *)base + i);
    return load_f16x16((const uint16_t *)base + i);
}
AI float load_w1(tl_dtype t, const void *base, int64_t i) {
    if (t == TL_F32) return ((const float *)base)[i];
    return sb1(t, base, i);
}

AI void dense_tile(tl_dtype ty, const tl_tensor *w, int64_t r, const float *x, int64_t ldx, float *y, int64_t ldy,
                   const int T, const int R) {
    int64_t cols = w->cols;
    size_t es = ty == TL_F32 ? 4 : 2;
    const char *base = (const char *)w->data + (size_t)(r * cols) * es;
    __m512 acc[4][4];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < R; i++) acc[t][i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m512 wv[4];
        for (int i = 0; i < R; i++) wv[i] = load_w(ty, base + (size_t)(i * cols) * es, k);
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_loadu_ps(x + t * ldx + k);
            for (int i = 0; i < R; i++) acc[t][i] = _mm512_fmadd_ps(xv, wv[i], acc[t][i]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < R; i++) {
            float s = hsum16(acc[t][i]);
            for (int64_t kk = k; kk < cols; kk++) s += x[t * ldx + kk] * load_w1(ty, base + (size_t)(i * cols) * es, kk);
            y[t * ldy + r + i] = s;
        }
}

/* T tokens: 4 rows at a time for T <= 2 (4-8 accumulators), 2 rows for T = 3, 4; single tail rows. */
AI void dense_rows(tl_dtype ty, const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, float *y,
                   int64_t ldy, const int T) {
    const int R = T <= 2 ? 4 : 2;
    int64_t r = r0;
    for (; r + R <= r1; r += R) dense_tile(ty, w, r, x, ldx, y, ldy, T, R);
    for (; r < r1; r++) dense_tile(ty, w, r, x, ldx, y, ldy, T, 1);
}

#define DENSE_T(ty)                                                                                               \
    static void dense_##ty(const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int nt, float *y, \
                           int64_t ldy) {                                                                         \
        switch (nt) {                                                                                             \
        case 1: dense_rows(ty, w, r0, r1, x, ldx, y, ldy, 1); break;                                              \
        case 2: dense_rows(ty, w, r0, r1, x, ldx, y, ldy, 2); break;                                              \
        case 3: dense_rows(ty, w, r0, r1, x, ldx, y, ldy, 3); break;                                              \
        default: dense_rows(ty, w, r0, r1, x, ldx, y, ldy, 4); break;                                             \
        }                                                                                                         \
    }
DENSE_T(TL_F32)
DENSE_T(TL_F16)
DENSE_T(TL_BF16)

static void dot_dense_avx512(const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int nt, float *y,
                           int64_t ldy) {
    TL_ASSERT(nt >= 1 && nt <= TL_MM_DIRECT_T);
    if (w->type == TL_F32) dense_TL_F32(w, r0, r1, x, ldx, nt, y, ldy);
    else if (w->type == TL_F16) dense_TL_F16(w, r0, r1, x, ldx, nt, y, ldy);
    else dense_TL_BF16(w, r0, r1, x, ldx, nt, y, ldy);
}

/* ---- Q4 x int8 activations, one weight row per pass (the previous kernel; tail rows) ---- */
AI __m256i dot_i8(__m256i lo, __m256i hi, const int8_t *xq) {
    __m256i a = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256((const __m256i *)xq));
    return _mm256_dpbusd_epi32(a, hi, _mm256_loadu_si256((const __m256i *)(xq + 32)));
}

AI void q4i8_row(const tl_tensor *w, int64_t r, const tl_mm_xq *xq, float *y, int64_t ldy, float *sf, float *bf,
                 const int T) {
    int64_t cols = w->cols, G = w->group, ng = cols / G, nc = cols / 64, nc8 = TL_CDIV(cols, 64) * 8;
    const int lg = __builtin_ctz((unsigned)G); /* G is 32, 64 or 128: shifts, not divisions, per chunk */
    sb_row(w->sb_type, w->scales, r * ng, ng, sf);
    sb_row(w->sb_type, w->biases, r * ng, ng, bf);
    const uint8_t *q = (const uint8_t *)((const uint32_t *)w->data + r * (cols / 8));
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + c * 32));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        __m256 s = _mm256_set_m128(_mm_broadcast_ss(sf + ((c * 64 + 32) >> lg)), _mm_broadcast_ss(sf + ((c * 64) >> lg)));
        for (int t = 0; t < T; t++) {
            __m256i is = dot_i8(lo, hi, xq->q + t * cols + c * 64);
            __m256 sd = _mm256_mul_ps(s, _mm256_load_ps(xq->d8 + t * nc8 + c * 8));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), sd, acc[t]);
        }
    }
    float tail[4] = {0, 0, 0, 0};
    if (cols % 64) { /* one last 32-block: 16 bytes, xq stored [even 16, odd 16] */
        const __m128i m4x = _mm_set1_epi8(15), ones = _mm_set1_epi16(1);
        __m128i v = _mm_loadu_si128((const __m128i *)(q + nc * 32));
        __m128i lo = _mm_and_si128(v, m4x), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4x);
        for (int t = 0; t < T; t++) {
            const int8_t *xp = xq->q + t * cols + nc * 64;
            __m128i a = _mm_maddubs_epi16(lo, _mm_loadu_si128((const __m128i *)xp));
            __m128i b = _mm_maddubs_epi16(hi, _mm_loadu_si128((const __m128i *)(xp + 16)));
            __m128i is = _mm_madd_epi16(_mm_add_epi16(a, b), ones);
            is = _mm_add_epi32(is, _mm_shuffle_epi32(is, 0x4e));
            is = _mm_add_epi32(is, _mm_shuffle_epi32(is, 0xb1));
            tail[t] = (float)_mm_cvtsi128_si32(is) * sf[(nc * 64) / G] * xq->d8[t * nc8 + nc * 8];
        }
    }
    for (int t = 0; t < T; t++) { /* bias term: sum_g b[g] * gsum[t, g] */
        const float *gs = xq->gsum + t * ng;
        __m256 bacc = _mm256_setzero_ps();
        int64_t g = 0;
        for (; g + 8 <= ng; g += 8) bacc = _mm256_fmadd_ps(_mm256_loadu_ps(bf + g), _mm256_loadu_ps(gs + g), bacc);
        float bsum = hsum(bacc);
        for (; g < ng; g++) bsum += bf[g] * gs[g];
        y[t * ldy + r] = hsum(acc[t]) + tail[t] + bsum;
    }
}

/* The previous kernel: one weight row per pass (per-row scale conversion, two hsums per row). */
static void dot_q4i8_rows_avx512(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
                                 int64_t ldy) {
    float sf[1024], bf[1024]; /* one row's scales / biases in fp32 */
    int64_t ng = w->cols / w->group;
    if (ng > 1024) { /* wider than any model we know; stay correct */
        tl_mm_scalar.dot_q4i8(w, r0, r1, xq, nt, y, ldy);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        switch (nt) {
        case 1: q4i8_row(w, r, xq, y, ldy, sf, bf, 1); break;
        case 2: q4i8_row(w, r, xq, y, ldy, sf, bf, 2); break;
        case 3: q4i8_row(w, r, xq, y, ldy, sf, bf, 3); break;
        default: q4i8_row(w, r, xq, y, ldy, sf, bf, 4); break;
        }
    }
}

/* ---- Q4 x int8, four weight rows per pass (VNNI) ----
 * The AVX2 kernel's structure (matmul_avx2.c, q4i8_4rows): 4 rows share each x load, their int32
 * block sums are reduced together to one vector [r0..r3 of block 0 | r0..r3 of block 1] and scaled
 * in fp32 exactly as there (same vectors, same fold order: the outputs equal the AVX2 kernel's).
 * What AVX-512 changes is the integer part: two rows per zmm (row i's 32 bytes of codes in the low
 * half, row i+1's in the high half) against x broadcast to both halves, so one vpdpbusd does 128
 * u8 x s8 products straight into int32 (AVX2: vpmaddubsw + vpaddw + vphaddw x3 + vpmaddwd), and the
 * 4-row reduction is two vpermt2d + one 256-bit fold instead of three vphaddw. Up to 8 tokens a
 * tile (32 zmm registers): the codes' unpacking is shared by twice the tokens of the AVX2 tile. */
#define Q4_T512 8

/* Q01, Q23: int32 dot partials of rows (0, 1) and (2, 3); element 8*j + 4*b + p of Q01 is part p
 * (4 u8 x s8 products each, p < 4) of row j's 32-block b (b < 2), same for Q23 with rows 2 + j.
 * Returns [sum_p row 0..3 of block 0 | sum_p row 0..3 of block 1]: vpermt2d takes parts (0, 2)
 * and (1, 3) of output lane o = 4*b + row into lanes o and o + 8, then two adds fold them. */
AI __m256i reduce_4rows(__m512i q01, __m512i q23) {
    const __m512i i02 = _mm512_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28, 2, 10, 18, 26, 6, 14, 22, 30);
    const __m512i i13 = _mm512_setr_epi32(1, 9, 17, 25, 5, 13, 21, 29, 3, 11, 19, 27, 7, 15, 23, 31);
    __m512i s = _mm512_add_epi32(_mm512_permutex2var_epi32(q01, i02, q23), _mm512_permutex2var_epi32(q01, i13, q23));
    return _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
}

/* Rows r..r+3, T <= Q4_T512 tokens, cols % 64 == 0. st: [ng][4] scales (tl_mm_sb_4rows); bf:
 * [4][ngp] biases (tl_mm_b_4rows). y[t*ldy + r + i] for i < 4, t < T. */
AI void q4i8_4rows(const tl_tensor *w, int64_t r, const tl_mm_xq *xq, float *y, int64_t ldy, const float *st,
                   const float *bf, const int T) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, nc = cols / 64, rs = cols / 2;
    const uint8_t *q = (const uint8_t *)((const uint32_t *)w->data + r * (cols / 8));
    const __m512i m4 = _mm512_set1_epi8(15);
    __m256 acc[Q4_T512];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        /* the rows' scales for the chunk's two 32-blocks: [s(r..r+3, block 2c) | s(r..r+3, block 2c+1)] */
        __m256 s = G == 32   ? _mm256_loadu_ps(st + c * 8)
                   : G == 64 ? _mm256_broadcast_ps((const __m128 *)(st + c * 4))
                             : _mm256_broadcast_ps((const __m128 *)(st + (c >> 1) * 4));
        /* the 4 rows are one contiguous 4*rs-byte run: 128 bytes per chunk step */
        _mm_prefetch((const char *)q + TL_Q4_PF + c * 128, _MM_HINT_T0);
        _mm_prefetch((const char *)q + TL_Q4_PF + c * 128 + 64, _MM_HINT_T0);
        const uint8_t *qc = q + c * 32;
        __m512i v01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)qc)),
                                         _mm256_loadu_si256((const __m256i *)(qc + rs)), 1);
        __m512i v23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(qc + 2 * rs))),
                                         _mm256_loadu_si256((const __m256i *)(qc + 3 * rs)), 1);
        /* low nibbles = even columns (match x bytes 0-31), high nibbles = odd columns (bytes 32-63) */
        __m512i lo01 = _mm512_and_si512(v01, m4), hi01 = _mm512_and_si512(_mm512_srli_epi16(v01, 4), m4);
        __m512i lo23 = _mm512_and_si512(v23, m4), hi23 = _mm512_and_si512(_mm512_srli_epi16(v23, 4), m4);
        for (int t = 0; t < T; t++) {
            const int8_t *xp = xq->q + t * cols + c * 64;
            __m512i xa = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xp));
            __m512i xb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xp + 32)));
            /* |int32 lane| <= 8 * 15 * 127: exact */
            __m512i q01 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo01, xa), hi01, xb);
            __m512i q23 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo23, xa), hi23, xb);
            __m256i h = reduce_4rows(q01, q23);
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(h), _mm256_load_ps(xq->d8 + t * nc * 8 + c * 8));
            acc[t] = _mm256_fmadd_ps(f, s, acc[t]);
        }
    }
    const int64_t ngp = (ng + 7) & ~(int64_t)7;
    for (int t = 0; t < T; t++) tl_mm_q4_finish_4rows(xq->gsum + t * ng, bf, ng, ngp, acc[t], y + t * ldy + r);
}

static void dot_q4i8_avx512(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
                            int64_t ldy) {
    _Alignas(32) float st[4 * 512], bt[4 * 512]; /* rows' scales [ng][4], biases [4][ngp] */
    int64_t ng = w->cols / w->group, r = r0;
    if (w->cols % 64 == 0 && ng <= 512) {
        for (; r + 4 <= r1; r += 4) {
            tl_mm_sb_4rows(w->sb_type, w->scales, r, ng, st);
            tl_mm_b_4rows(w->sb_type, w->biases, r, ng, (ng + 7) & ~(int64_t)7, bt);
            for (int t0 = 0; t0 < nt; t0 += Q4_T512) { /* all tokens over these 4 rows (in L1) */
                tl_mm_xq v = tl_mm_xq_at(xq, t0);
                float *yt = y + t0 * ldy;
                switch (TL_MIN(Q4_T512, nt - t0)) {
                case 1: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 1); break;
                case 2: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 2); break;
                case 3: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 3); break;
                case 4: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 4); break;
                case 5: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 5); break;
                case 6: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 6); break;
                case 7: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 7); break;
                default: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 8); break;
                }
            }
        }
    }
    for (int t0 = 0; r < r1 && t0 < nt; t0 += TL_MM_DIRECT_T) { /* leftover rows, a last 32-block, huge ng */
        tl_mm_xq v = tl_mm_xq_at(xq, t0);
        dot_q4i8_rows_avx512(w, r, r1, &v, TL_MIN(TL_MM_DIRECT_T, nt - t0), y + t0 * ldy, ldy);
    }
}

const tl_mm_kernels tl_mm_avx512 = {"avx512", deq_avx512, gemm_avx512, dot_dense_avx512, dot_q4i8_avx512,
                                    tl_mm_quantize_x_avx2, 0};
const tl_mm_kernels tl_mm_avx512_rows = {"avx512-rows", deq_avx512, gemm_avx512, dot_dense_avx512,
                                         dot_q4i8_rows_avx512, tl_mm_quantize_x, TL_MM_DIRECT_T};

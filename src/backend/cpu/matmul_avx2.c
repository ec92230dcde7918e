/* matmul_avx2.c: AVX2 + FMA + F16C kernels for the matmul driver (see matmul_impl.h):
 * SIMD dequantization into fp32 panels, a 4-token x 3-row register-blocked micro-GEMM, dense
 * decode dots that convert bf16/f16 in registers, and the Q4 x int8-activation dot
 * (vpmaddubsw on 4-bit codes: 64 weights per 32-byte load). Scalar references: matmul.c. */
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
static void deq_avx2(const tl_tensor *w, int64_t r, int64_t k0, int n, float *out) {
    int64_t cols = w->cols;
    int i = 0;
    switch (w->type) {
    case TL_F32: memcpy(out, (const float *)w->data + r * cols + k0, (size_t)n * sizeof(float)); return;
    case TL_F16: {
        const uint16_t *p = (const uint16_t *)w->data + r * cols + k0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load_f16(p + i));
        for (; i < n; i++) out[i] = tl_f16_to_f32(p[i]);
        return;
    }
    case TL_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + r * cols + k0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load_bf16(p + i));
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
    __m256 acc[4][3];
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) acc[t][r] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 pv[3];
        for (int r = 0; r < R; r++) pv[r] = _mm256_loadu_ps(p + r * ldp + k);
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
            for (int r = 0; r < R; r++) acc[t][r] = _mm256_fmadd_ps(xv, pv[r], acc[t][r]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            float s = hsum(acc[t][r]);
            for (int kk = k; kk < n; kk++) s += x[t * ldx + kk] * p[r * ldp + kk];
            y[t * ldy + r] += s;
        }
}

static void gemm_avx2(const float *x, int64_t ldx, const float *p, int ldp, float *y, int64_t ldy, int nt, int nr,
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
AI __m256 load_w(tl_dtype t, const void *base, int64_t i) {
    if (t == TL_F32) return _mm256_loadu_ps((const float *)base + i);
    if (t == TL_BF16) return load_bf16((const uint16_t *)base + i);
    return load_f16((const uint16_t *)base + i);
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
    __m256 acc[4][4];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < R; i++) acc[t][i] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= cols; k += 8) {
        __m256 wv[4];
        for (int i = 0; i < R; i++) wv[i] = load_w(ty, base + (size_t)(i * cols) * es, k);
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
            for (int i = 0; i < R; i++) acc[t][i] = _mm256_fmadd_ps(xv, wv[i], acc[t][i]);
        }
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < R; i++) {
            float s = hsum(acc[t][i]);
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

static void dot_dense_avx2(const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int nt, float *y,
                           int64_t ldy) {
    TL_ASSERT(nt >= 1 && nt <= TL_MM_DIRECT_T);
    if (w->type == TL_F32) dense_TL_F32(w, r0, r1, x, ldx, nt, y, ldy);
    else if (w->type == TL_F16) dense_TL_F16(w, r0, r1, x, ldx, nt, y, ldy);
    else dense_TL_BF16(w, r0, r1, x, ldx, nt, y, ldy);
}

/* ---- Q4 x int8 activations ---- */
AI __m256i dot_i8(__m256i lo, __m256i hi, const int8_t *xq) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq));
    __m256i b = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 32)));
    return _mm256_madd_epi16(_mm256_add_epi16(a, b), ones); /* |a+b| <= 2*2*15*127: no int16 overflow */
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
static void dot_q4i8_rows_avx2(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
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

/* ---- Q4 x int8, four weight rows per pass ----
 * Why: at n_embd = 896 a row is only 14 chunks of 64 weights, so per-row work (scale conversion,
 * two horizontal sums, the bias dot) cost as much as the products. Four rows share each x load,
 * their int32 block sums are reduced together (one hadd tree -> [r0..r3 of block 0 | r0..r3 of
 * block 1]), scaled by d[t, block] and by the rows' group scales in one vector, and stored as four
 * contiguous outputs. */

AI float h2f(tl_dtype t, uint16_t h) { return t == TL_BF16 ? tl_bf16_to_f32(h) : _cvtsh_ss(h); }
AI __m256 load8_sb(tl_dtype t, const uint16_t *p) { return t == TL_BF16 ? load_bf16(p) : load_f16(p); }

/* out[g*4 + i] = fp32 of p[(r + i) * ng + g] for i < 4, g < ng: rows r..r+3 transposed so that one
 * 128-bit load gives a group's four rows. */
AI void sb_4x8(tl_dtype t, const uint16_t *h, int64_t ng, int64_t g, float *out) {
    __m256 a = load8_sb(t, h + g), b = load8_sb(t, h + ng + g), c = load8_sb(t, h + 2 * ng + g),
           d = load8_sb(t, h + 3 * ng + g);
    __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b); /* [a0 b0 a1 b1|a4..], [a2 b2 a3 b3|..] */
    __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee); /* groups 0|4, 1|5 */
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee); /* groups 2|6, 3|7 */
    float *o = out + g * 4;
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}

/* out[g*4 + i] = fp32 of p[(r + i) * ng + g] for i < 4, g < ng: rows r..r+3 transposed so that one
 * 128-bit load gives a group's four rows. 8 groups per step; a ragged end redoes the last 8
 * (overlapping, same values) instead of going scalar: at n_embd = 896, G = 64 a row has 14 groups. */
void tl_mm_sb_4rows(tl_dtype t, const void *p, int64_t r, int64_t ng, float *out) {
    const uint16_t *h = (const uint16_t *)p + r * ng;
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) sb_4x8(t, h, ng, g, out);
    if (g < ng && ng >= 8) sb_4x8(t, h, ng, ng - 8, out);
    else
        for (; g < ng; g++)
            for (int i = 0; i < 4; i++) out[g * 4 + i] = h2f(t, h[i * ng + g]);
}

/* Rows r..r+3, T tokens, cols % 64 == 0. st: [ng][4] scales from tl_mm_sb_4rows; bf: [4][ngp]
 * biases from tl_mm_b_4rows (rows as they are: the bias term is four row dots, no transpose needed). */
AI void q4i8_4rows(const tl_tensor *w, int64_t r, const tl_mm_xq *xq, float *y, int64_t ldy, const float *st,
                   const float *bf, const int T) {
    const int64_t cols = w->cols, G = w->group, ng = cols / G, nc = cols / 64, rs = cols / 2;
    const uint8_t *q = (const uint8_t *)((const uint32_t *)w->data + r * (cols / 8));
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        /* the rows' scales for the chunk's two 32-blocks: [s(r..r+3, block 2c) | s(r..r+3, block 2c+1)] */
        __m256 s = G == 32   ? _mm256_loadu_ps(st + c * 8)
                   : G == 64 ? _mm256_broadcast_ps((const __m128 *)(st + c * 4))
                             : _mm256_broadcast_ps((const __m128 *)(st + (c >> 1) * 4));
        __m256i lo[4], hi[4];
        { /* the 4 rows are one contiguous 4*rs-byte run: 128 bytes per chunk step */
            _mm_prefetch((const char *)q + TL_Q4_PF + c * 128, _MM_HINT_T0);
            _mm_prefetch((const char *)q + TL_Q4_PF + c * 128 + 64, _MM_HINT_T0);
        }
        for (int i = 0; i < 4; i++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + i * rs + c * 32));
            lo[i] = _mm256_and_si256(v, m4);
            hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        for (int t = 0; t < T; t++) {
            const int8_t *xp = xq->q + t * cols + c * 64;
            __m256i xa = _mm256_loadu_si256((const __m256i *)xp), xb = _mm256_loadu_si256((const __m256i *)(xp + 32));
            __m256i a[4];
            for (int i = 0; i < 4; i++) /* int16 lanes: |lo.xa + hi.xb| <= 2 * 2*15*127 = 7620 */
                a[i] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xa), _mm256_maddubs_epi16(hi[i], xb));
            /* two int16 hadds (|sum of 4 lanes| <= 30480 < 32767) then one madd: per 128-bit half,
             * [row 0..3 sums of that half's 32-block] */
            __m256i h = _mm256_madd_epi16(
                _mm256_hadd_epi16(_mm256_hadd_epi16(a[0], a[1]), _mm256_hadd_epi16(a[2], a[3])), ones);
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(h), _mm256_load_ps(xq->d8 + t * nc * 8 + c * 8));
            acc[t] = _mm256_fmadd_ps(f, s, acc[t]);
        }
    }
    const int64_t ngp = (ng + 7) & ~(int64_t)7;
    for (int t = 0; t < T; t++) tl_mm_q4_finish_4rows(xq->gsum + t * ng, bf, ng, ngp, acc[t], y + t * ldy + r);
}

/* bf[i * ngp + g] = fp32 of p[(r + i) * ng + g] for rows r..r+3, each row zero-padded to ngp (a
 * multiple of 8); 8 at a time, a ragged end redone overlapping (ng >= 8). */
void tl_mm_b_4rows(tl_dtype t, const void *p, int64_t r, int64_t ng, int64_t ngp, float *bf) {
    const uint16_t *h = (const uint16_t *)p + r * ng;
    for (int i = 0; i < 4; i++) {
        const uint16_t *hi = h + i * ng;
        float *o = bf + i * ngp;
        int64_t g = 0;
        _mm256_storeu_ps(o + ngp - 8, _mm256_setzero_ps()); /* the padding; data stores overwrite the rest */
        for (; g + 8 <= ng; g += 8) _mm256_storeu_ps(o + g, load8_sb(t, hi + g));
        if (g < ng && ng >= 8) _mm256_storeu_ps(o + ng - 8, load8_sb(t, hi + ng - 8));
        else
            for (; g < ng; g++) o[g] = h2f(t, hi[g]);
    }
}

static void dot_q4i8_avx2(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
                          int64_t ldy) {
    _Alignas(32) float st[4 * 512], bt[4 * 512]; /* rows' scales [ng][4], biases [4][ngp] */
    int64_t ng = w->cols / w->group, r = r0;
    if (w->cols % 64 == 0 && ng <= 512) {
        for (; r + 4 <= r1; r += 4) {
            tl_mm_sb_4rows(w->sb_type, w->scales, r, ng, st);
            tl_mm_b_4rows(w->sb_type, w->biases, r, ng, (ng + 7) & ~(int64_t)7, bt);
            for (int t0 = 0; t0 < nt; t0 += TL_MM_DIRECT_T) { /* all tokens over these 4 rows (in L1) */
                tl_mm_xq v = tl_mm_xq_at(xq, t0);
                float *yt = y + t0 * ldy;
                switch (TL_MIN(TL_MM_DIRECT_T, nt - t0)) {
                case 1: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 1); break;
                case 2: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 2); break;
                case 3: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 3); break;
                default: q4i8_4rows(w, r, &v, yt, ldy, st, bt, 4); break;
                }
            }
        }
    }
    for (int t0 = 0; r < r1 && t0 < nt; t0 += TL_MM_DIRECT_T) { /* leftover rows, a last 32-block, huge ng */
        tl_mm_xq v = tl_mm_xq_at(xq, t0);
        dot_q4i8_rows_avx2(w, r, r1, &v, TL_MIN(TL_MM_DIRECT_T, nt - t0), y + t0 * ldy, ldy);
    }
}

/* ---- activation quantization (bit-identical q/d/d8 to tl_mm_quantize_x) ---- */
void tl_mm_quantize_x_avx2(const float *x, int n_tok, int64_t cols, int group, tl_mm_xq *xq) {
    if (cols % 64 || group % 8) {
        tl_mm_quantize_x(x, n_tok, cols, group, xq);
        return;
    }
    const int64_t nb = cols / TL_MM_QB, ng = cols / group, nc = cols / 64;
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i evod = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, /* per lane */
                                          0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (int64_t)t * cols;
        int8_t *qt = xq->q + (int64_t)t * cols;
        float *d8 = xq->d8 + (int64_t)t * nc * 8;
        for (int64_t blk = 0; blk < nb; blk++) {
            const float *xb = xt + blk * 32;
            __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
                   v3 = _mm256_loadu_ps(xb + 24);
            __m256 am = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absm), _mm256_and_ps(v1, absm)),
                                      _mm256_max_ps(_mm256_and_ps(v2, absm), _mm256_and_ps(v3, absm)));
            __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
            m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            m = _mm_max_ss(m, _mm_movehdup_ps(m));
            float amax = _mm_cvtss_f32(m), d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            __m256 iv = _mm256_set1_ps(id);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, iv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, iv));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, iv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, iv));
            /* packs: bytes by dword [x0-3, x8-11, x16-19, x24-27 | x4-7, ...]; perm puts them in order */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(p, perm), evod); /* per 16: [even 8, odd 8] */
            p = _mm256_permute4x64_epi64(p, 0xd8);                               /* [even 16 | odd 16] */
            int8_t *qb = qt + (blk >> 1) * 64 + (blk & 1) * 16; /* even columns here, odd ones 32 further */
            _mm_storeu_si128((__m128i *)qb, _mm256_castsi256_si128(p));
            _mm_storeu_si128((__m128i *)(qb + 32), _mm256_extracti128_si256(p, 1));
            xq->d[t * nb + blk] = d;
            _mm_storeu_ps(d8 + blk * 4, _mm_set1_ps(d)); /* chunk blk/2, lanes (blk%2)*4.. */
        }
        for (int64_t g = 0; g < ng; g++) {
            __m256 s = _mm256_setzero_ps();
            for (int i = 0; i < group; i += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(xt + g * group + i));
            xq->gsum[t * ng + g] = hsum(s);
        }
    }
    xq->cols = cols;
    xq->group = group;
}

const tl_mm_kernels tl_mm_avx2 = {"avx2", deq_avx2, gemm_avx2, dot_dense_avx2, dot_q4i8_avx2, tl_mm_quantize_x_avx2, 0};
const tl_mm_kernels tl_mm_avx2_rows = {"avx2-rows", deq_avx2, gemm_avx2, dot_dense_avx2, dot_q4i8_rows_avx2,
                                       tl_mm_quantize_x, TL_MM_DIRECT_T};

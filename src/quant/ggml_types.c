/* ggml_types.c: GGUF tensor type table and scalar dequantizers (see ggml_types.h for layouts). */
#include "quant/ggml_types.h"

#include <inttypes.h>
#include <math.h>

_Static_assert(sizeof(uint16_t) == 2, "fp16 is two bytes");

tl_ggml_type_info tl_ggml_type_get(uint32_t type) {
    tl_ggml_type_info t = {NULL, 0, 0, false};
    switch (type) {
    case TL_GGML_F32: return (tl_ggml_type_info){"f32", 1, 4, true};
    case TL_GGML_F16: return (tl_ggml_type_info){"f16", 1, 2, true};
    case TL_GGML_Q4_0: return (tl_ggml_type_info){"q4_0", 32, 18, true};
    case TL_GGML_Q4_1: return (tl_ggml_type_info){"q4_1", 32, 20, true};
    case TL_GGML_Q5_0: return (tl_ggml_type_info){"q5_0", 32, 22, true};
    case TL_GGML_Q5_1: return (tl_ggml_type_info){"q5_1", 32, 24, true};
    case TL_GGML_Q8_0: return (tl_ggml_type_info){"q8_0", 32, 34, true};
    case TL_GGML_Q8_1: return (tl_ggml_type_info){"q8_1", 32, 36, false};
    case TL_GGML_Q2_K: return (tl_ggml_type_info){"q2_K", 256, 84, false};
    case TL_GGML_Q3_K: return (tl_ggml_type_info){"q3_K", 256, 110, false};
    case TL_GGML_Q4_K: return (tl_ggml_type_info){"q4_K", 256, 144, true};
    case TL_GGML_Q5_K: return (tl_ggml_type_info){"q5_K", 256, 176, true};
    case TL_GGML_Q6_K: return (tl_ggml_type_info){"q6_K", 256, 210, true};
    case TL_GGML_Q8_K: return (tl_ggml_type_info){"q8_K", 256, 292, false};
    case 16: return (tl_ggml_type_info){"iq2_xxs", 256, 66, false};
    case 17: return (tl_ggml_type_info){"iq2_xs", 256, 74, false};
    case 18: return (tl_ggml_type_info){"iq3_xxs", 256, 98, false};
    case 19: return (tl_ggml_type_info){"iq1_s", 256, 50, false};
    case 20: return (tl_ggml_type_info){"iq4_nl", 32, 18, false};
    case 21: return (tl_ggml_type_info){"iq3_s", 256, 110, false};
    case 22: return (tl_ggml_type_info){"iq2_s", 256, 82, false};
    case 23: return (tl_ggml_type_info){"iq4_xs", 256, 136, false};
    case 24: return (tl_ggml_type_info){"i8", 1, 1, false};
    case 25: return (tl_ggml_type_info){"i16", 1, 2, false};
    case 26: return (tl_ggml_type_info){"i32", 1, 4, false};
    case 27: return (tl_ggml_type_info){"i64", 1, 8, false};
    case 28: return (tl_ggml_type_info){"f64", 1, 8, false};
    case 29: return (tl_ggml_type_info){"iq1_m", 256, 56, false};
    case TL_GGML_BF16: return (tl_ggml_type_info){"bf16", 1, 2, true};
    }
    return t;
}

int64_t tl_ggml_nbytes(uint32_t type, int64_t n) {
    tl_ggml_type_info t = tl_ggml_type_get(type);
    if (!t.name || n < 0 || n % t.block_elems) return -1;
    int64_t blocks = n / t.block_elems;
    if (blocks > INT64_MAX / t.block_bytes) return -1;
    return blocks * t.block_bytes;
}

static float h2f(const uint8_t *p) { return tl_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

void tl_ggml_k_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else { /* low 4 bits in s[8..11], high 2 bits in the top bits of s[0..3] / s[4..7] */
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* One block of each type: b = block bytes, y = block_elems outputs. */
static void deq_q4_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 15) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}
static void deq_q4_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 15) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void deq_q5_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    uint32_t qh = le32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int q0 = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
        int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)(q0 - 16) * d;
        y[j + 16] = (float)(q1 - 16) * d;
    }
}
static void deq_q5_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    uint32_t qh = le32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int q0 = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
        int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)q0 * d + m;
        y[j + 16] = (float)q1 * d + m;
    }
}
static void deq_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}
static void deq_q4_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *sc = b + 4, *qs = b + 16;
    for (int i = 0; i < 4; i++) { /* 64 outputs from 32 bytes: sub-blocks 2i (low) and 2i+1 (high) */
        int s0, m0, s1, m1;
        tl_ggml_k_scale_min(sc, 2 * i, &s0, &m0);
        tl_ggml_k_scale_min(sc, 2 * i + 1, &s1, &m1);
        float d0 = d * (float)s0, o0 = dmin * (float)m0, d1 = d * (float)s1, o1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++) {
            y[64 * i + l] = d0 * (float)(qs[32 * i + l] & 15) - o0;
            y[64 * i + 32 + l] = d1 * (float)(qs[32 * i + l] >> 4) - o1;
        }
    }
}
static void deq_q5_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + 48;
    for (int i = 0; i < 4; i++) {
        int s0, m0, s1, m1;
        tl_ggml_k_scale_min(sc, 2 * i, &s0, &m0);
        tl_ggml_k_scale_min(sc, 2 * i + 1, &s1, &m1);
        float d0 = d * (float)s0, o0 = dmin * (float)m0, d1 = d * (float)s1, o1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++) {
            int q0 = (qs[32 * i + l] & 15) | (((qh[l] >> (2 * i)) & 1) << 4);
            int q1 = (qs[32 * i + l] >> 4) | (((qh[l] >> (2 * i + 1)) & 1) << 4);
            y[64 * i + l] = d0 * (float)q0 - o0;
            y[64 * i + 32 + l] = d1 * (float)q1 - o1;
        }
    }
}
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int h = 0; h < 2; h++) { /* two halves of 128: ql[64], qh[32], scales[8] each */
        const uint8_t *l4 = ql + 64 * h, *h2 = qh + 32 * h;
        const int8_t *s = sc + 8 * h;
        float *o = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((l4[l] & 15) | (((h2[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((l4[l + 32] & 15) | (((h2[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((l4[l] >> 4) | (((h2[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((l4[l + 32] >> 4) | (((h2[l] >> 6) & 3) << 4)) - 32;
            o[l] = d * (float)s[is] * (float)q1;
            o[l + 32] = d * (float)s[is + 2] * (float)q2;
            o[l + 64] = d * (float)s[is + 4] * (float)q3;
            o[l + 96] = d * (float)s[is + 6] * (float)q4;
        }
    }
}

int tl_ggml_dequant_ref(uint32_t type, const void *src, float *dst, int64_t n) {
    tl_ggml_type_info t = tl_ggml_type_get(type);
    if (!t.name || !t.dequant || n % t.block_elems) return -1;
    const uint8_t *p = src;
    switch (type) {
    case TL_GGML_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case TL_GGML_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = h2f(p + 2 * i);
        return 0;
    case TL_GGML_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = tl_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    default: break;
    }
    void (*f)(const uint8_t *, float *) = NULL;
    switch (type) {
    case TL_GGML_Q4_0: f = deq_q4_0; break;
    case TL_GGML_Q4_1: f = deq_q4_1; break;
    case TL_GGML_Q5_0: f = deq_q5_0; break;
    case TL_GGML_Q5_1: f = deq_q5_1; break;
    case TL_GGML_Q8_0: f = deq_q8_0; break;
    case TL_GGML_Q4_K: f = deq_q4_k; break;
    case TL_GGML_Q5_K: f = deq_q5_k; break;
    case TL_GGML_Q6_K: f = deq_q6_k; break;
    default: return -1;
    }
    for (int64_t b = 0; b < n / t.block_elems; b++) f(p + b * t.block_bytes, dst + b * t.block_elems);
    return 0;
}

/* ---- conversion to tinyllm layouts ---- */

#include "backend/cpu/cpu_ops.h"
#include "core/pool.h"

#define CONV_GROUP 32

bool tl_ggml_convertible(uint32_t type) {
    switch (type) {
    case TL_GGML_Q8_0: case TL_GGML_Q4_0: case TL_GGML_Q4_1: case TL_GGML_Q4_K:
    case TL_GGML_Q5_0: case TL_GGML_Q5_1: case TL_GGML_Q5_K: case TL_GGML_Q6_K: return true;
    }
    return false;
}

/* 4-bit codes of one block (block_elems of them) and the float scale/bias of each group of 32. */
static void q4_block(uint32_t type, const uint8_t *b, uint8_t *code, float *sc, float *bi) {
    if (type == TL_GGML_Q4_0 || type == TL_GGML_Q4_1) {
        const uint8_t *qs = b + (type == TL_GGML_Q4_0 ? 2 : 4);
        for (int j = 0; j < 16; j++) code[j] = qs[j] & 15, code[j + 16] = qs[j] >> 4;
        sc[0] = h2f(b);
        bi[0] = type == TL_GGML_Q4_0 ? -8.0f * sc[0] : h2f(b + 2);
        return;
    }
    float d = h2f(b), dmin = h2f(b + 2); /* Q4_K */
    const uint8_t *qs = b + 16;
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++) code[64 * i + l] = qs[32 * i + l] & 15, code[64 * i + 32 + l] = qs[32 * i + l] >> 4;
    for (int j = 0; j < 8; j++) {
        int s, m;
        tl_ggml_k_scale_min(b + 4, j, &s, &m);
        sc[j] = d * (float)s;
        bi[j] = -dmin * (float)m;
    }
}

typedef struct conv_ctx {
    uint32_t type;
    tl_ggml_type_info ti;
    const uint8_t *src;
    int64_t rows, cols, nb, ng, row_bytes;
    bool q4;
    tl_tensor *out;
    double *stats; /* [n_tasks][4]: max abs err, max |exact|, sum err^2, sum exact^2; NULL: don't measure */
} conv_ctx;

#define CONV_ROWS_PER_TASK 16

static int8_t round_i8(float v) { /* round half away from zero into [-127, 127]; NaN (a garbage scale) -> 0 */
    if (!(v == v)) return 0;
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    return (int8_t)(int)(v + (v >= 0 ? 0.5f : -0.5f));
}

/* Converts row r into c->out; exact, conv: [cols] scratch; code: [cols]; sc, bi: [ng]. */
static void conv_row(const conv_ctx *c, int64_t r, float *exact, uint8_t *code, float *sc, float *bi) {
    const tl_ggml_type_info ti = c->ti;
    const uint8_t *rowp = c->src + r * c->row_bytes;
    int64_t nb = c->nb, ng = c->ng, cols = c->cols;
    tl_tensor *out = c->out;
    if (c->q4) {
        int gpb = ti.block_elems / CONV_GROUP;
        for (int64_t b = 0; b < nb; b++)
            q4_block(c->type, rowp + b * ti.block_bytes, code + b * ti.block_elems, sc + b * gpb, bi + b * gpb);
        uint32_t *q = (uint32_t *)out->data + r * (cols / 8);
        for (int64_t k = 0; k < cols; k += 8) {
            uint32_t wd = 0;
            for (int i = 0; i < 8; i++) wd |= (uint32_t)code[k + i] << (4 * i);
            q[k / 8] = wd;
        }
        uint16_t *s16 = (uint16_t *)out->scales + r * ng, *b16 = (uint16_t *)out->biases + r * ng;
        for (int64_t g = 0; g < ng; g++) s16[g] = tl_f32_to_f16(sc[g]), b16[g] = tl_f32_to_f16(bi[g]);
        return;
    }
    int8_t *q = (int8_t *)out->data + r * cols;
    float *s = (float *)out->scales + r * ng;
    if (c->type == TL_GGML_Q8_0) { /* copy codes and scales: exact */
        for (int64_t b = 0; b < nb; b++) {
            s[b] = h2f(rowp + b * 34);
            memcpy(q + b * 32, rowp + b * 34 + 2, 32);
        }
    } else if (c->type == TL_GGML_Q5_0) { /* codes q - 16 in [-16, 15], scale d: exact */
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = rowp + b * 22, *qs = blk + 6;
            uint32_t qh = le32(blk + 2);
            s[b] = h2f(blk);
            for (int j = 0; j < 16; j++) {
                q[b * 32 + j] = (int8_t)(((qs[j] & 15) | (int)(((qh >> j) & 1) << 4)) - 16);
                q[b * 32 + j + 16] = (int8_t)(((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16);
            }
        }
    } else if (c->type == TL_GGML_Q6_K) { /* codes q - 32 in [-32, 31], scale d * sc per 16: exact */
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = rowp + b * 210;
            float d = h2f(blk + 208);
            uint8_t one[210];
            memcpy(one, blk, 210);
            memset(one + 192, 1, 16); /* unit scales and d = 1 give the codes themselves */
            one[208] = 0x00, one[209] = 0x3c;
            deq_q6_k(one, exact);
            for (int i = 0; i < 256; i++) q[b * 256 + i] = (int8_t)exact[i];
            for (int j = 0; j < 16; j++) s[b * 16 + j] = d * (float)(int8_t)blk[192 + j];
        }
    } else { /* Q5_1, Q5_K: requantize the exact values, scale max|w|/127 per group */
        tl_ggml_dequant_ref(c->type, rowp, exact, cols);
        for (int64_t g = 0; g < ng; g++) {
            const float *x = exact + g * CONV_GROUP;
            float amax = 0;
            for (int i = 0; i < CONV_GROUP; i++) {
                float a = fabsf(x[i]);
                amax = a > amax ? a : amax; /* not fmaxf: a libm call here */
            }
            float sg = amax / 127.0f, inv = sg > 0 ? 1.0f / sg : 0.0f;
            s[g] = sg;
            for (int i = 0; i < CONV_GROUP; i++) q[g * CONV_GROUP + i] = round_i8(x[i] * inv);
        }
    }
}

static void conv_task(void *ctx, int task, int thread) {
    (void)thread;
    const conv_ctx *c = ctx;
    int64_t r0 = (int64_t)task * CONV_ROWS_PER_TASK, r1 = TL_MIN(c->rows, r0 + CONV_ROWS_PER_TASK);
    float *exact = tl_malloc((size_t)c->cols * sizeof(float)), *conv = tl_malloc((size_t)c->cols * sizeof(float));
    uint8_t *code = tl_malloc((size_t)c->cols);
    float *sc = tl_malloc((size_t)c->ng * sizeof(float)), *bi = tl_malloc((size_t)c->ng * sizeof(float));
    double *st = c->stats ? c->stats + 4 * (size_t)task : NULL;
    for (int64_t r = r0; r < r1; r++) {
        conv_row(c, r, exact, code, sc, bi);
        if (!st) continue;
        tl_ggml_dequant_ref(c->type, c->src + r * c->row_bytes, exact, c->cols);
        tl_tensor_row_f32(c->out, r, conv);
        for (int64_t k = 0; k < c->cols; k++) {
            double d = fabs((double)conv[k] - exact[k]);
            if (d > st[0] || d != d) st[0] = d != d ? INFINITY : d;
            st[1] = fmax(st[1], fabs((double)exact[k]));
            st[2] += d * d, st[3] += (double)exact[k] * exact[k];
        }
    }
    free(exact), free(conv), free(code), free(sc), free(bi);
}

int tl_ggml_convert(uint32_t type, const void *src, int64_t rows, int64_t cols, tl_tensor *out, tl_ggml_conv_err *err,
                    tl_pool *pool, tl_error *e) {
    tl_ggml_type_info ti = tl_ggml_type_get(type);
    if (!ti.name || !tl_ggml_convertible(type))
        return tl_errf(e, "ggml type %s (%u) cannot be converted", ti.name ? ti.name : "unknown", type);
    if (rows <= 0 || cols <= 0 || cols % ti.block_elems || cols % CONV_GROUP)
        return tl_errf(e, "%s tensor [%" PRId64 ", %" PRId64 "]: bad shape for conversion", ti.name, rows, cols);
    /* Q6_K: 16 sub-blocks of 16 with an int8 scale each -> group 16, exact */
    int group = type == TL_GGML_Q6_K ? 16 : CONV_GROUP;
    conv_ctx c = {.type = type, .ti = ti, .src = src, .rows = rows, .cols = cols, .nb = cols / ti.block_elems,
                  .ng = cols / group, .q4 = type == TL_GGML_Q4_0 || type == TL_GGML_Q4_1 || type == TL_GGML_Q4_K,
                  .out = out};
    c.row_bytes = c.nb * ti.block_bytes;
    memset(out, 0, sizeof *out);
    out->rows = rows, out->cols = cols, out->group = group;
    size_t n = (size_t)rows * (size_t)cols, nsb = (size_t)rows * (size_t)c.ng;
    size_t data_bytes = c.q4 ? n / 2 : n, sb_bytes = c.q4 ? nsb * 2 : nsb * 4;
    data_bytes = (data_bytes + 63) & ~(size_t)63;
    sb_bytes = (sb_bytes + 63) & ~(size_t)63;
    uint8_t *base = tl_aligned_alloc(data_bytes + sb_bytes * (c.q4 ? 2 : 1));
    out->owned = base, out->data = base, out->scales = base + data_bytes;
    out->type = c.q4 ? TL_Q4 : TL_Q8;
    out->sb_type = c.q4 ? TL_F16 : TL_F32;
    if (c.q4) out->biases = base + data_bytes + sb_bytes;
    int n_tasks = (int)TL_CDIV(rows, (int64_t)CONV_ROWS_PER_TASK);
    if (err) c.stats = tl_calloc((size_t)n_tasks * 4, sizeof(double));
    tl_pool_run(pool, conv_task, &c, n_tasks);
    if (err) { /* combined in task order: the same result for any number of threads */
        double se = 0, sr = 0;
        memset(err, 0, sizeof *err);
        for (int t = 0; t < n_tasks; t++) {
            const double *st = c.stats + 4 * (size_t)t;
            err->max_abs = st[0] != st[0] || st[0] > err->max_abs ? st[0] : err->max_abs;
            err->max_ref = fmax(err->max_ref, st[1]);
            se += st[2], sr += st[3];
        }
        err->rel_rms = sr > 0 ? sqrt(se / sr) : sqrt(se);
        free(c.stats);
    }
    return 0;
}

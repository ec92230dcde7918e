/* ggml_types.c: GGUF tensor type table and scalar dequantizers (see ggml_types.h for layouts). */
#include "quant/ggml_types.h"

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

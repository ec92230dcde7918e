/* tensor.c: dtype names and the scalar row dequantizer every reference path uses. */
#include "backend/cpu/cpu_ops.h"

const char *tl_dtype_name(tl_dtype t) {
    switch (t) {
    case TL_F32: return "f32";
    case TL_F16: return "f16";
    case TL_BF16: return "bf16";
    case TL_Q4: return "int4";
    case TL_Q8: return "int8";
    }
    return "?";
}

static float sb_load(const tl_tensor *w, const void *p, int64_t i) {
    const uint16_t *h = p;
    return w->sb_type == TL_BF16 ? tl_bf16_to_f32(h[i]) : w->sb_type == TL_F16 ? tl_f16_to_f32(h[i])
                                                                                : ((const float *)p)[i];
}

void tl_tensor_row_f32(const tl_tensor *w, int64_t r, float *out) {
    int64_t n = w->cols;
    switch (w->type) {
    case TL_F32: memcpy(out, (const float *)w->data + r * n, (size_t)n * 4); return;
    case TL_F16: {
        const uint16_t *p = (const uint16_t *)w->data + r * n;
        for (int64_t i = 0; i < n; i++) out[i] = tl_f16_to_f32(p[i]);
        return;
    }
    case TL_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + r * n;
        for (int64_t i = 0; i < n; i++) out[i] = tl_bf16_to_f32(p[i]);
        return;
    }
    case TL_Q4: { /* MLX layout: 8 codes per uint32, lowest bits first; w = q*scale + bias per group */
        const uint32_t *q = (const uint32_t *)w->data + r * (n / 8);
        int64_t ng = n / w->group;
        for (int64_t i = 0; i < n; i++) {
            int code = (int)((q[i / 8] >> (4 * (i % 8))) & 15);
            int64_t g = r * ng + i / w->group;
            out[i] = (float)code * sb_load(w, w->scales, g) + sb_load(w, w->biases, g);
        }
        return;
    }
    case TL_Q8: {
        const int8_t *q = (const int8_t *)w->data + r * n;
        const float *s = (const float *)w->scales + r * (n / w->group);
        for (int64_t i = 0; i < n; i++) out[i] = (float)q[i] * s[i / w->group];
        return;
    }
    }
    TL_ASSERT(0 && "unknown dtype");
}

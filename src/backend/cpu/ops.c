/* ops.c: the CPU backend's small ops (embedding, RMSNorm, RoPE, SiLU*mul). Plain C: these are a
 * few percent of a forward pass next to the matrix products. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "core/cpu.h"

void tl_cpu_embed(const tl_tensor *emb, const int32_t *ids, int n_tok, float *out) {
    for (int i = 0; i < n_tok; i++) {
        TL_ASSERT(ids[i] >= 0 && ids[i] < emb->rows);
        tl_tensor_row_f32(emb, ids[i], out + (size_t)i * emb->cols);
    }
}

void tl_cpu_rmsnorm(const float *x, const float *w, float *y, int n_tok, int n, float eps) {
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + (size_t)t * n;
        float *yr = y + (size_t)t * n;
        double ss = 0; /* accumulate in double: rows are short and this keeps us close to fp32 HF */
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) yr[i] = xr[i] * r * w[i];
    }
}

/* Rotates n_heads heads of one token: NEOX pairs (i, i + d/2), NORM pairs (2i, 2i+1). */
static void rope_heads(float *x, int n_heads, int d, const float *cs, const float *sn, tl_rope_kind kind) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * d;
        for (int i = 0; i < d / 2; i++) {
            int a = kind == TL_ROPE_NEOX ? i : 2 * i, b = kind == TL_ROPE_NEOX ? i + d / 2 : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

void tl_cpu_rope(float *q, float *k, const int32_t *pos, int n_tok, int n_head, int n_head_kv, int head_dim,
                 float theta, tl_rope_kind kind) {
    int half = head_dim / 2;
    float cs[512], sn[512];
    TL_ASSERT(half <= 512);
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < half; i++) {
            /* inv_freq as HF computes it (fp32), angle in double for accuracy at long positions */
            float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / head_dim));
            double ang = (double)pos[t] * (double)inv;
            cs[i] = (float)cos(ang);
            sn[i] = (float)sin(ang);
        }
        rope_heads(q + (size_t)t * n_head * head_dim, n_head, head_dim, cs, sn, kind);
        rope_heads(k + (size_t)t * n_head_kv * head_dim, n_head_kv, head_dim, cs, sn, kind);
    }
}

void tl_cpu_silu_mul_ref(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void tl_cpu_silu_mul(float *gate, const float *up, size_t n) {
    size_t i = tl_cpu_isa() >= TL_ISA_AVX2 ? tl_cpu_silu_mul_avx2(gate, up, n) : 0;
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

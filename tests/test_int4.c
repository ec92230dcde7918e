/* test_int4.c: INT4 quantization (MLX layout): exact codes and packing order on a constructed
 * group, round-trip error within the format's analytic bound for G = 32/64/128 and f32/bf16/f16
 * sources (dequantized by tl_tensor_row_f32, not by the quantizer), bad input, checkpoint parts,
 * and quantizing a small hand-built model with tied embeddings. */
#include <math.h>

#include "quant/int4.h"
#include "backend/cpu/cpu_ops.h"
#include "tl_test.h"

static unsigned long long seed = 7;

/* max over groups of (|w - deq| - bound); bound from the stored scale/bias vs the exact ones. */
static int check_roundtrip(const float *w, const tl_tensor *q, const char *what) {
    int64_t rows = q->rows, cols = q->cols, G = q->group, ng = cols / G;
    float *deq = malloc((size_t)cols * sizeof(float));
    int bad = 0;
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        tl_tensor_row_f32(q, r, deq);
        for (int64_t g = 0; g < ng; g++) {
            float mn = INFINITY, mx = -INFINITY;
            for (int64_t i = 0; i < G; i++) {
                mn = fminf(mn, w[r * cols + g * G + i]);
                mx = fmaxf(mx, w[r * cols + g * G + i]);
            }
            uint16_t hs = ((uint16_t *)q->scales)[r * ng + g], hb = ((uint16_t *)q->biases)[r * ng + g];
            double s = q->sb_type == TL_F16 ? tl_f16_to_f32(hs) : tl_bf16_to_f32(hs);
            double b = q->sb_type == TL_F16 ? tl_f16_to_f32(hb) : tl_bf16_to_f32(hb);
            double s0 = ((double)mx - mn) / 15.0, b0 = mn;
            double bound = s / 2 + 15 * fabs(s - s0) + fabs(b - b0) + 1e-6 * (fabs(mx) + fabs(mn));
            for (int64_t i = 0; i < G; i++) {
                double err = fabs((double)w[r * cols + g * G + i] - deq[g * G + i]);
                if (err > bound) bad++;
                if (s0 > 0 && err / s0 > worst) worst = err / s0;
            }
        }
    }
    printf("%s: worst |w - deq| = %.3f x (max-min)/15\n", what, worst);
    free(deq);
    CHECK(bad == 0, "%s: %d weights past the analytic bound", what, bad);
    return bad;
}

static void roundtrip(tl_dtype st, int G) {
    int64_t rows = 13, cols = 4 * G + 128;
    size_t n = (size_t)(rows * cols);
    float *w = malloc(n * sizeof(float));
    tl_tensor src = {.type = st, .rows = rows, .cols = cols};
    src.data = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        float v = tl_t_randf(&seed) * 0.05f;
        if (tl_t_rng(&seed) % 97 == 0) v *= 40; /* outliers */
        if (i / G % 11 == 3) v = 0.125f;         /* some constant groups (scale 0) */
        if (st == TL_F32) ((float *)src.data)[i] = v, w[i] = v;
        if (st == TL_BF16) ((uint16_t *)src.data)[i] = tl_f32_to_bf16(v), w[i] = tl_bf16_to_f32(tl_f32_to_bf16(v));
        if (st == TL_F16) ((uint16_t *)src.data)[i] = tl_f32_to_f16(v), w[i] = tl_f16_to_f32(tl_f32_to_f16(v));
    }
    tl_tensor q;
    tl_error e = {{0}};
    int rc = tl_q4_quantize_tensor(&src, G, &q, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        char what[64];
        snprintf(what, sizeof what, "%s G=%d", tl_dtype_name(st), G);
        CHECK(q.type == TL_Q4 && q.group == G && q.sb_type == TL_F16 && q.owned);
        check_roundtrip(w, &q, what);
        /* constant group reproduces exactly */
        float row[1024];
        tl_tensor_row_f32(&q, 0, row);
        CHECK(row[3 * G] == 0.125f, "constant group -> %g", row[3 * G]);
        free(q.owned);
    }
    free(src.data);
    free(w);
}

int main(void) {
    /* a group holding exactly 1 + 0.5*j for j = 0..15 (then repeated): scale 0.5, bias 1, codes j */
    {
        float v[32];
        for (int i = 0; i < 32; i++) v[i] = 1.0f + 0.5f * (float)(i % 16);
        uint32_t codes[4];
        uint16_t s, b;
        tl_error e;
        CHECK(tl_q4_quantize(v, TL_F32, 1, 32, 32, TL_F16, codes, &s, &b, &e) == 0);
        CHECK(tl_f16_to_f32(s) == 0.5f && tl_f16_to_f32(b) == 1.0f, "scale %g bias %g", tl_f16_to_f32(s),
              tl_f16_to_f32(b));
        CHECK(codes[0] == 0x76543210u && codes[1] == 0xfedcba98u, "packing: %08x %08x (lowest bits first)", codes[0],
              codes[1]);
        CHECK(codes[2] == 0x76543210u && codes[3] == 0xfedcba98u);
    }
    const int groups[] = {32, 64, 128};
    const tl_dtype srcs[] = {TL_F32, TL_BF16, TL_F16};
    for (int gi = 0; gi < 3; gi++)
        for (int si = 0; si < 3; si++) roundtrip(srcs[si], groups[gi]);

    /* bad input: clear errors, no crash */
    {
        float v[64] = {0};
        uint32_t c[8];
        uint16_t s[2], b[2];
        tl_error e = {{0}};
        CHECK(tl_q4_quantize(v, TL_F32, 1, 64, 48, TL_F16, c, s, b, &e) == -1 && strstr(e.msg, "group"), "%s", e.msg);
        CHECK(tl_q4_quantize(v, TL_F32, 1, 40, 32, TL_F16, c, s, b, &e) == -1 && strstr(e.msg, "multiple"), "%s",
              e.msg);
        v[5] = NAN;
        CHECK(tl_q4_quantize(v, TL_F32, 1, 64, 32, TL_F16, c, s, b, &e) == -1 && strstr(e.msg, "non-finite"), "%s",
              e.msg);
        tl_tensor src = {.type = TL_F32, .rows = 1, .cols = 64, .data = v}, q;
        CHECK(tl_q4_quantize_tensor(&src, 32, &q, &e) == -1 && strstr(e.msg, "NaN"), "%s", e.msg);
        v[5] = 1e6f; /* beyond fp16: scales/biases fall back to bf16 */
        CHECK(tl_q4_quantize_tensor(&src, 32, &q, &e) == 0 && q.sb_type == TL_BF16);
        float row[64];
        tl_tensor_row_f32(&q, 0, row);
        CHECK(fabsf(row[5] - 1e6f) < 1e6f / 15 / 2 + 1e6f / 128, "outlier deq %g", row[5]);
        free(q.owned);
        /* checkpoint parts */
        tl_tensor t;
        CHECK(tl_q4_from_parts(&t, c, 4, 8, s, b, TL_BF16, 1, &e) == 0 && t.cols == 64 && t.group == 64, "%s", e.msg);
        CHECK(tl_q4_from_parts(&t, c, 4, 8, s, b, TL_BF16, 3, &e) == -1, "64 cols in 3 groups");
        CHECK(tl_q4_from_parts(&t, c, 4, 8, s, b, TL_BF16, 4, &e) == -1 && strstr(e.msg, "group size 16"), "%s",
              e.msg);
        CHECK(tl_q4_from_parts(&t, c, 4, 8, NULL, b, TL_BF16, 2, &e) == -1);
        CHECK(tl_q4_from_parts(&t, c, 4, 8, s, b, TL_Q4, 2, &e) == -1);
    }

    /* a tiny model: 2 layers, tied embeddings; one weight too narrow for G=128 stays dense */
    {
        tl_model m;
        memset(&m, 0, sizeof m);
        m.cfg.n_layer = 2;
        tl_layer layers[2];
        memset(layers, 0, sizeof layers);
        m.w.layers = layers;
        int64_t n_embd = 128, n_ff = 256, n_vocab = 100;
        float *all[32];
        int na = 0;
#define MK(t, r, c)                                                                                \
    do {                                                                                           \
        (t).type = TL_F32, (t).rows = r, (t).cols = c;                                             \
        float *d = malloc((size_t)((r) * (c)) * sizeof(float));                                    \
        for (int64_t i = 0; i < (r) * (c); i++) d[i] = tl_t_randf(&seed) * 0.1f;                   \
        (t).data = d, (t).owned = d, all[na++] = d;                                                \
    } while (0)
        MK(m.w.tok_embd, n_vocab, n_embd);
        m.w.lm_head = m.w.tok_embd;
        for (int l = 0; l < 2; l++) {
            MK(layers[l].wq, n_embd, n_embd);
            MK(layers[l].wk, 64, n_embd);
            MK(layers[l].wv, 64, n_embd);
            MK(layers[l].wo, n_embd, n_embd);
            MK(layers[l].w_gate, n_ff, n_embd);
            MK(layers[l].w_up, n_ff, n_embd);
            MK(layers[l].w_down, n_embd, n_ff);
        }
        free(layers[1].w_down.owned); /* replaced by a narrower one (LeakSanitizer) */
        MK(layers[1].w_down, n_embd, 96); /* 96 is not a multiple of 128: stays f32 */
        float *embd_copy = malloc((size_t)(n_vocab * n_embd) * sizeof(float));
        memcpy(embd_copy, m.w.tok_embd.data, (size_t)(n_vocab * n_embd) * sizeof(float));
        float *wq1 = malloc((size_t)(n_embd * n_embd) * sizeof(float));
        memcpy(wq1, layers[1].wq.data, (size_t)(n_embd * n_embd) * sizeof(float));
        tl_error e = {{0}};
        int rc = tl_model_quantize(&m, 128, true, &e);
        CHECK(rc == 0, "%s", e.msg);
        CHECK(m.w.tok_embd.type == TL_Q4 && m.w.lm_head.type == TL_Q4 && m.w.lm_head.data == m.w.tok_embd.data,
              "tied lm_head shares the Q4 tok_embd");
        CHECK(layers[0].w_down.type == TL_Q4 && layers[1].wk.type == TL_Q4);
        CHECK(layers[1].w_down.type == TL_F32, "narrow weight left dense");
        check_roundtrip(embd_copy, &m.w.tok_embd, "model tok_embd");
        check_roundtrip(wq1, &layers[1].wq, "model wq[1]");
        CHECK(tl_model_quantize(&m, 100, false, &e) == -1 && strstr(e.msg, "group"), "%s", e.msg);
        free(m.w.tok_embd.owned);
        for (int l = 0; l < 2; l++) {
            tl_tensor *t[7] = {&layers[l].wq, &layers[l].wk, &layers[l].wv, &layers[l].wo,
                               &layers[l].w_gate, &layers[l].w_up, &layers[l].w_down};
            for (int i = 0; i < 7; i++) free(t[i]->owned);
        }
        free(embd_copy);
        free(wq1);
        (void)all;
    }
    TL_TEST_END();
}

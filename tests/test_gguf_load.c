/* test_gguf_load.c: tl_load_gguf on small llama/qwen2 GGUF files written here (tests/gguf_write.h).
 * For each tensor type, the matrices are random blocks of that type and a twin file holds their
 * exactly dequantized values as F32; the loaded weights and the logits of the two must agree
 * (exactly for the lossless conversions, within a bound for the others). Then the mapping
 * details (tied output, qwen2 biases and NEOX RoPE, hyperparameter defaults) and model-level
 * errors (missing tensor, wrong shape, unknown architecture, missing keys). */
#include <unistd.h>

#include "backend/cpu/cpu_ops.h"
#include "gguf_write.h"
#include "model/session.h"
#include "quant/ggml_types.h"
#include "tl_test.h"

enum { N_EMBD = 256, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = 64, N_FF = 512, N_LAYER = 2, N_VOCAB = 64 };

static char g_dir[64];
static unsigned long long g_rng = 7;

typedef struct variant {
    const char *arch;
    uint32_t type;   /* ggml type of the matrices */
    bool tied;       /* no output.weight */
    const char *drop;      /* a tensor to leave out */
    const char *bad_shape; /* a tensor written with ne[1] + 1 */
    const char *drop_key;  /* a metadata key to leave out */
    int n_tokens;          /* > 0: write a tokenizer.ggml.tokens list of this length */
} variant;

/* Scale fields per quantized type: byte offset and magnitude (weights end up around 0.05). */
static void fix_scales(uint32_t type, uint8_t *blk) {
    struct { uint32_t t; int off; float mag; } f[] = {
        {TL_GGML_Q4_0, 0, 5e-3f},  {TL_GGML_Q4_1, 0, 5e-3f},  {TL_GGML_Q4_1, 2, 4e-2f},  {TL_GGML_Q5_0, 0, 3e-3f},
        {TL_GGML_Q5_1, 0, 3e-3f},  {TL_GGML_Q5_1, 2, 4e-2f},  {TL_GGML_Q8_0, 0, 4e-4f},  {TL_GGML_Q4_K, 0, 1e-4f},
        {TL_GGML_Q4_K, 2, 5e-4f},  {TL_GGML_Q5_K, 0, 5e-5f},  {TL_GGML_Q5_K, 2, 5e-4f},  {TL_GGML_Q6_K, 208, 2e-5f},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].t == type) {
            uint16_t h = tl_f32_to_f16(f[i].mag * (0.5f + 0.5f * fabsf(tl_t_randf(&g_rng))) * (f[i].off == 2 ? -1.0f : 1.0f));
            blk[f[i].off] = (uint8_t)h, blk[f[i].off + 1] = (uint8_t)(h >> 8);
        }
}

/* Random data of [rows, cols] in `type` into *bytes, exact values into *f32. */
static size_t make_matrix(uint32_t type, int64_t rows, int64_t cols, uint8_t **bytes, float **f32) {
    int64_t n = rows * cols, nb = tl_ggml_nbytes(type, n);
    tl_ggml_type_info ti = tl_ggml_type_get(type);
    *bytes = malloc((size_t)nb);
    *f32 = malloc((size_t)n * 4);
    if (type == TL_GGML_F32 || type == TL_GGML_F16 || type == TL_GGML_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = 0.05f * tl_t_randf(&g_rng);
            uint16_t h = type == TL_GGML_F16 ? tl_f32_to_f16(v) : tl_f32_to_bf16(v);
            if (type == TL_GGML_F32) memcpy(*bytes + 4 * i, &v, 4);
            else (*bytes)[2 * i] = (uint8_t)h, (*bytes)[2 * i + 1] = (uint8_t)(h >> 8);
        }
    } else {
        for (int64_t i = 0; i < nb; i++) (*bytes)[i] = (uint8_t)tl_t_rng(&g_rng);
        for (int64_t b = 0; b < nb / ti.block_bytes; b++) fix_scales(type, *bytes + b * ti.block_bytes);
    }
    if (tl_ggml_dequant_ref(type, *bytes, *f32, n) != 0) memset(*f32, 0, (size_t)n * 4); /* e.g. q2_K */
    return (size_t)nb;
}

/* Writes the variant (matrices in v->type) to path_q and its F32 twin to path_f. */
static void write_pair(const variant *v, const char *path_q, const char *path_f) {
    gw wq = {0}, wf = {0};
    gw *ws[2] = {&wq, &wf};
    for (int k = 0; k < 2; k++) {
        gw *w = ws[k];
        gw_str(w, "general.architecture", v->arch);
        gw_str(w, "general.name", "synthetic");
        char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", v->arch, s), key)
        if (!v->drop_key || strcmp(v->drop_key, "embedding_length")) gw_u32(w, KEY("embedding_length"), N_EMBD);
        gw_u32(w, KEY("block_count"), N_LAYER);
        gw_u32(w, KEY("attention.head_count"), N_HEAD);
        gw_u32(w, KEY("attention.head_count_kv"), N_HEAD_KV);
        gw_u32(w, KEY("feed_forward_length"), N_FF);
        gw_u32(w, KEY("context_length"), 4096);
        gw_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
        if (!strcmp(v->arch, "qwen2")) gw_f32(w, KEY("rope.freq_base"), 1000000.0f);
        gw_u32(w, "tokenizer.ggml.bos_token_id", 1);
        gw_u32(w, "tokenizer.ggml.eos_token_id", 2);
        gw_u32(w, "tokenizer.ggml.eot_token_id", 3);
        if (v->n_tokens > 0) {
            const char **tk = malloc(sizeof *tk * (size_t)v->n_tokens);
            for (int i = 0; i < v->n_tokens; i++) tk[i] = "x";
            gw_arr_str(w, "tokenizer.ggml.tokens", tk, v->n_tokens);
            free(tk);
        }
#undef KEY
    }
    struct { const char *name; int64_t rows, cols; bool vec; } ts[64];
    int nt = 0;
#define T(nm, r, c, vv) (ts[nt].name = strdup(nm), ts[nt].rows = r, ts[nt].cols = c, ts[nt].vec = vv, nt++)
    T("token_embd.weight", N_VOCAB, N_EMBD, false);
    T("output_norm.weight", 1, N_EMBD, true);
    if (!v->tied) T("output.weight", N_VOCAB, N_EMBD, false);
    char nm[64];
    for (int l = 0; l < N_LAYER; l++) {
#define L(s, r, c, vv) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), T(nm, r, c, vv))
        L("attn_norm.weight", 1, N_EMBD, true);
        L("attn_q.weight", N_HEAD * HEAD_DIM, N_EMBD, false);
        L("attn_k.weight", N_HEAD_KV * HEAD_DIM, N_EMBD, false);
        L("attn_v.weight", N_HEAD_KV * HEAD_DIM, N_EMBD, false);
        if (!strcmp(v->arch, "qwen2")) {
            L("attn_q.bias", 1, N_HEAD * HEAD_DIM, true);
            L("attn_k.bias", 1, N_HEAD_KV * HEAD_DIM, true);
            L("attn_v.bias", 1, N_HEAD_KV * HEAD_DIM, true);
        }
        L("attn_output.weight", N_EMBD, N_HEAD * HEAD_DIM, false);
        L("ffn_norm.weight", 1, N_EMBD, true);
        L("ffn_gate.weight", N_FF, N_EMBD, false);
        L("ffn_up.weight", N_FF, N_EMBD, false);
        L("ffn_down.weight", N_EMBD, N_FF, false);
#undef L
    }
#undef T
    for (int i = 0; i < nt; i++) {
        uint8_t *b;
        float *f;
        uint32_t type = ts[i].vec ? TL_GGML_F32 : v->type;
        size_t nb = make_matrix(type, ts[i].rows, ts[i].cols, &b, &f);
        if (ts[i].vec && strstr(ts[i].name, "norm"))
            for (int64_t k = 0; k < ts[i].cols; k++) f[k] += 1.0f;
        if (ts[i].vec) memcpy(b, f, nb);
        uint64_t ne1 = ts[i].vec ? 0 : (uint64_t)ts[i].rows;
        if (v->bad_shape && !strcmp(v->bad_shape, ts[i].name)) ne1 = 1, nb = (size_t)tl_ggml_nbytes(type, ts[i].cols);
        if (!v->drop || strcmp(v->drop, ts[i].name)) {
            gw_tensor(&wq, ts[i].name, type, (uint64_t)ts[i].cols, ne1, b, nb);
            gw_tensor(&wf, ts[i].name, TL_GGML_F32, (uint64_t)ts[i].cols, ne1, f, (size_t)(ts[i].cols * TL_MAX(ne1, 1)) * 4);
        }
        free(b), free(f), free((void *)ts[i].name);
    }
    TL_ASSERT(gw_write(&wq, path_q) == 0 && gw_write(&wf, path_f) == 0);
}

/* max |a - b| over all rows of two loaded tensors of the same shape */
static double tensor_diff(const tl_tensor *a, const tl_tensor *b) {
    if (a->rows != b->rows || a->cols != b->cols) return INFINITY;
    float *x = malloc((size_t)a->cols * 4), *y = malloc((size_t)a->cols * 4);
    double md = 0;
    for (int64_t r = 0; r < a->rows; r++) {
        tl_tensor_row_f32(a, r, x);
        tl_tensor_row_f32(b, r, y);
        for (int64_t k = 0; k < a->cols; k++) md = fmax(md, fabs((double)x[k] - y[k]));
    }
    free(x), free(y);
    return md;
}

static void logits_of(tl_model *m, float *out /* [8, N_VOCAB] */) {
    tl_error e = {{0}};
    tl_backend *be = tl_backend_cpu_new(1);
    tl_session *s = tl_session_new(m, be, 64, &e);
    int32_t ids[8] = {1, 5, 9, 33, 60, 2, 17, 40};
    TL_ASSERT(s && tl_session_eval(s, ids, 8, true, &e) == 0);
    for (int i = 0; i < 8; i++) memcpy(out + i * N_VOCAB, tl_session_logits(s, i), N_VOCAB * 4);
    tl_session_free(s);
    be->free(be);
}

/* Loads both files of a variant; checks weights (max_w: max abs weight error allowed) and logits. */
static void test_type(const char *arch, uint32_t type, double max_w, double max_logit_rel, tl_dtype want) {
    variant v = {.arch = arch, .type = type};
    char pq[128], pf[128];
    snprintf(pq, sizeof pq, "%s/q.gguf", g_dir), snprintf(pf, sizeof pf, "%s/f.gguf", g_dir);
    write_pair(&v, pq, pf);
    tl_error e = {{0}};
    tl_model *mq = tl_model_load(pq, NULL, &e);
    CHECK(mq != NULL, "%s %s: %s", arch, tl_ggml_type_get(type).name, e.msg);
    tl_model *mf = tl_model_load(pf, NULL, &e);
    CHECK(mf != NULL, "%s f32 twin: %s", arch, e.msg);
    if (mq && mf) {
        const char *tn = tl_ggml_type_get(type).name;
        CHECK(mq->w.layers[1].w_down.type == want, "%s loads as %s", tn, tl_dtype_name(mq->w.layers[1].w_down.type));
        double md = tensor_diff(&mq->w.tok_embd, &mf->w.tok_embd);
        for (int l = 0; l < N_LAYER; l++) {
            const tl_layer *a = &mq->w.layers[l], *b = &mf->w.layers[l];
            const tl_tensor *ta[] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down, &a->attn_norm, &a->ffn_norm};
            const tl_tensor *tb[] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down, &b->attn_norm, &b->ffn_norm};
            for (int i = 0; i < 9; i++) md = fmax(md, tensor_diff(ta[i], tb[i]));
        }
        md = fmax(md, tensor_diff(&mq->w.lm_head, &mf->w.lm_head));
        CHECK(md <= max_w, "%s %s: weights differ by %g (allowed %g)", arch, tn, md, max_w);
        float *lq = malloc(8 * N_VOCAB * 4), *lf = malloc(8 * N_VOCAB * 4);
        logits_of(mq, lq), logits_of(mf, lf);
        double rel = tl_rel_err(lq, lf, 8 * N_VOCAB);
        CHECK(rel <= max_logit_rel, "%s %s: logits rel err %g (allowed %g)", arch, tn, rel, max_logit_rel);
        printf("%-5s %-5s -> %-4s: max weight err %.3g, logits rel err %.3g\n", arch, tn, tl_dtype_name(want), md, rel);
        free(lq), free(lf);
    }
    tl_model_free(mq), tl_model_free(mf);
}

static void test_mapping(void) {
    char pq[128], pf[128];
    snprintf(pq, sizeof pq, "%s/q.gguf", g_dir), snprintf(pf, sizeof pf, "%s/f.gguf", g_dir);
    variant v = {.arch = "qwen2", .type = TL_GGML_F32, .tied = true};
    write_pair(&v, pq, pf);
    tl_error e = {{0}};
    tl_model *m = tl_model_load(pq, NULL, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (m) {
        const tl_config *c = &m->cfg;
        CHECK(c->arch == TL_ARCH_QWEN2 && c->rope == TL_ROPE_NEOX && c->qkv_bias && c->tied_embd);
        CHECK(c->n_embd == N_EMBD && c->n_layer == N_LAYER && c->n_head == N_HEAD && c->n_head_kv == N_HEAD_KV &&
              c->head_dim == HEAD_DIM && c->n_ff == N_FF && c->n_vocab == N_VOCAB && c->n_ctx == 4096);
        CHECK(c->rope_theta == 1e6f && c->rms_eps == 1e-6f);
        CHECK(c->bos_id == 1 && c->n_eos == 2 && c->eos_ids[0] == 2 && c->eos_ids[1] == 3);
        CHECK(m->w.lm_head.data == m->w.tok_embd.data && m->w.lm_head.owned == NULL, "tied lm_head shares token_embd");
        CHECK(m->w.layers[0].bq.type == TL_F32 && m->w.layers[0].bq.cols == N_HEAD * HEAD_DIM);
        CHECK(m->w.layers[0].wq.owned == NULL, "F32 matrices point into the mmap");
        /* ne[0] is the input dim: row r of wq in memory is the r-th output feature */
        CHECK(m->w.layers[1].w_down.rows == N_EMBD && m->w.layers[1].w_down.cols == N_FF);
    }
    tl_model_free(m);
    v = (variant){.arch = "llama", .type = TL_GGML_F32};
    write_pair(&v, pq, pf);
    m = tl_model_load(pq, NULL, &e);
    CHECK(m && m->cfg.rope == TL_ROPE_NORM && !m->cfg.qkv_bias && !m->cfg.tied_embd && m->cfg.rope_theta == 10000.0f,
          "llama: adjacent-pair RoPE, default theta");
    tl_model_free(m);
}

static void expect_error(variant v, const char *want) {
    char pq[128], pf[128];
    snprintf(pq, sizeof pq, "%s/q.gguf", g_dir), snprintf(pf, sizeof pf, "%s/f.gguf", g_dir);
    write_pair(&v, pq, pf);
    tl_error e = {{0}};
    tl_model *m = tl_model_load(pq, NULL, &e);
    CHECK(m == NULL && strstr(e.msg, want), "want an error with '%s', got '%s'", want, m ? "(loaded)" : e.msg);
    tl_model_free(m);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tl_gguf_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    test_mapping();
    /* lossless: weights bit-exact; logits differ only by kernel arithmetic */
    test_type("llama", TL_GGML_F16, 0, 1e-5, TL_F16);
    test_type("llama", TL_GGML_BF16, 0, 1e-5, TL_BF16);
    test_type("llama", TL_GGML_Q8_0, 0, 1e-3, TL_Q8);
    /* Q4 weights bit-exact, but Q4 products quantize activations to int8 per 32-block at every
     * n_tok (docs/QUANT.md), which the f32 twin does not: measured logits rel err 0.075 (q4_0,
     * this random qwen2 model; the previous decode-only int8 path gave 0.069 token by token)
     * and 0.0085 (q4_1). The exact weight check above is the conversion check. */
    test_type("qwen2", TL_GGML_Q4_0, 0, 0.12, TL_Q4);
    test_type("llama", TL_GGML_Q4_1, 0, 2e-2, TL_Q4);
    /* lossy conversions (q4_K: f16 scales; q5_1/q5_K: int8 requantization); measured on this
     * model: weights 3.6e-5 / 2.9e-4 / 4.9e-4 max abs, logits 1.1e-4 / 1.6e-3 / 4.8e-4 rel */
    test_type("qwen2", TL_GGML_Q4_K, 2e-4, 1e-3, TL_Q4);
    test_type("llama", TL_GGML_Q5_0, 0, 1e-5, TL_Q8);
    test_type("llama", TL_GGML_Q5_1, 2e-3, 1e-2, TL_Q8);
    test_type("qwen2", TL_GGML_Q5_K, 2e-3, 5e-3, TL_Q8);
    test_type("llama", TL_GGML_Q6_K, 0, 1e-5, TL_Q8);
    expect_error((variant){.arch = "llama", .type = TL_GGML_F32, .drop = "blk.1.ffn_up.weight"}, "missing tensor blk.1.ffn_up.weight");
    expect_error((variant){.arch = "llama", .type = TL_GGML_F32, .bad_shape = "blk.0.attn_k.weight"}, "blk.0.attn_k.weight has shape");
    expect_error((variant){.arch = "qwen2", .type = TL_GGML_F32, .drop = "blk.1.attn_v.bias"}, "biases");
    expect_error((variant){.arch = "gpt2", .type = TL_GGML_F32}, "architecture 'gpt2' is not supported");
    expect_error((variant){.arch = "llama", .type = TL_GGML_F32, .drop_key = "embedding_length"}, "missing llama.embedding_length");
    expect_error((variant){.arch = "llama", .type = TL_GGML_Q2_K}, "q2_K");
    expect_error((variant){.arch = "llama", .type = TL_GGML_F32, .n_tokens = N_VOCAB + 1}, "65 tokens but token_embd.weight has only 64 rows");
    char p[128];
    snprintf(p, sizeof p, "%s/q.gguf", g_dir), unlink(p);
    snprintf(p, sizeof p, "%s/f.gguf", g_dir), unlink(p);
    rmdir(g_dir);
    TL_TEST_END();
}

/* model.c: load dispatch (folder / .gguf / dummy:), shape checks, sizes, free. */
#include "model/model.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include "quant/int4.h"
#include "tokenizer/tokenizer.h"


static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

tl_model *tl_model_load(const char *path, const tl_load_opts *opts, tl_error *e) {
    tl_load_opts def = {0};
    if (!opts) opts = &def;
    if (opts->quant_bits != 0 && opts->quant_bits != 4) {
        tl_errf(e, "unsupported quantization: %d bits (only int4)", opts->quant_bits);
        return NULL;
    }
    tl_model *m = tl_calloc(1, sizeof *m);
    m->path = tl_strdup(path);
    m->gen.top_p = 1;
    m->gen.repetition_penalty = 1;
    int rc;
    struct stat st;
    if (!strncmp(path, "dummy:", 6)) {
        rc = tl_load_dummy(m, path + 6, opts, e);
    } else if (stat(path, &st) != 0) {
        rc = tl_errf(e, "%s: no such file or folder (expected a Hugging Face model folder, a .gguf file, or "
                        "dummy:qwen2-0.5b)", path);
    } else if (S_ISDIR(st.st_mode)) {
        rc = tl_load_hf(m, path, opts, e);
    } else if (ends_with(path, ".gguf")) {
        rc = tl_load_gguf(m, path, opts, e);
    } else {
        rc = tl_errf(e, "%s: not a model folder or a .gguf file", path);
    }
    if (rc == 0) rc = tl_model_check_shapes(m, e);
    if (rc == 0 && opts->tokenizer_path && !m->tok) { /* dummy/GGUF/folder without one: use the given one */
        m->tok = tl_tokenizer_load(opts->tokenizer_path, e);
        if (!m->tok) rc = -1;
    }
    if (rc == 0 && m->cfg.n_eos == 0 && m->tok) m->cfg.n_eos = tl_tokenizer_eos(m->tok, m->cfg.eos_ids, TL_MAX_EOS);
    if (rc == 0 && opts->quant_bits == 4 && m->w.layers[0].wq.type != TL_Q4) {
        rc = tl_model_quantize(m, opts->group_size ? opts->group_size : 64, !opts->quiet, e);
    }
    if (rc != 0) {
        tl_model_free(m);
        return NULL;
    }
    return m;
}

static void free_tensor(tl_tensor *t) {
    free(t->owned);
    t->owned = NULL;
}

void tl_model_free(tl_model *m) {
    if (!m) return;
    if (m->w.layers) {
        for (int l = 0; l < m->cfg.n_layer; l++) {
            tl_layer *L = &m->w.layers[l];
            tl_tensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv,
                               &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) free_tensor(ts[i]);
        }
        free(m->w.layers);
    }
    if (m->w.lm_head.owned != m->w.tok_embd.owned) free_tensor(&m->w.lm_head);
    free_tensor(&m->w.tok_embd);
    free_tensor(&m->w.out_norm);
    for (int i = 0; i < m->n_maps; i++)
        if (m->maps[i].addr) munmap(m->maps[i].addr, m->maps[i].len);
    free(m->maps);
    if (m->tok) tl_tokenizer_free(m->tok);
    free(m->path);
    free(m);
}

static int check(const tl_tensor *t, const char *name, int l, int64_t rows, int64_t cols, tl_error *e) {
    if (!t->data) return tl_errf(e, "tensor %s (layer %d) is missing", name, l);
    if (t->rows != rows || t->cols != cols)
        return tl_errf(e, "tensor %s (layer %d): shape [%lld, %lld], config needs [%lld, %lld]", name, l,
                       (long long)t->rows, (long long)t->cols, (long long)rows, (long long)cols);
    return 0;
}

int tl_model_check_shapes(const tl_model *m, tl_error *e) {
    const tl_config *c = &m->cfg;
    if (c->n_layer <= 0 || c->n_embd <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || c->n_head % c->n_head_kv ||
        c->head_dim <= 0 || c->head_dim % 2 || c->n_ff <= 0 || c->n_vocab <= 0)
        return tl_errf(e, "model config is inconsistent (layers %d, n_embd %d, heads %d/%d, head_dim %d)", c->n_layer,
                       c->n_embd, c->n_head, c->n_head_kv, c->head_dim);
    const int64_t qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_head_kv * c->head_dim;
    if (check(&m->w.tok_embd, "token_embd", -1, c->n_vocab, c->n_embd, e) ||
        check(&m->w.lm_head, "lm_head", -1, c->n_vocab, c->n_embd, e) ||
        check(&m->w.out_norm, "output_norm", -1, 1, c->n_embd, e))
        return -1;
    for (int l = 0; l < c->n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        if (check(&L->attn_norm, "attn_norm", l, 1, c->n_embd, e) || check(&L->ffn_norm, "ffn_norm", l, 1, c->n_embd, e) ||
            check(&L->wq, "q_proj", l, qd, c->n_embd, e) || check(&L->wk, "k_proj", l, kvd, c->n_embd, e) ||
            check(&L->wv, "v_proj", l, kvd, c->n_embd, e) || check(&L->wo, "o_proj", l, c->n_embd, qd, e) ||
            check(&L->w_gate, "gate_proj", l, c->n_ff, c->n_embd, e) || check(&L->w_up, "up_proj", l, c->n_ff, c->n_embd, e) ||
            check(&L->w_down, "down_proj", l, c->n_embd, c->n_ff, e))
            return -1;
        if (c->qkv_bias && (check(&L->bq, "q_bias", l, 1, qd, e) || check(&L->bk, "k_bias", l, 1, kvd, e) ||
                            check(&L->bv, "v_bias", l, 1, kvd, e)))
            return -1;
        const tl_tensor *fs[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv};
        for (int i = 0; i < 5; i++)
            if (fs[i]->data && fs[i]->type != TL_F32) return tl_errf(e, "layer %d: norm/bias tensors must be f32", l);
    }
    return 0;
}

size_t tl_tensor_bytes(const tl_tensor *t) {
    if (!t->data) return 0;
    size_t n = (size_t)t->rows * (size_t)t->cols;
    switch (t->type) {
    case TL_F32: return n * 4;
    case TL_F16:
    case TL_BF16: return n * 2;
    case TL_Q4: return n / 2 + 2 * (n / (size_t)t->group) * (t->sb_type == TL_F32 ? 4 : 2);
    case TL_Q8: return n + (n / (size_t)t->group) * 4;
    }
    return 0;
}

size_t tl_model_weight_bytes(const tl_model *m) {
    size_t b = tl_tensor_bytes(&m->w.tok_embd) + tl_tensor_bytes(&m->w.out_norm);
    if (!m->cfg.tied_embd) b += tl_tensor_bytes(&m->w.lm_head);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        const tl_tensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv,
                                 &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) b += tl_tensor_bytes(ts[i]);
    }
    return b;
}

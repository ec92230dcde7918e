/* load_hf.c: a Hugging Face model folder (config.json + safetensors, single or sharded) -> tl_model.
 * 2-D f32/f16/bf16 weights point into the mmap; norms and biases are converted to owned f32;
 * MLX 4-bit checkpoints (<name>.weight uint32 + .scales + .biases) become TL_Q4 tensors. */
#include <unistd.h>

#include "formats/hfconfig.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"


static int st_to_dtype(tl_st_dtype t, tl_dtype *out) {
    switch (t) {
    case TL_ST_F32: *out = TL_F32; return 0;
    case TL_ST_F16: *out = TL_F16; return 0;
    case TL_ST_BF16: *out = TL_BF16; return 0;
    default: return -1;
    }
}

/* A 2-D matrix [rows, cols]: plain float weight, or MLX int4 triple when q->bits == 4. */
static int load_matrix(const tl_st_set *s, const char *name, int64_t rows, int64_t cols, const tl_hf_quant *q,
                       tl_tensor *out, tl_error *e) {
    char key[256];
    snprintf(key, sizeof key, "%s.weight", name);
    const tl_st_tensor *t = tl_st_find(s, key);
    if (!t) return tl_errf(e, "missing tensor '%s'", key);
    memset(out, 0, sizeof *out);
    out->rows = rows;
    out->cols = cols;
    if (t->dtype == TL_ST_U32 && q && q->bits == 4) {
        int g = q->group_size;
        if (cols % 8 || cols % g)
            return tl_errf(e, "tensor '%s': in-features %lld not a multiple of 8 and group size %d", key, (long long)cols, g);
        if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols / 8)
            return tl_errf(e, "tensor '%s': int4 shape must be [%lld, %lld]", key, (long long)rows, (long long)cols / 8);
        char ks[256], kb[256];
        snprintf(ks, sizeof ks, "%s.scales", name);
        snprintf(kb, sizeof kb, "%s.biases", name);
        const tl_st_tensor *sc = tl_st_find(s, ks), *bi = tl_st_find(s, kb);
        if (!sc || !bi) return tl_errf(e, "tensor '%s': 4-bit weight without %s / %s", key, ks, kb);
        tl_dtype st, bt;
        if (st_to_dtype(sc->dtype, &st) || st_to_dtype(bi->dtype, &bt) || st != bt || st == TL_F32)
            return tl_errf(e, "tensor '%s': scales/biases must both be f16 or bf16", ks);
        if (sc->n_dims != 2 || sc->shape[0] != rows || sc->shape[1] != cols / g || bi->n_dims != 2 ||
            bi->shape[0] != rows || bi->shape[1] != cols / g)
            return tl_errf(e, "tensor '%s': scales/biases must be [%lld, %lld]", ks, (long long)rows, (long long)cols / g);
        if ((uintptr_t)t->data % 4 || (uintptr_t)sc->data % 2 || (uintptr_t)bi->data % 2)
            return tl_errf(e, "tensor '%s': 4-bit data not aligned to its element size in the file (a safetensors "
                              "header not padded to 8 bytes?)", key);
        out->type = TL_Q4;
        out->group = g;
        out->sb_type = st;
        out->data = (void *)t->data;
        out->scales = (void *)sc->data;
        out->biases = (void *)bi->data;
        return 0;
    }
    if (st_to_dtype(t->dtype, &out->type))
        return tl_errf(e, "tensor '%s': dtype %s not supported (f32, f16, bf16, or MLX 4-bit)", key,
                       tl_st_dtype_name(t->dtype));
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return tl_errf(e, "tensor '%s': shape [%lld, %lld] expected from config.json, file has %d-D [%lld, %lld]", key,
                       (long long)rows, (long long)cols, t->n_dims, (long long)t->shape[0],
                       (long long)(t->n_dims > 1 ? t->shape[1] : 0));
    out->data = (void *)t->data;
    size_t es = out->type == TL_F32 ? 4 : 2;
    if ((uintptr_t)t->data % es) { /* kernels read elements in place: give them an aligned copy */
        tl_warn("tensor '%s': data not aligned to its %zu-byte elements in the file (a safetensors header not "
                "padded to 8 bytes?): copying it", key, es);
        out->owned = tl_malloc(t->nbytes);
        memcpy(out->owned, t->data, t->nbytes);
        out->data = out->owned;
    }
    return 0;
}

/* A 1-D vector [n] converted to owned f32. */
static int load_vector(const tl_st_set *s, const char *key, int64_t n, tl_tensor *out, tl_error *e) {
    const tl_st_tensor *t = tl_st_find(s, key);
    if (!t) return tl_errf(e, "missing tensor '%s'", key);
    tl_dtype dt;
    if (st_to_dtype(t->dtype, &dt)) return tl_errf(e, "tensor '%s': dtype %s not supported", key, tl_st_dtype_name(t->dtype));
    if (t->n_dims != 1 || t->shape[0] != n)
        return tl_errf(e, "tensor '%s': shape [%lld] expected from config.json, file has [%lld]%s", key, (long long)n,
                       (long long)t->shape[0], t->n_dims != 1 ? " (wrong rank)" : "");
    memset(out, 0, sizeof *out);
    out->type = TL_F32;
    out->rows = 1;
    out->cols = n;
    float *f = tl_malloc((size_t)n * 4);
    const char *src = t->data; /* may be unaligned (a header not padded to 8 bytes): read by memcpy */
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        if (dt == TL_F32) memcpy(&f[i], src + 4 * i, 4);
        else memcpy(&h, src + 2 * i, 2), f[i] = dt == TL_BF16 ? tl_bf16_to_f32(h) : tl_f16_to_f32(h);
    }
    out->data = out->owned = f;
    return 0;
}

int tl_load_hf(tl_model *m, const char *dir, const tl_load_opts *o, tl_error *e) {
    tl_hf_quant q;
    if (tl_hf_read_config(dir, &m->cfg, &q, &m->gen, e)) return -1;
    tl_config *c = &m->cfg;
    tl_st_set s;
    if (tl_st_open_dir(&s, dir, e)) return -1;
    int rc = -1;
    const int64_t qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_head_kv * c->head_dim;
    tl_weights *w = &m->w;
    w->layers = tl_calloc((size_t)c->n_layer, sizeof(tl_layer));
    if (load_matrix(&s, "model.embed_tokens", c->n_vocab, c->n_embd, &q, &w->tok_embd, e)) goto out;
    if (load_vector(&s, "model.norm.weight", c->n_embd, &w->out_norm, e)) goto out;
    if (!c->tied_embd && !tl_st_find(&s, "lm_head.weight")) {
        tl_warn("%s: no lm_head.weight: using tied embeddings", dir);
        c->tied_embd = true;
    }
    if (c->tied_embd) {
        w->lm_head = w->tok_embd;
        w->lm_head.owned = NULL;
    } else if (load_matrix(&s, "lm_head", c->n_vocab, c->n_embd, &q, &w->lm_head, e)) {
        goto out;
    }
    for (int l = 0; l < c->n_layer; l++) {
        tl_layer *L = &w->layers[l];
        char p[160], k[200];
#define MAT(field, nm, r, cc) \
    (snprintf(k, sizeof k, "%s." nm, p), load_matrix(&s, k, r, cc, &q, &L->field, e))
#define VEC(field, nm, n) (snprintf(k, sizeof k, "%s." nm, p), load_vector(&s, k, n, &L->field, e))
        snprintf(p, sizeof p, "model.layers.%d", l);
        if (VEC(attn_norm, "input_layernorm.weight", c->n_embd) || VEC(ffn_norm, "post_attention_layernorm.weight", c->n_embd) ||
            MAT(wq, "self_attn.q_proj", qd, c->n_embd) || MAT(wk, "self_attn.k_proj", kvd, c->n_embd) ||
            MAT(wv, "self_attn.v_proj", kvd, c->n_embd) || MAT(wo, "self_attn.o_proj", c->n_embd, qd) ||
            MAT(w_gate, "mlp.gate_proj", c->n_ff, c->n_embd) || MAT(w_up, "mlp.up_proj", c->n_ff, c->n_embd) ||
            MAT(w_down, "mlp.down_proj", c->n_embd, c->n_ff))
            goto out;
        if (c->qkv_bias && (VEC(bq, "self_attn.q_proj.bias", qd) || VEC(bk, "self_attn.k_proj.bias", kvd) ||
                            VEC(bv, "self_attn.v_proj.bias", kvd)))
            goto out;
#undef MAT
#undef VEC
    }
    rc = 0;
out:
    /* Keep the mappings (weights point into them); drop the header metadata. */
    m->maps = tl_calloc((size_t)s.n_files, sizeof(tl_mapping));
    for (int i = 0; i < s.n_files; i++) {
        m->maps[m->n_maps].addr = s.files[i].map;
        m->maps[m->n_maps++].len = s.files[i].size;
        s.files[i].map = NULL;
    }
    tl_st_close_set(&s);
    if (rc) return rc;
    /* Tokenizer: optional (test checkpoints ship without one). */
    char tpath[4096];
    const char *tp = o && o->tokenizer_path ? o->tokenizer_path : NULL;
    if (!tp) {
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
        if (access(tpath, R_OK) == 0) tp = dir;
    }
    if (tp) {
        tl_error te;
        m->tok = tl_tokenizer_load(tp, &te);
        if (!m->tok) return tl_errf(e, "%s", te.msg);
    } else {
        tl_warn("%s: no tokenizer.json: the model works on token ids only (e.g. score --tokens)", dir);
    }
    const char *slash = strrchr(dir, '/');
    while (slash && slash[1] == 0 && slash > dir) { /* trailing slash */
        const char *p = slash - 1;
        while (p > dir && *p != '/') p--;
        slash = *p == '/' ? p : NULL;
        break;
    }
    snprintf(m->name, sizeof m->name, "%s", slash ? slash + 1 : dir);
    size_t nl = strlen(m->name);
    if (nl && m->name[nl - 1] == '/') m->name[nl - 1] = 0;
    return 0;
}

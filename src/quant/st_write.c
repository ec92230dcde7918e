/* st_write.c: a safetensors writer, and writing a (quantized) model as an HF-style folder in the
 * MLX 4-bit layout the HF loader reads back. Format: u64 LE header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with
 * spaces to a multiple of 8, then the tensor bytes back to back in header order. */
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/int4.h"

typedef struct {
    char *name;
    char dtype[8];
    int64_t shape[4];
    int ndim;
    const void *data;
    size_t nbytes;
} st_entry;

struct tl_st_writer {
    st_entry *e;
    int n, cap;
};

tl_st_writer *tl_st_writer_new(void) { return tl_calloc(1, sizeof(tl_st_writer)); }

void tl_st_writer_free(tl_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    free(w);
}

static size_t dtype_size(const char *d) {
    if (!strcmp(d, "F32") || !strcmp(d, "U32") || !strcmp(d, "I32")) return 4;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16")) return 2;
    if (!strcmp(d, "I8") || !strcmp(d, "U8")) return 1;
    return 0;
}

int tl_st_add(tl_st_writer *w, const char *name, const char *dtype, const int64_t *shape, int ndim, const void *data,
              size_t nbytes, tl_error *e) {
    size_t es = dtype_size(dtype);
    if (!es) return tl_errf(e, "safetensors: unknown dtype '%s'", dtype);
    if (ndim < 1 || ndim > 4) return tl_errf(e, "safetensors: '%s': %d dims", name, ndim);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (n * es != nbytes) return tl_errf(e, "safetensors: '%s': %zu bytes for its shape, %zu given", name, n * es, nbytes);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) return tl_errf(e, "safetensors: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = tl_realloc(w->e, (size_t)w->cap * sizeof(st_entry));
    }
    st_entry *t = &w->e[w->n++];
    memset(t, 0, sizeof *t);
    t->name = tl_strdup(name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
    t->ndim = ndim;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name); }

int tl_st_write(tl_st_writer *w, const char *path, tl_error *e) {
    qsort(w->e, (size_t)w->n, sizeof(st_entry), by_name);
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < w->e[i].ndim; d++) json_array_append_new(shape, json_integer(w->e[i].shape[d]));
        json_object_set_new(h, w->e[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", w->e[i].dtype, "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + w->e[i].nbytes)));
        off += w->e[i].nbytes;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t hl = strlen(js), padded = (hl + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(js);
        return tl_errf(e, "cannot create %s: %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(js, 1, hl, f) == hl;
    for (size_t i = hl; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; i < w->n && ok; i++) ok = fwrite(w->e[i].data, 1, w->e[i].nbytes, f) == w->e[i].nbytes;
    free(js);
    if (fclose(f) != 0) ok = false;
    if (!ok) return tl_errf(e, "writing %s failed: %s", path, strerror(errno));
    return 0;
}

/* ---- model -> HF folder ---- */
static int add_matrix(tl_st_writer *w, const char *name, const tl_tensor *t, tl_error *e) {
    char k[256];
    int64_t r = t->rows, c = t->cols;
    if (t->type == TL_Q4) {
        if (t->sb_type != TL_F16 && t->sb_type != TL_BF16) return tl_errf(e, "%s: f32 int4 scales cannot be written", name);
        const char *sbt = t->sb_type == TL_F16 ? "F16" : "BF16";
        int64_t sh[2] = {r, c / 8}, sg[2] = {r, c / t->group};
        size_t nsb = (size_t)(r * (c / t->group)) * 2;
        snprintf(k, sizeof k, "%s.weight", name);
        if (tl_st_add(w, k, "U32", sh, 2, t->data, (size_t)(r * c / 2), e)) return -1;
        snprintf(k, sizeof k, "%s.scales", name);
        if (tl_st_add(w, k, sbt, sg, 2, t->scales, nsb, e)) return -1;
        snprintf(k, sizeof k, "%s.biases", name);
        return tl_st_add(w, k, sbt, sg, 2, t->biases, nsb, e);
    }
    if (t->type == TL_Q8) return tl_errf(e, "%s: int8 (GGUF-converted) weights cannot be written as HF", name);
    int64_t sh[2] = {r, c};
    snprintf(k, sizeof k, "%s.weight", name);
    const char *dt = t->type == TL_F32 ? "F32" : t->type == TL_F16 ? "F16" : "BF16";
    return tl_st_add(w, k, dt, sh, 2, t->data, (size_t)(r * c) * (t->type == TL_F32 ? 4 : 2), e);
}

static int add_vector(tl_st_writer *w, const char *name, const tl_tensor *t, tl_error *e) {
    if (!t->data) return 0;
    if (t->type != TL_F32) return tl_errf(e, "%s: vector of type %s (f32 expected)", name, tl_dtype_name(t->type));
    int64_t n = t->rows * t->cols;
    return tl_st_add(w, name, "F32", &n, 1, t->data, (size_t)n * 4, e);
}

static json_t *make_config(const tl_model *m, const char *src_dir) {
    json_t *j = NULL;
    if (src_dir) {
        char p[4096];
        if (snprintf(p, sizeof p, "%s/config.json", src_dir) < (int)sizeof p) j = json_load_file(p, 0, NULL);
    }
    if (j && json_is_object(j)) return j;
    json_decref(j);
    const tl_config *c = &m->cfg;
    bool q = c->arch == TL_ARCH_QWEN2;
    j = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:s}", "architectures",
                  q ? "Qwen2ForCausalLM" : "LlamaForCausalLM", "model_type", q ? "qwen2" : "llama", "vocab_size",
                  c->n_vocab, "hidden_size", c->n_embd, "num_hidden_layers", c->n_layer, "num_attention_heads", c->n_head,
                  "num_key_value_heads", c->n_head_kv, "head_dim", c->head_dim, "intermediate_size", c->n_ff,
                  "max_position_embeddings", c->n_ctx, "rms_norm_eps", (double)c->rms_eps, "rope_theta",
                  (double)c->rope_theta, "tie_word_embeddings", c->tied_embd, "torch_dtype", "bfloat16");
    if (c->bos_id >= 0) json_object_set_new(j, "bos_token_id", json_integer(c->bos_id));
    if (c->n_eos == 1) json_object_set_new(j, "eos_token_id", json_integer(c->eos_ids[0]));
    if (c->n_eos > 1) {
        json_t *a = json_array();
        for (int i = 0; i < c->n_eos; i++) json_array_append_new(a, json_integer(c->eos_ids[i]));
        json_object_set_new(j, "eos_token_id", a);
    }
    return j;
}

static int copy_file(const char *from, const char *to, tl_error *e) {
    FILE *in = fopen(from, "rb");
    if (!in) return 0; /* optional file */
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return tl_errf(e, "cannot create %s: %s", to, strerror(errno));
    }
    char buf[65536];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    fclose(in);
    if (fclose(out) != 0 || !ok) return tl_errf(e, "writing %s failed", to);
    return 0;
}

static void remove_dir(const char *dir) {
    static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                  "generation_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"};
    char p[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (snprintf(p, sizeof p, "%s/%s", dir, files[i]) < (int)sizeof p) unlink(p);
    }
    rmdir(dir);
}

int tl_q4_save_hf(const tl_model *m, const char *src_dir, const char *out_dir, tl_error *e) {
    const tl_config *c = &m->cfg;
    const tl_weights *W = &m->w;
    struct stat st;
    if (stat(out_dir, &st) == 0) return tl_errf(e, "%s already exists (not overwriting)", out_dir);
    if (c->rope == TL_ROPE_NORM)
        return tl_errf(e, "this model's q/k rows are permuted for adjacent-pair RoPE (GGUF llama); "
                          "an HF folder would need them un-permuted (not supported)");
    int group = 0;
    tl_st_writer *w = tl_st_writer_new();
    int rc = -1;
    char tmp[3100], p[4096], q[4096];
    if (strlen(out_dir) > 3000) return tl_errf(e, "output path too long");
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", out_dir, (int)getpid());
    json_t *cfg = NULL;
    if (add_matrix(w, "model.embed_tokens", &W->tok_embd, e) || add_vector(w, "model.norm.weight", &W->out_norm, e))
        goto out;
    bool tied = W->lm_head.data == W->tok_embd.data;
    if (!tied && add_matrix(w, "lm_head", &W->lm_head, e)) goto out;
    for (int l = 0; l < c->n_layer; l++) {
        const tl_layer *L = &W->layers[l];
        char k[200];
#define MAT(nm, f) (snprintf(k, sizeof k, "model.layers.%d." nm, l), add_matrix(w, k, &L->f, e))
#define VEC(nm, f) (snprintf(k, sizeof k, "model.layers.%d." nm, l), add_vector(w, k, &L->f, e))
        if (MAT("self_attn.q_proj", wq) || MAT("self_attn.k_proj", wk) || MAT("self_attn.v_proj", wv) ||
            MAT("self_attn.o_proj", wo) || MAT("mlp.gate_proj", w_gate) || MAT("mlp.up_proj", w_up) ||
            MAT("mlp.down_proj", w_down) || VEC("input_layernorm.weight", attn_norm) ||
            VEC("post_attention_layernorm.weight", ffn_norm) || VEC("self_attn.q_proj.bias", bq) ||
            VEC("self_attn.k_proj.bias", bk) || VEC("self_attn.v_proj.bias", bv))
            goto out;
#undef MAT
#undef VEC
        const tl_tensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++)
            if (ts[i]->type == TL_Q4) {
                if (group && group != ts[i]->group) {
                    tl_errf(e, "int4 tensors with different group sizes (%d, %d): config.json holds one", group,
                            ts[i]->group);
                    goto out;
                }
                group = ts[i]->group;
            }
    }
    if (W->tok_embd.type == TL_Q4 && group && W->tok_embd.group != group) {
        tl_errf(e, "embedding group %d differs from the layers' %d", W->tok_embd.group, group);
        goto out;
    }
    if (!group && W->tok_embd.type == TL_Q4) group = W->tok_embd.group;
    cfg = make_config(m, src_dir);
    json_object_del(cfg, "quantization");
    json_object_del(cfg, "quantization_config");
    if (group) {
        json_object_set_new(cfg, "quantization", json_pack("{s:i,s:i}", "group_size", group, "bits", 4));
        json_object_set_new(cfg, "quantization_config", json_pack("{s:i,s:i}", "group_size", group, "bits", 4));
    }
    json_object_set_new(cfg, "tie_word_embeddings", json_boolean(tied));
    if (mkdir(tmp, 0755) != 0) {
        tl_errf(e, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    if (tl_st_write(w, p, e)) goto fail;
    snprintf(p, sizeof p, "%s/config.json", tmp);
    if (json_dump_file(cfg, p, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        tl_errf(e, "writing %s failed", p);
        goto fail;
    }
    static const char *extra[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                  "special_tokens_map.json", "vocab.json", "merges.txt"};
    for (size_t i = 0; src_dir && i < sizeof extra / sizeof extra[0]; i++) {
        if (snprintf(p, sizeof p, "%s/%s", src_dir, extra[i]) >= (int)sizeof p) continue;
        snprintf(q, sizeof q, "%s/%s", tmp, extra[i]);
        if (copy_file(p, q, e)) goto fail;
    }
    if (rename(tmp, out_dir) != 0) {
        tl_errf(e, "cannot rename %s to %s: %s", tmp, out_dir, strerror(errno));
        goto fail;
    }
    rc = 0;
    goto out;
fail:
    remove_dir(tmp);
out:
    json_decref(cfg);
    tl_st_writer_free(w);
    return rc;
}

/* load_gguf.c: a GGUF file (architectures llama, qwen2) -> tl_config + tl_weights (+ tokenizer).
 *
 * GGUF stores a matrix with ne[0] = input dim (cols) and ne[1] = output dim (rows): the same
 * row-major [out, in] bytes as HF, only the dims are listed in reverse. F32/F16/BF16 matrices point
 * into the mmap; quantized ggml types are converted to TL_Q4/TL_Q8 (quant/ggml_types.h), with the
 * conversion error logged per tensor at TL_LOG=3 and summed up at info level. Norm weights and
 * biases become f32. RoPE pairing follows the architecture: llama GGUFs have q/k rows permuted
 * for adjacent pairs (TL_ROPE_NORM), qwen2 GGUFs keep HF's half split (TL_ROPE_NEOX). */
#include <inttypes.h>
#include <math.h>
#include <sys/mman.h>

#include "core/pool.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "quant/ggml_types.h"
#include "tokenizer/tokenizer.h"

typedef struct loader {
    tl_gguf *g;
    tl_model *m;
    char arch[16];
    bool measure;                   /* TL_LOG >= 3: measure conversion error */
    int n_conv;                     /* tensors converted */
    double worst_rel_rms, worst_max_abs;
    char worst_name[96];
    tl_pool *pool;                  /* for conversions; created on the first one */
    tl_error *e;
} loader;

/* ---- hyperparameters ---- */

static const tl_gguf_kv *arch_kv(loader *L, const char *suffix) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    return tl_gguf_find(L->g, key);
}
/* Required (dflt < 0) or defaulted positive integer <arch>.<suffix>, at most maxv. */
static int get_int(loader *L, const char *suffix, int64_t dflt, int64_t maxv, int *out) {
    const tl_gguf_kv *kv = arch_kv(L, suffix);
    int64_t v = dflt;
    if (kv && !tl_gguf_kv_int(kv, &v))
        return tl_errf(L->e, "gguf: %s.%s has type %s, expected an integer", L->arch, suffix, tl_gguf_vtype_name(kv->type));
    if (!kv && dflt < 0) return tl_errf(L->e, "gguf: missing %s.%s", L->arch, suffix);
    if (v <= 0 || v > maxv)
        return tl_errf(L->e, "gguf: %s.%s = %" PRId64 " is out of range (1..%" PRId64 ")", L->arch, suffix, v, maxv);
    *out = (int)v;
    return 0;
}
static int get_float(loader *L, const char *suffix, double dflt, float *out) {
    const tl_gguf_kv *kv = arch_kv(L, suffix);
    double v = dflt;
    if (kv && !tl_gguf_kv_float(kv, &v))
        return tl_errf(L->e, "gguf: %s.%s has type %s, expected a number", L->arch, suffix, tl_gguf_vtype_name(kv->type));
    if (!kv && dflt < 0) return tl_errf(L->e, "gguf: missing %s.%s", L->arch, suffix);
    if (!(v > 0) || !isfinite(v)) return tl_errf(L->e, "gguf: %s.%s = %g must be positive", L->arch, suffix, v);
    *out = (float)v;
    return 0;
}
/* A token id key: -1 when absent or out of [0, n_vocab) (files write 0xffffffff for "none"). */
static int token_id(const tl_gguf *g, const char *key, int n_vocab) {
    int64_t v;
    if (!tl_gguf_kv_int(tl_gguf_find(g, key), &v) || v < 0 || v >= n_vocab) return -1;
    return (int)v;
}

static int read_config(loader *L, tl_config *c) {
    tl_gguf_str s;
    if (!tl_gguf_kv_str(tl_gguf_find(L->g, "general.architecture"), &s))
        return tl_errf(L->e, "gguf: missing general.architecture");
    if (tl_gguf_str_eq(s, "llama")) c->arch = TL_ARCH_LLAMA, c->rope = TL_ROPE_NORM;
    else if (tl_gguf_str_eq(s, "qwen2")) c->arch = TL_ARCH_QWEN2, c->rope = TL_ROPE_NEOX;
    else return tl_errf(L->e, "gguf: architecture '%.*s' is not supported (llama, qwen2)", (int)TL_MIN(s.n, 64), s.p);
    snprintf(L->arch, sizeof L->arch, "%.*s", (int)s.n, s.p);
    if (get_int(L, "embedding_length", -1, 1 << 20, &c->n_embd) || get_int(L, "block_count", -1, 4096, &c->n_layer) ||
        get_int(L, "attention.head_count", -1, 4096, &c->n_head) ||
        get_int(L, "attention.head_count_kv", c->n_head, 4096, &c->n_head_kv) ||
        get_int(L, "feed_forward_length", -1, 1 << 22, &c->n_ff) || get_int(L, "context_length", 2048, 1 << 24, &c->n_ctx) ||
        get_float(L, "attention.layer_norm_rms_epsilon", -1, &c->rms_eps) ||
        get_float(L, "rope.freq_base", 10000.0, &c->rope_theta))
        return -1;
    if (c->n_head % c->n_head_kv)
        return tl_errf(L->e, "gguf: head_count %d is not a multiple of head_count_kv %d", c->n_head, c->n_head_kv);
    if (c->n_embd % c->n_head && !arch_kv(L, "attention.key_length"))
        return tl_errf(L->e, "gguf: embedding_length %d is not a multiple of head_count %d", c->n_embd, c->n_head);
    if (get_int(L, "attention.key_length", c->n_embd / TL_MAX(c->n_head, 1), 1 << 16, &c->head_dim)) return -1;
    int vdim, rdim;
    if (get_int(L, "attention.value_length", c->head_dim, 1 << 16, &vdim) ||
        get_int(L, "rope.dimension_count", c->head_dim, 1 << 16, &rdim))
        return -1;
    if (vdim != c->head_dim || rdim != c->head_dim || c->head_dim % 2)
        return tl_errf(L->e, "gguf: head dims key %d, value %d, rope %d: only equal, even dims are supported", c->head_dim,
                       vdim, rdim);
    tl_gguf_str st;
    if (tl_gguf_kv_str(arch_kv(L, "rope.scaling.type"), &st) && !tl_gguf_str_eq(st, "none"))
        tl_warn("gguf: rope scaling '%.*s' is ignored", (int)TL_MIN(st.n, 32), st.p);
    /* vocabulary: the embedding's rows; the token list may be shorter (ids past it have no text),
     * never longer */
    const tl_gguf_kv *tok = tl_gguf_find(L->g, "tokenizer.ggml.tokens");
    const tl_gguf_tensor *emb = tl_gguf_find_tensor(L->g, "token_embd.weight");
    if (!emb) return tl_errf(L->e, "gguf: missing tensor token_embd.weight");
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX)
        return tl_errf(L->e, "gguf: token_embd.weight has %" PRId64 " rows", emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    if (tok && tok->type == TL_GGUF_ARRAY && tok->arr_n != (uint64_t)c->n_vocab) {
        if (tok->arr_n > (uint64_t)c->n_vocab)
            return tl_errf(L->e, "gguf: %" PRIu64 " tokens but token_embd.weight has only %d rows", tok->arr_n, c->n_vocab);
        tl_warn("gguf: %" PRIu64 " tokens for %d embedding rows", tok->arr_n, c->n_vocab);
    }
    c->bos_id = token_id(L->g, "tokenizer.ggml.bos_token_id", c->n_vocab);
    c->n_eos = 0;
    static const char *eos_keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                     "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 3; i++) {
        int id = token_id(L->g, eos_keys[i], c->n_vocab);
        bool dup = false;
        for (int j = 0; j < c->n_eos; j++) dup |= c->eos_ids[j] == id;
        if (id >= 0 && !dup) c->eos_ids[c->n_eos++] = id;
    }
    return 0;
}

/* ---- tensors ---- */

typedef enum { T_MATRIX, T_VECTOR } tkind;

/* Loads `name` as [rows, cols] (vectors: rows 1, f32). Optional tensors that are absent leave
 * *t zeroed and return 0 when `optional`. */
static int load_tensor(loader *L, const char *name, int64_t rows, int64_t cols, tkind kind, bool optional, tl_tensor *t) {
    memset(t, 0, sizeof *t);
    const tl_gguf_tensor *gt = tl_gguf_find_tensor(L->g, name);
    if (!gt) return optional ? 0 : tl_errf(L->e, "gguf: missing tensor %s", name);
    int64_t want_ne1 = kind == T_VECTOR ? 1 : rows;
    if (gt->ne[0] != cols || gt->ne[1] != want_ne1 || gt->ne[2] != 1 || gt->ne[3] != 1)
        return tl_errf(L->e, "gguf: tensor %s has shape ne=[%" PRId64 ", %" PRId64 ", %" PRId64 "], expected [%" PRId64
                       ", %" PRId64 "] (ne[0] = input dim)", name, gt->ne[0], gt->ne[1], gt->ne[2], cols, want_ne1);
    tl_ggml_type_info ti = tl_ggml_type_get(gt->type);
    t->rows = want_ne1, t->cols = cols;
    bool plain = gt->type == TL_GGML_F32 || gt->type == TL_GGML_F16 || gt->type == TL_GGML_BF16;
    if (plain && kind == T_MATRIX) {
        int esz = gt->type == TL_GGML_F32 ? 4 : 2;
        t->type = gt->type == TL_GGML_F32 ? TL_F32 : gt->type == TL_GGML_F16 ? TL_F16 : TL_BF16;
        if ((uintptr_t)gt->data % (uintptr_t)esz == 0) {
            t->data = (void *)gt->data; /* into the mmap */
        } else {                        /* alignment < element size: copy */
            t->owned = t->data = tl_aligned_alloc((size_t)gt->nbytes);
            memcpy(t->data, gt->data, (size_t)gt->nbytes);
        }
        return 0;
    }
    if (kind == T_VECTOR || !tl_ggml_convertible(gt->type)) {
        if (!ti.dequant)
            return tl_errf(L->e, "gguf: tensor %s has type %s, which tinyllm cannot load", name, ti.name);
        t->type = TL_F32; /* vectors, and matrices of types we only dequantize */
        t->owned = t->data = tl_aligned_alloc((size_t)(rows * cols) * sizeof(float) + 4);
        tl_ggml_dequant_ref(gt->type, gt->data, t->data, t->rows * cols);
        return 0;
    }
    tl_ggml_conv_err err, *pe = L->measure ? &err : NULL;
    if (!L->pool) L->pool = tl_pool_create(0);
    if (tl_ggml_convert(gt->type, gt->data, rows, cols, t, pe, L->pool, L->e)) return -1;
    L->n_conv++;
    if (pe) {
        tl_debug("gguf: %-28s %-5s -> %s: max abs err %.3g (max |w| %.3g), rel rms %.3g", name, ti.name,
                 tl_dtype_name(t->type), err.max_abs, err.max_ref, err.rel_rms);
        if (err.rel_rms >= L->worst_rel_rms) {
            L->worst_rel_rms = err.rel_rms;
            snprintf(L->worst_name, sizeof L->worst_name, "%s (%s)", name, ti.name);
        }
        L->worst_max_abs = fmax(L->worst_max_abs, err.max_abs);
    }
    return 0;
}

static int load_weights(loader *L) {
    tl_config *c = &L->m->cfg;
    tl_weights *w = &L->m->w;
    int64_t q_dim = (int64_t)c->n_head * c->head_dim, kv_dim = (int64_t)c->n_head_kv * c->head_dim;
    if (load_tensor(L, "token_embd.weight", c->n_vocab, c->n_embd, T_MATRIX, false, &w->tok_embd) ||
        load_tensor(L, "output_norm.weight", 1, c->n_embd, T_VECTOR, false, &w->out_norm) ||
        load_tensor(L, "output.weight", c->n_vocab, c->n_embd, T_MATRIX, true, &w->lm_head))
        return -1;
    c->tied_embd = w->lm_head.data == NULL;
    if (c->tied_embd) {
        w->lm_head = w->tok_embd;
        w->lm_head.owned = NULL; /* tok_embd frees it */
    }
    w->layers = tl_calloc((size_t)c->n_layer, sizeof *w->layers);
    char nm[96];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
    for (int l = 0; l < c->n_layer; l++) {
        tl_layer *y = &w->layers[l];
        if (load_tensor(L, NAME("attn_norm.weight"), 1, c->n_embd, T_VECTOR, false, &y->attn_norm) ||
            load_tensor(L, NAME("attn_q.weight"), q_dim, c->n_embd, T_MATRIX, false, &y->wq) ||
            load_tensor(L, NAME("attn_k.weight"), kv_dim, c->n_embd, T_MATRIX, false, &y->wk) ||
            load_tensor(L, NAME("attn_v.weight"), kv_dim, c->n_embd, T_MATRIX, false, &y->wv) ||
            load_tensor(L, NAME("attn_q.bias"), 1, q_dim, T_VECTOR, true, &y->bq) ||
            load_tensor(L, NAME("attn_k.bias"), 1, kv_dim, T_VECTOR, true, &y->bk) ||
            load_tensor(L, NAME("attn_v.bias"), 1, kv_dim, T_VECTOR, true, &y->bv) ||
            load_tensor(L, NAME("attn_output.weight"), c->n_embd, q_dim, T_MATRIX, false, &y->wo) ||
            load_tensor(L, NAME("ffn_norm.weight"), 1, c->n_embd, T_VECTOR, false, &y->ffn_norm) ||
            load_tensor(L, NAME("ffn_gate.weight"), c->n_ff, c->n_embd, T_MATRIX, false, &y->w_gate) ||
            load_tensor(L, NAME("ffn_up.weight"), c->n_ff, c->n_embd, T_MATRIX, false, &y->w_up) ||
            load_tensor(L, NAME("ffn_down.weight"), c->n_embd, c->n_ff, T_MATRIX, false, &y->w_down))
            return -1;
        bool has_b = y->bq.data && y->bk.data && y->bv.data;
        if (l == 0) c->qkv_bias = has_b;
        if (has_b != c->qkv_bias || (!has_b && (y->bq.data || y->bk.data || y->bv.data)))
            return tl_errf(L->e, "gguf: layer %d: q/k/v biases must be all present or all absent, as in layer 0", l);
    }
#undef NAME
    if (c->arch == TL_ARCH_QWEN2 && !c->qkv_bias) tl_warn("gguf: qwen2 file without q/k/v biases");
    return 0;
}

/* ---- tokenizer from tokenizer.ggml.* ---- */

/* The tokenizer module reads the tokenizer.ggml.* keys (tl_tokenizer_from_gguf); a file without a
 * token list loads without a tokenizer. */
int tl_gguf_tokenizer(const tl_gguf *g, struct tl_tokenizer **out, tl_error *e) {
    *out = NULL;
    if (!tl_gguf_find(g, "tokenizer.ggml.tokens")) return 0;
    *out = tl_tokenizer_from_gguf(g, e);
    return *out ? 0 : -1;
}

int tl_load_gguf(tl_model *m, const char *file, const tl_load_opts *o, tl_error *e) {
    (void)o;
    double t0 = tl_now();
    tl_gguf *g = tl_gguf_open(file, e);
    if (!g) return -1;
    m->maps = tl_realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *m->maps);
    tl_gguf_take_map(g, &m->maps[m->n_maps].addr, &m->maps[m->n_maps].len);
    m->n_maps++;
    const char *lv = getenv("TL_LOG");
    loader L = {.g = g, .m = m, .e = e, .measure = lv && atoi(lv) >= TL_LOG_DEBUG};
    int rc = read_config(&L, &m->cfg);
    if (!rc) rc = load_weights(&L);
    if (!rc) rc = tl_gguf_tokenizer(g, &m->tok, e);
    if (!rc && !m->tok) tl_warn("gguf: no tokenizer.ggml.tokens: loading without a tokenizer");
    if (!rc && !m->name[0]) {
        tl_gguf_str s;
        const char *base = strrchr(file, '/');
        if (tl_gguf_kv_str(tl_gguf_find(g, "general.name"), &s))
            snprintf(m->name, sizeof m->name, "%.*s (gguf)", (int)TL_MIN(s.n, 100), s.p);
        else snprintf(m->name, sizeof m->name, "%.120s", base ? base + 1 : file);
    }
    if (!rc && L.n_conv) {
        if (L.measure)
            tl_info("gguf: converted %d quantized tensors; worst rel rms %.3g in %s, worst max abs %.3g", L.n_conv,
                    L.worst_rel_rms, L.worst_name, L.worst_max_abs);
        else tl_info("gguf: converted %d quantized tensors to int4/int8 (TL_LOG=3 measures the error)", L.n_conv);
    }
    if (!rc)
        tl_debug("gguf: %s: %s, %d layers, n_embd %d, %d/%d heads, n_ff %d, vocab %d, loaded in %.2f s", file, L.arch,
                 m->cfg.n_layer, m->cfg.n_embd, m->cfg.n_head, m->cfg.n_head_kv, m->cfg.n_ff, m->cfg.n_vocab,
                 tl_now() - t0);
    tl_pool_free(L.pool);
    tl_gguf_free(g);
    return rc;
}

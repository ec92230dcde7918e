/* hfconfig.c: reads the fields of config.json that define the architecture, with range checks. */
#include "formats/hfconfig.h"

#include <jansson.h>
#include <unistd.h>

static int get_int(json_t *o, const char *k, int def, int lo, int hi, int *out, const char *path, tl_error *e) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) {
        if (def == INT32_MIN) return tl_errf(e, "%s: missing \"%s\"", path, k);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return tl_errf(e, "%s: \"%s\" must be an integer", path, k);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return tl_errf(e, "%s: \"%s\" = %lld is out of range [%d, %d]", path, k, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int get_float(json_t *o, const char *k, double def, double lo, double hi, float *out, const char *path,
                     tl_error *e) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v)) return tl_errf(e, "%s: \"%s\" must be a number", path, k);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return tl_errf(e, "%s: \"%s\" = %g is out of range", path, k, x);
    *out = (float)x;
    return 0;
}

/* eos_token_id may be an int or a list of ints. */
static void read_eos(json_t *o, int *ids, int *n) {
    json_t *v = json_object_get(o, "eos_token_id");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        ids[0] = (int)json_integer_value(v);
        *n = 1;
    } else if (json_is_array(v)) {
        *n = 0;
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (json_is_integer(x) && json_integer_value(x) >= 0 && *n < TL_MAX_EOS) ids[(*n)++] =
            (int)json_integer_value(x);
    }
}

int tl_hf_parse_config(const char *text, size_t len, const char *path, tl_config *c, tl_hf_quant *q, tl_error *e) {
    memset(c, 0, sizeof *c);
    if (q) memset(q, 0, sizeof *q);
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o) return tl_errf(e, "%s: invalid JSON: %s (line %d)", path, je.text, je.line);
    int rc = -1;
    if (!json_is_object(o)) {
        tl_errf(e, "%s: not a JSON object", path);
        goto out;
    }
    json_t *archs = json_object_get(o, "architectures");
    const char *arch = json_is_array(archs) ? json_string_value(json_array_get(archs, 0)) : NULL;
    const char *mtype = json_string_value(json_object_get(o, "model_type"));
    if ((arch && !strcmp(arch, "Qwen2ForCausalLM")) || (!arch && mtype && !strcmp(mtype, "qwen2"))) {
        c->arch = TL_ARCH_QWEN2;
        c->qkv_bias = true;
    } else if ((arch && !strcmp(arch, "LlamaForCausalLM")) || (!arch && mtype && !strcmp(mtype, "llama"))) {
        c->arch = TL_ARCH_LLAMA;
        c->qkv_bias = json_is_true(json_object_get(o, "attention_bias"));
    } else {
        tl_errf(e, "%s: unsupported architecture '%s' (supported: Qwen2ForCausalLM, LlamaForCausalLM)", path,
                arch ? arch : mtype ? mtype : "(none)");
        goto out;
    }
    if (get_int(o, "hidden_size", INT32_MIN, 1, 1 << 16, &c->n_embd, path, e) ||
        get_int(o, "intermediate_size", INT32_MIN, 1, 1 << 20, &c->n_ff, path, e) ||
        get_int(o, "num_hidden_layers", INT32_MIN, 1, 1024, &c->n_layer, path, e) ||
        get_int(o, "num_attention_heads", INT32_MIN, 1, 1024, &c->n_head, path, e) ||
        get_int(o, "num_key_value_heads", c->n_head, 1, 1024, &c->n_head_kv, path, e) ||
        get_int(o, "vocab_size", INT32_MIN, 1, 1 << 24, &c->n_vocab, path, e) ||
        get_int(o, "max_position_embeddings", 32768, 1, 1 << 24, &c->n_ctx, path, e) ||
        get_int(o, "head_dim", c->n_embd / c->n_head, 1, 1024, &c->head_dim, path, e) ||
        get_int(o, "bos_token_id", -1, -1, 1 << 24, &c->bos_id, path, e) ||
        get_float(o, "rms_norm_eps", 1e-6, 0, 1, &c->rms_eps, path, e) ||
        get_float(o, "rope_theta", 10000.0, 1, 1e12, &c->rope_theta, path, e))
        goto out;
    /* transformers >= 5 writes rope settings under "rope_parameters" */
    json_t *rp = json_object_get(o, "rope_parameters");
    if (json_is_object(rp) && !json_object_get(o, "rope_theta")) {
        if (get_float(rp, "rope_theta", 10000.0, 1, 1e12, &c->rope_theta, path, e)) goto out;
        const char *rt = json_string_value(json_object_get(rp, "rope_type"));
        if (rt && strcmp(rt, "default"))
            tl_warn("%s: rope_type '%s' is not supported; using plain RoPE (long contexts may degrade)", path, rt);
    }
    if (c->n_head % c->n_head_kv != 0) {
        tl_errf(e, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", path, c->n_head,
                c->n_head_kv);
        goto out;
    }
    if (c->head_dim < 1) { /* the default, hidden_size / num_attention_heads, is not range-checked by get_int */
        tl_errf(e, "%s: head_dim is 0 (hidden_size %d / num_attention_heads %d) and no \"head_dim\" given", path,
                c->n_embd, c->n_head);
        goto out;
    }
    if (c->head_dim % 2) {
        tl_errf(e, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
        goto out;
    }
    json_t *rs = json_object_get(o, "rope_scaling");
    if (rs && !json_is_null(rs)) tl_warn("%s: rope_scaling is not supported; ignoring it (long contexts may degrade)", path);
    c->rope = TL_ROPE_NEOX; /* HF checkpoints always use the half-split pairing */
    c->tied_embd = json_is_true(json_object_get(o, "tie_word_embeddings"));
    read_eos(o, c->eos_ids, &c->n_eos);
    json_t *qj = json_object_get(o, "quantization");
    if (!qj) qj = json_object_get(o, "quantization_config");
    if (q && json_is_object(qj)) {
        if (get_int(qj, "bits", 0, 0, 16, &q->bits, path, e) || get_int(qj, "group_size", 64, 1, 1 << 16, &q->group_size, path, e))
            goto out;
        if (q->bits != 4) {
            tl_errf(e, "%s: quantization with %d bits is not supported (only 4-bit affine, MLX layout)", path, q->bits);
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int tl_hf_read_config(const char *dir, tl_config *c, tl_hf_quant *q, tl_gen_defaults *g, tl_error *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len;
    char *text = tl_read_file(path, &len, e);
    if (!text) return -1;
    int rc = tl_hf_parse_config(text, len, path, c, q, e);
    free(text);
    if (rc) return rc;
    g->temperature = 0;
    g->top_p = 1;
    g->top_k = 0;
    g->repetition_penalty = 1;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (access(path, R_OK) == 0) {
        json_error_t je;
        json_t *o = json_load_file(path, 0, &je);
        if (!json_is_object(o)) {
            tl_warn("%s: ignoring unreadable generation config: %s", path, je.text);
        } else {
            int ids[TL_MAX_EOS], n = 0;
            read_eos(o, ids, &n);
            if (n) { /* generation_config's eos list is what generation stops on */
                memcpy(c->eos_ids, ids, sizeof ids);
                c->n_eos = n;
            }
            json_t *v;
            if (json_is_true(json_object_get(o, "do_sample")) || !json_object_get(o, "do_sample")) {
                if (json_is_number(v = json_object_get(o, "temperature"))) g->temperature = (float)json_number_value(v);
            }
            if (json_is_number(v = json_object_get(o, "top_p"))) g->top_p = (float)json_number_value(v);
            if (json_is_integer(v = json_object_get(o, "top_k"))) g->top_k = (int)json_integer_value(v);
            if (json_is_number(v = json_object_get(o, "repetition_penalty")))
                g->repetition_penalty = (float)json_number_value(v);
        }
        json_decref(o);
    }
    return 0;
}

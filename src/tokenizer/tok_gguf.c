/* tok_gguf.c: tl_tokenizer_from_gguf: reads a GGUF file's tokenizer.* metadata (formats/gguf.h) into a
 * tl_vocab_spec and builds the tokenizer with tl_tokenizer_from_vocab. */
#include "formats/gguf.h"
#include "tokenizer/tok_internal.h"

static char *dup_str(tl_gguf_str s) {
    char *d = tl_malloc(s.n + 1);
    memcpy(d, s.p, s.n);
    d[s.n] = 0;
    return d;
}

static int get_id(const tl_gguf *g, const char *key, int n) {
    int64_t v;
    if (!tl_gguf_kv_int(tl_gguf_find(g, key), &v) || v < 0 || v >= n) return -1;
    return (int)v;
}

static bool get_bool(const tl_gguf *g, const char *key, bool def) {
    int64_t v;
    return tl_gguf_kv_int(tl_gguf_find(g, key), &v) ? v != 0 : def;
}

static char *get_str(const tl_gguf *g, const char *key) {
    tl_gguf_str s;
    return tl_gguf_kv_str(tl_gguf_find(g, key), &s) ? dup_str(s) : NULL;
}

tl_tokenizer *tl_tokenizer_from_gguf(const struct tl_gguf *g, tl_error *e) {
    const tl_gguf_kv *tk = tl_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != TL_GGUF_ARRAY || tk->arr_type != TL_GGUF_STRING)
        return tl_errf(e, "gguf: no tokenizer.ggml.tokens string array"), NULL;
    if (tk->arr_n == 0 || tk->arr_n > (1u << 24)) return tl_errf(e, "gguf: tokenizer.ggml.tokens has %llu entries", (unsigned long long)tk->arr_n), NULL;
    int n = (int)tk->arr_n;
    tl_vocab_spec s = {0};
    char *model = get_str(g, "tokenizer.ggml.model"), *pre = get_str(g, "tokenizer.ggml.pre");
    char *tmpl = get_str(g, "tokenizer.chat_template");
    char **toks = tl_calloc((size_t)n, sizeof *toks), **merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int n_merges = 0;
    tl_tokenizer *t = NULL;
    for (int i = 0; i < n; i++) {
        tl_gguf_str st;
        if (!tl_gguf_arr_str(tk, (uint64_t)i, &st)) {
            tl_errf(e, "gguf: tokenizer.ggml.tokens[%d] is not a string", i);
            goto done;
        }
        toks[i] = dup_str(st);
    }
    const tl_gguf_kv *sc = tl_gguf_find(g, "tokenizer.ggml.scores"), *ty = tl_gguf_find(g, "tokenizer.ggml.token_type");
    const tl_gguf_kv *mg = tl_gguf_find(g, "tokenizer.ggml.merges");
    if (sc && sc->type == TL_GGUF_ARRAY && sc->arr_n == (uint64_t)n) {
        scores = tl_malloc(sizeof *scores * (size_t)n);
        for (int i = 0; i < n; i++) {
            double v = 0;
            tl_gguf_arr_float(sc, (uint64_t)i, &v);
            scores[i] = (float)v;
        }
    }
    if (ty && ty->type == TL_GGUF_ARRAY && ty->arr_n == (uint64_t)n) {
        types = tl_malloc(sizeof *types * (size_t)n);
        for (int i = 0; i < n; i++) {
            int64_t v = 1;
            tl_gguf_arr_int(ty, (uint64_t)i, &v);
            types[i] = (int32_t)v;
        }
    }
    if (mg && mg->type == TL_GGUF_ARRAY && mg->arr_type == TL_GGUF_STRING) {
        if (mg->arr_n > (1u << 24)) {
            tl_errf(e, "gguf: tokenizer.ggml.merges has %llu entries", (unsigned long long)mg->arr_n);
            goto done;
        }
        n_merges = (int)mg->arr_n;
        merges = tl_calloc((size_t)n_merges + 1, sizeof *merges);
        for (int i = 0; i < n_merges; i++) {
            tl_gguf_str st;
            if (!tl_gguf_arr_str(mg, (uint64_t)i, &st)) {
                tl_errf(e, "gguf: tokenizer.ggml.merges[%d] is not a string", i);
                goto done;
            }
            merges[i] = dup_str(st);
        }
    }
    bool spm = model && !strcmp(model, "llama");
    s.model = model;
    s.pre = pre;
    s.n_tokens = n;
    s.tokens = (const char *const *)toks;
    s.scores = scores;
    s.token_types = types;
    s.n_merges = n_merges;
    s.merges = (const char *const *)merges;
    s.bos = get_id(g, "tokenizer.ggml.bos_token_id", n);
    s.eos = get_id(g, "tokenizer.ggml.eos_token_id", n);
    s.unk = get_id(g, "tokenizer.ggml.unknown_token_id", n);
    s.pad = get_id(g, "tokenizer.ggml.padding_token_id", n);
    s.add_bos = get_bool(g, "tokenizer.ggml.add_bos_token", spm); /* llama.cpp's defaults */
    s.add_eos = get_bool(g, "tokenizer.ggml.add_eos_token", false);
    s.no_space_prefix = !get_bool(g, "tokenizer.ggml.add_space_prefix", spm);
    s.chat_template = tmpl;
    t = tl_tokenizer_from_vocab(&s, e);
    if (t) { /* end-of-turn ids count as eos too */
        int eot = get_id(g, "tokenizer.ggml.eot_token_id", n), eom = get_id(g, "tokenizer.ggml.eom_token_id", n);
        for (int k = 0; k < 2; k++) {
            int id = k ? eom : eot;
            bool dup = id < 0;
            for (int j = 0; j < t->n_eos; j++) dup |= t->eos[j] == id;
            if (!dup && t->n_eos < 8) t->eos[t->n_eos++] = id;
        }
    }
done:
    for (int i = 0; i < n; i++) free(toks[i]);
    for (int i = 0; i < n_merges; i++) free(merges ? merges[i] : NULL);
    free(toks);
    free(merges);
    free(scores);
    free(types);
    free(model);
    free(pre);
    free(tmpl);
    return t;
}

/* tok_load.c: tl_tokenizer_load: HF tokenizer.json (byte-level BPE) with jansson, plus
 * tokenizer_config.json / chat_template.jinja / generation_config.json beside it when present. */
#include <jansson.h>
#include <sys/stat.h>

#include "tokenizer/tok_internal.h"

#define MAX_VOCAB (1 << 24)

void tl_tok_alloc_ids(tl_tokenizer *t, int n) {
    t->n_vocab = n;
    t->piece = tl_calloc((size_t)n, sizeof *t->piece);
    t->piece_len = tl_calloc((size_t)n, sizeof *t->piece_len);
    t->attr = tl_calloc((size_t)n, sizeof *t->attr);
}

static int load_pre_tokenizer(tl_tokenizer *t, json_t *pt, tl_error *e) {
    if (!pt || json_is_null(pt)) return 0;
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return tl_errf(e, "%s: pre_tokenizer has no \"type\"", t->src);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(pt, "pretokenizers");
        if (!json_is_array(arr)) return tl_errf(e, "%s: pre_tokenizer Sequence has no \"pretokenizers\" array", t->src);
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) if (load_pre_tokenizer(t, v, e)) return -1;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const char *pat = json_string_value(json_object_get(json_object_get(pt, "pattern"), "Regex"));
        const char *beh = json_string_value(json_object_get(pt, "behavior"));
        if (!pat) return tl_errf(e, "%s: Split pre-tokenizer without a Regex pattern is not supported", t->src);
        if (beh && strcmp(beh, "Isolated")) return tl_errf(e, "%s: Split behavior \"%s\" is not supported (only Isolated)", t->src, beh);
        if (json_is_true(json_object_get(pt, "invert"))) return tl_errf(e, "%s: Split with invert=true is not supported", t->src);
        if (t->re) return tl_errf(e, "%s: more than one Split pre-tokenizer is not supported", t->src);
        return tl_tok_bpe_set_regex(t, pat, e);
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pt, "add_prefix_space")))
            return tl_errf(e, "%s: ByteLevel add_prefix_space=true is not supported", t->src);
        json_t *ur = json_object_get(pt, "use_regex");
        if (!ur || json_is_true(ur)) {
            if (t->re) return tl_errf(e, "%s: Split followed by ByteLevel use_regex=true is not supported", t->src);
            return tl_tok_bpe_set_regex(t, tl_tok_pre_regex("gpt2"), e);
        }
        return 0;
    }
    return tl_errf(e, "%s: pre-tokenizer type \"%s\" is not supported", t->src, type);
}

static int load_normalizer(tl_tokenizer *t, json_t *nm, tl_error *e) {
    if (!nm || json_is_null(nm)) return 0;
    const char *type = json_string_value(json_object_get(nm, "type"));
    if (!type) return tl_errf(e, "%s: normalizer has no \"type\"", t->src);
    if (!strcmp(type, "NFC")) return t->nfc = true, 0;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(nm, "normalizers"), *v;
        size_t i;
        if (!json_is_array(arr)) return tl_errf(e, "%s: normalizer Sequence has no \"normalizers\" array", t->src);
        json_array_foreach(arr, i, v) if (load_normalizer(t, v, e)) return -1;
        return 0;
    }
    return tl_errf(e, "%s: normalizer \"%s\" is not supported (only NFC)", t->src, type);
}

static int load_json(tl_tokenizer *t, json_t *root, tl_error *e) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return tl_errf(e, "%s: no \"model\" object", t->src);
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (mt && strcmp(mt, "BPE")) return tl_errf(e, "%s: model type \"%s\" is not supported (only BPE)", t->src, mt);
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return tl_errf(e, "%s: model.vocab is missing or not an object", t->src);
    if (!json_is_array(merges)) return tl_errf(e, "%s: model.merges is missing or not an array", t->src);
    if (added && !json_is_null(added) && !json_is_array(added))
        return tl_errf(e, "%s: added_tokens is not an array", t->src);
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    /* ids */
    json_int_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_VOCAB)
            return tl_errf(e, "%s: vocab entry \"%.64s\" has a bad id", t->src, key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(json_object_get(v, "content")))
            return tl_errf(e, "%s: added_tokens[%zu] needs an integer \"id\" and a string \"content\"", t->src, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return tl_errf(e, "%s: empty vocab", t->src);
    tl_tok_alloc_ids(t, (int)max_id + 1);
    json_object_foreach(vocab, key, v) {
        int id = (int)json_integer_value(v);
        if (t->piece[id]) continue; /* duplicate id: first wins */
        t->piece[id] = tl_tok_bytelevel_decode(key, strlen(key), &t->piece_len[id]);
    }
    tl_tok_strmap_build(&t->map, t->n_vocab, (const char *const *)t->piece, t->piece_len);
    t->n_added = 0;
    t->added = tl_calloc(json_array_size(added) + 1, sizeof *t->added);
    json_array_foreach(added, i, v) {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (!t->piece[id]) t->piece[id] = tl_tok_bytelevel_decode(c, strlen(c), &t->piece_len[id]);
        t->attr[id] |= TOK_A_ADDED;
        bool sp = json_is_true(json_object_get(v, "special"));
        if (sp) t->attr[id] |= TOK_A_SPECIAL;
        tok_added *a = &t->added[t->n_added++];
        a->len = (uint32_t)strlen(c);
        a->id = id;
        a->special = sp;
        a->lstrip = json_is_true(json_object_get(v, "lstrip"));
        a->rstrip = json_is_true(json_object_get(v, "rstrip"));
        a->s = tl_strdup(c);
    }
    tl_tok_added_finish(t);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tl_tok_strmap_get(&t->map, &c, 1);
    }
    /* merges */
    size_t nm = json_array_size(merges);
    tl_tok_pairmap_init(&t->merges, (int)nm);
    json_array_foreach(merges, i, v) {
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(v)) {
            const char *s = json_string_value(v), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return tl_errf(e, "%s: merges[%zu] \"%.64s\" is not two tokens separated by one space", t->src, i, s);
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0)), la = strlen(a);
            b = json_string_value(json_array_get(v, 1)), lb = strlen(b);
        } else {
            return tl_errf(e, "%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", t->src, i);
        }
        if (tl_tok_add_merge(t, (int)i, a, la, b, lb, e)) return -1;
    }
    if (load_normalizer(t, json_object_get(root, "normalizer"), e)) return -1;
    if (load_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), e)) return -1;
    return 0;
}

/* Loads a JSON object from path into *out. A missing file: *out = NULL and 0 unless must. */
static int load_json_file(const char *path, json_t **out, bool must, tl_error *e) {
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0) return must ? tl_errf(e, "%s: no such file", path) : 0;
    json_error_t je;
    size_t len;
    char *text = tl_read_file(path, &len, e); /* json_load_file reads with getc: 2x slower */
    if (!text) return -1;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    if (!root) return tl_errf(e, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return tl_errf(e, "%s: top level is not a JSON object", path);
    }
    *out = root;
    return 0;
}

static int id_of_str(const tl_tokenizer *t, const char *s) {
    if (!s) return -1;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == strlen(s) && !memcmp(t->added[i].s, s, t->added[i].len)) return t->added[i].id;
    return tl_tok_strmap_get(&t->map, s, strlen(s));
}
static int id_of_token(const tl_tokenizer *t, json_t *v) { /* "content" string or {"content": ...} */
    if (json_is_object(v)) v = json_object_get(v, "content");
    return id_of_str(t, json_string_value(v));
}

static void add_eos(tl_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_vocab) return;
    for (int i = 0; i < t->n_eos; i++)
        if (t->eos[i] == id) return;
    if (t->n_eos < (int)(sizeof t->eos / sizeof t->eos[0])) t->eos[t->n_eos++] = id;
}

/* tokenizer_config.json, chat_template.jinja, generation_config.json in dir; each optional. */
static int load_configs(tl_tokenizer *t, const char *dir, tl_error *e) {
    char path[4200];
    char *tmpl = NULL;
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= (int)sizeof path) return tl_errf(e, "%s: path too long", dir);
    json_t *tc, *gc;
    if (load_json_file(path, &tc, false, e)) return -1;
    if (snprintf(path, sizeof path, "%s/chat_template.jinja", dir) >= (int)sizeof path) return tl_errf(e, "%s: path too long", dir);
    struct stat st;
    if (stat(path, &st) == 0 && !(tmpl = tl_read_file(path, NULL, e))) {
        json_decref(tc);
        return -1;
    }
    if (tc) {
        json_t *ct = json_object_get(tc, "chat_template");
        if (!tmpl && json_is_string(ct)) tmpl = tl_strdup(json_string_value(ct));
        if (!tmpl && json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
            size_t i;
            json_t *v;
            json_array_foreach(ct, i, v) {
                const char *name = json_string_value(json_object_get(v, "name"));
                const char *s = json_string_value(json_object_get(v, "template"));
                if (s && (!tmpl || (name && !strcmp(name, "default")))) free(tmpl), tmpl = tl_strdup(s);
            }
        }
        int id = id_of_token(t, json_object_get(tc, "bos_token"));
        if (id >= 0) t->bos = id;
        t->pad = id_of_token(t, json_object_get(tc, "pad_token"));
        if (json_is_true(json_object_get(tc, "add_bos_token")) && t->bos >= 0) t->add_bos = true;
    }
    if (snprintf(path, sizeof path, "%s/generation_config.json", dir) >= (int)sizeof path) return tl_errf(e, "%s: path too long", dir);
    if (load_json_file(path, &gc, false, e)) {
        json_decref(tc);
        free(tmpl);
        return -1;
    }
    if (gc) {
        json_t *eo = json_object_get(gc, "eos_token_id"), *v;
        size_t i;
        if (json_is_integer(eo)) add_eos(t, (int)json_integer_value(eo));
        json_array_foreach(eo, i, v) if (json_is_integer(v)) add_eos(t, (int)json_integer_value(v));
        json_t *bo = json_object_get(gc, "bos_token_id");
        if (json_is_integer(bo) && json_integer_value(bo) >= 0 && json_integer_value(bo) < t->n_vocab)
            t->bos = (int)json_integer_value(bo);
    }
    if (tc) add_eos(t, id_of_token(t, json_object_get(tc, "eos_token")));
    if (!t->n_eos) { /* bare tokenizer.json: the ChatML end-of-turn and end-of-text tokens when present */
        add_eos(t, id_of_str(t, "<|im_end|>"));
        add_eos(t, id_of_str(t, "<|endoftext|>"));
    }
    tl_tok_chat_detect(t, tmpl);
    free(tmpl);
    json_decref(tc);
    json_decref(gc);
    return 0;
}

tl_tokenizer *tl_tokenizer_load(const char *path, tl_error *e) {
    if (e) e->msg[0] = 0;
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        tl_errf(e, "%s: no such file or folder", path ? path : "(null)");
        return NULL;
    }
    char file[4096], dir[4096];
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
    } else {
        snprintf(file, sizeof file, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    tl_tokenizer *t = tl_calloc(1, sizeof *t);
    t->kind = TOK_BPE;
    t->src = tl_strdup(file);
    t->bos = t->pad = t->unk = -1;
    json_t *root = NULL;
    if (load_json_file(file, &root, true, e) || load_json(t, root, e) || load_configs(t, dir, e)) {
        json_decref(root);
        tl_tokenizer_free(t);
        return NULL;
    }
    json_decref(root);
    return t;
}

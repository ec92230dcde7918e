/* test_gguf_vocab.c: a GGUF byte-level BPE vocab ("gpt2", pre "qwen2") through tl_gguf_tokenizer.
 * The Qwen2 tokenizer.json (shared/assets) is written here as tokenizer.ggml.* arrays, the way
 * llama.cpp's converter lays them out (tokens by id, added specials as control tokens, merges
 * "a b"); the file's tokenizer must then give llama.cpp's reference ids for the 46 texts of
 * tokenizer-vectors/ggml-vocab-qwen2.gguf.inp/.out. */
#include <jansson.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "gguf_write.h"
#include "tokenizer/tokenizer.h"
#include "tl_test.h"

static int write_vocab_gguf(const char *path) {
    json_error_t je;
    json_t *tj = json_load_file(tl_shared("assets/qwen2-tokenizer/tokenizer.json"), 0, &je);
    if (!tj) return fprintf(stderr, "tokenizer.json: %s\n", je.text), -1;
    json_t *vocab = json_object_get(json_object_get(tj, "model"), "vocab");
    json_t *merges = json_object_get(json_object_get(tj, "model"), "merges");
    json_t *added = json_object_get(tj, "added_tokens");
    int n = (int)json_object_size(vocab) + (int)json_array_size(added);
    const char **toks = calloc((size_t)n, sizeof *toks);
    int32_t *types = calloc((size_t)n, sizeof *types);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        json_int_t id = json_integer_value(v);
        if (id >= 0 && id < n) toks[id] = k, types[id] = 1;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (id >= 0 && id < n) toks[id] = json_string_value(json_object_get(v, "content")), types[id] = 3;
    }
    int nm = (int)json_array_size(merges);
    const char **ms = calloc((size_t)nm, sizeof *ms);
    for (int j = 0; j < nm; j++) ms[j] = json_string_value(json_array_get(merges, (size_t)j));
    int rc = 0;
    for (int j = 0; j < n && !rc; j++) rc = toks[j] ? 0 : -1;
    for (int j = 0; j < nm && !rc; j++) rc = ms[j] ? 0 : -1; /* merges as "a b" strings */
    if (!rc) {
        gw w = {0};
        gw_str(&w, "general.architecture", "qwen2");
        gw_str(&w, "tokenizer.ggml.model", "gpt2");
        gw_str(&w, "tokenizer.ggml.pre", "qwen2");
        gw_arr_str(&w, "tokenizer.ggml.tokens", toks, n);
        gw_arr_i32(&w, "tokenizer.ggml.token_type", types, n);
        gw_arr_str(&w, "tokenizer.ggml.merges", ms, nm);
        gw_u32(&w, "tokenizer.ggml.eos_token_id", 151645);
        gw_u32(&w, "tokenizer.ggml.padding_token_id", 151643);
        gw_u32(&w, "tokenizer.ggml.bos_token_id", 151643);
        gw_bool(&w, "tokenizer.ggml.add_bos_token", 0);
        rc = gw_write(&w, path);
    }
    free(toks), free(types), free(ms);
    json_decref(tj);
    return rc;
}

int main(void) {
    char path[] = "/tmp/tl_vocab_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 1;
    close(fd);
    CHECK(write_vocab_gguf(path) == 0, "could not build the vocab file");
    tl_error e = {{0}};
    tl_gguf *g = tl_gguf_open(path, &e);
    CHECK(g != NULL, "%s", e.msg);
    tl_tokenizer *t = NULL;
    CHECK(g && tl_gguf_tokenizer(g, &t, &e) == 0 && t, "%s", e.msg);
    size_t in_len, out_len;
    char *inp = tl_read_file(tl_shared("assets/tokenizer-vectors/ggml-vocab-qwen2.gguf.inp"), &in_len, &e);
    char *out = tl_read_file(tl_shared("assets/tokenizer-vectors/ggml-vocab-qwen2.gguf.out"), &out_len, &e);
    CHECK(inp && out, "%s", e.msg);
    if (t && inp && out) {
        CHECK(tl_tokenizer_n_vocab(t) == 151646 && !tl_tokenizer_add_bos(t));
        CHECK(tl_tokenizer_is_special(t, 151644), "<|im_start|> is a control token");
        const char *sep = "\n__ggml_vocab_test__\n";
        char *text = inp, *line = out;
        int n_case = 0, n_ok = 0;
        while (text && line && *line) {
            char *end = strstr(text, sep), *nl = strchr(line, '\n');
            size_t tl = end ? (size_t)(end - text) : strlen(text);
            if (nl) *nl = 0;
            int32_t *ids = NULL;
            int n = tl_tokenizer_encode(t, text, tl, false, &ids, &e);
            bool same = n >= 0;
            char *p = line;
            for (int j = 0; same && j < n; j++) {
                char *q;
                long want = strtol(p, &q, 10);
                same = q != p && want == ids[j];
                p = q;
            }
            while (same && *p == ' ') p++;
            same = same && *p == 0;
            if (!same) fprintf(stderr, "case %d '%.*s': ids differ (want '%s')\n", n_case, (int)tl, text, line);
            n_ok += same;
            n_case++;
            free(ids);
            text = end ? end + strlen(sep) : NULL;
            line = nl ? nl + 1 : NULL;
        }
        CHECK(n_case >= 40 && n_ok == n_case, "%d of %d llama.cpp vectors match", n_ok, n_case);
        printf("%d of %d qwen2 GGUF-vocab vectors match\n", n_ok, n_case);
    }
    tl_tokenizer_free(t);
    tl_gguf_free(g);
    free(inp), free(out);
    unlink(path);
    TL_TEST_END();
}

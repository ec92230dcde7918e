/* test_stories_tok.c: SentencePiece-style tokenization of the stories260K GGUF vocab (512 tokens
 * with scores, <0xNN> byte fallback) against tests/data/stories260k_tok.json, made by
 * tools/spm_ref.py, an independent Python reference of llama.cpp's rules: BOS, a space prefix,
 * ' ' -> U+2581, highest-score merges (leftmost on ties), UTF-8 bytes for characters without a
 * token. Cases: leading/trailing/only spaces, newline and tab (byte tokens), accented, CJK and
 * emoji characters, an empty text. Then decode(encode(text)) == text for each. */
#include <jansson.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "tl_test.h"

int main(void) {
    tl_error e = {{0}};
    tl_model *m = tl_model_load(tl_shared("assets/stories260K/stories260K.gguf"), NULL, &e);
    CHECK(m && m->tok, "load: %s", m ? "no tokenizer" : e.msg);
    json_error_t je;
    json_t *cases = json_load_file("tests/data/stories260k_tok.json", 0, &je);
    CHECK(json_is_array(cases), "tests/data/stories260k_tok.json: %s", je.text);
    if (!m || !m->tok || !json_is_array(cases)) TL_TEST_END();
    CHECK(tl_tokenizer_n_vocab(m->tok) == 512 && tl_tokenizer_bos(m->tok) == 1 && tl_tokenizer_add_bos(m->tok));
    int32_t eos[4];
    CHECK(tl_tokenizer_eos(m->tok, eos, 4) >= 1 && eos[0] == 2);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        int32_t *ids = NULL;
        int n = tl_tokenizer_encode_prompt(m->tok, text, strlen(text), &ids, &e);
        bool same = n == (int)json_array_size(want);
        for (int k = 0; same && k < n; k++) same = ids[k] == json_integer_value(json_array_get(want, (size_t)k));
        if (!same) {
            fprintf(stderr, "case %zu '%s': got", i, text);
            for (int k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        CHECK(same, "case %zu: ids differ from the reference", i);
        char *back = n > 0 ? tl_tokenizer_decode(m->tok, ids, n, true) : NULL;
        CHECK(back && !strcmp(back, text), "case %zu: decode gives '%s', not '%s'", i, back ? back : "(null)", text);
        free(back);
        free(ids);
    }
    json_decref(cases);
    tl_model_free(m);
    TL_TEST_END();
}

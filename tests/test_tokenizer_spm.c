/* test_tokenizer_spm.c: the SentencePiece-style (GGUF "llama") tokenizer: a crafted vocab with ids
 * worked out by hand from llama.cpp's rules, and stories260K's real vocab against ids from the official
 * sentencepiece library (tests/data/tokenizer_spm_stories260K.jsonl, tools/gen_tokenizer_spm_vectors.py). */
#include <jansson.h>

#include "formats/gguf.h"
#include "tl_test.h"
#include "tokenizer/tokenizer.h"

static bool enc_is(const tl_tokenizer *t, const char *s, bool special, const int32_t *want, int nw) {
    tl_error e;
    int32_t *ids;
    int n = tl_tokenizer_encode(t, s, strlen(s), special, &ids, &e);
    bool ok = n == nw && (n == 0 || !memcmp(ids, want, sizeof *ids * (size_t)n));
    if (!ok) {
        fprintf(stderr, "encode \"%s\": got", s);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fputc('\n', stderr);
    }
    free(ids);
    return ok;
}

static bool dec_is(const tl_tokenizer *t, const int32_t *ids, int n, bool skip, const char *want) {
    char *s = tl_tokenizer_decode(t, ids, n, skip);
    bool ok = !strcmp(s, want);
    if (!ok) fprintf(stderr, "decode: got \"%s\" want \"%s\"\n", s, want);
    free(s);
    return ok;
}

static void test_crafted(void) {
    /* ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below */
    const char *toks[268];
    float scores[268] = {0};
    int32_t types[268];
    char names[256][8];
    toks[0] = "<unk>", types[0] = 2;
    toks[1] = "<s>", types[1] = 3;
    toks[2] = "</s>", types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        toks[3 + b] = names[b], types[3 + b] = 6;
    }
    const char *p[] = {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab", "bc", "<|user|>"};
    float sc[] = {-1, -2, -3, -4, -5, -0.5f, -6, -0.1f, 0};
    for (int i = 0; i < 9; i++) toks[259 + i] = p[i], scores[259 + i] = sc[i], types[259 + i] = i == 8 ? 4 : 1;
    tl_vocab_spec s = {.model = "llama", .n_tokens = 268, .tokens = toks, .scores = scores, .token_types = types,
                       .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = true};
    tl_error e;
    tl_tokenizer *t = tl_tokenizer_from_vocab(&s, &e);
    CHECK(t != NULL, "%s", e.msg);
    if (!t) return;
    /* "ab" -> "▁ab": ab (-0.5) merges before ▁a (-5), then ▁ + ab -> ▁ab */
    CHECK(enc_is(t, "ab", true, (int32_t[]){265}, 1));
    /* "abc": bc (-0.1) first; ab is then stale; ▁a next; ▁abc is no token */
    CHECK(enc_is(t, "abc", true, (int32_t[]){263, 266}, 2));
    /* unknown character: byte fallback (d = 0x64 -> id 3 + 0x64) */
    CHECK(enc_is(t, "d", true, (int32_t[]){259, 103}, 2));
    CHECK(enc_is(t, "\xC3\xA9", true, (int32_t[]){259, 198, 172}, 3));
    /* user-defined tokens always match; the text after one gets the space prefix again */
    CHECK(enc_is(t, "a<|user|>b", false, (int32_t[]){263, 267, 259, 261}, 4));
    /* control tokens only with parse_special */
    CHECK(enc_is(t, "<s>a", true, (int32_t[]){1, 263}, 2));
    CHECK(enc_is(t, "<s>a", false, (int32_t[]){259, 63, 118, 65, 260}, 5));
    CHECK(enc_is(t, "", true, NULL, 0));
    int32_t *ids;
    CHECK(tl_tokenizer_encode_prompt(t, "ab", 2, &ids, &e) == 2 && ids[0] == 1 && ids[1] == 265);
    free(ids);
    CHECK(tl_tokenizer_bos(t) == 1 && tl_tokenizer_add_bos(t));
    /* decode: U+2581 -> space, the first token's leading space dropped (also right after bos) */
    CHECK(dec_is(t, (int32_t[]){265, 261}, 2, false, "abb"));
    CHECK(dec_is(t, (int32_t[]){1, 265}, 2, false, "<s>ab"));
    CHECK(dec_is(t, (int32_t[]){1, 265, 263}, 3, true, "ab a"));
    CHECK(dec_is(t, (int32_t[]){259, 198, 172}, 3, false, "\xC3\xA9"));
    CHECK(dec_is(t, (int32_t[]){260, 198}, 2, false, "a\xEF\xBF\xBD"));
    /* streaming keeps a continuation's space, except right after bos */
    tl_detok *d = tl_detok_new(t, true);
    size_t n;
    const char *o = tl_detok_push(d, 263, &n);
    CHECK(n == 2 && !memcmp(o, " a", 2));
    tl_detok_push(d, 1, &n);
    CHECK(n == 0);
    o = tl_detok_push(d, 263, &n);
    CHECK(n == 1 && o[0] == 'a');
    tl_detok_free(d);
    tl_tokenizer_free(t);
    /* bad specs */
    s.model = "bert";
    t = tl_tokenizer_from_vocab(&s, &e);
    CHECK(!t && strstr(e.msg, "bert"));
    s.model = "llama";
    toks[5] = NULL;
    t = tl_tokenizer_from_vocab(&s, &e);
    CHECK(!t && strstr(e.msg, "token 5"));
    toks[5] = names[2];
    s.n_tokens = 0;
    CHECK(!tl_tokenizer_from_vocab(&s, &e));
    s.n_tokens = 268;
    s.model = "gpt2";
    s.n_merges = 1;
    s.merges = (const char *const[]){"a"};
    t = tl_tokenizer_from_vocab(&s, &e);
    CHECK(!t && strstr(e.msg, "merge 0"), "%s", e.msg);
}

static void test_stories(void) {
    tl_error e;
    tl_gguf *g = tl_gguf_open(tl_shared("assets/stories260K/stories260K.gguf"), &e);
    CHECK(g != NULL, "%s", e.msg);
    if (!g) return;
    tl_tokenizer *t = tl_tokenizer_from_gguf(g, &e);
    tl_gguf_free(g);
    CHECK(t != NULL, "%s", e.msg);
    if (!t) return;
    int32_t eos[8];
    CHECK(tl_tokenizer_n_vocab(t) == 512 && tl_tokenizer_bos(t) == 1 && tl_tokenizer_add_bos(t));
    CHECK(tl_tokenizer_eos(t, eos, 8) == 1 && eos[0] == 2);
    FILE *f = fopen("tests/data/tokenizer_spm_stories260K.jsonl", "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    int n_enc = 0, ok_enc = 0, n_dec = 0, ok_dec = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *c = json_loads(line, JSON_ALLOW_NUL, NULL), *ids = json_object_get(c, "ids"), *tx = json_object_get(c, "text");
        int nw = (int)json_array_size(ids);
        int32_t w[256];
        for (int k = 0; k < nw && k < 256; k++) w[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        if (tx) {
            int32_t *got;
            int ng = tl_tokenizer_encode_prompt(t, json_string_value(tx), json_string_length(tx), &got, &e);
            bool ok = ng == nw && !memcmp(got, w, sizeof *w * (size_t)nw);
            if (!ok) fprintf(stderr, "stories260K encode mismatch: %s", line);
            ok_enc += ok, n_enc++;
            free(got);
        } else {
            json_t *jw = json_object_get(c, "decoded");
            size_t len;
            char *s = tl_tokenizer_decode_n(t, w, nw, false, &len);
            bool ok = jw && len == json_string_length(jw) && !memcmp(s, json_string_value(jw), len);
            if (!ok) fprintf(stderr, "stories260K decode mismatch: got \"%s\" for %s", s, line);
            ok_dec += ok, n_dec++;
            free(s);
        }
        json_decref(c);
    }
    free(line);
    if (f) fclose(f);
    CHECK(n_enc > 50 && ok_enc == n_enc, "%d of %d encodes", ok_enc, n_enc);
    CHECK(n_dec > 20 && ok_dec == n_dec, "%d of %d decodes", ok_dec, n_dec);
    /* llama.cpp's prompt encoding of the example: bos, then " Once upon a time" */
    int32_t *ids;
    int n = tl_tokenizer_encode_prompt(t, "Once upon a time", 16, &ids, &e);
    CHECK(n == 5 && ids[0] == 1 && ids[1] == 403 && ids[2] == 407 && ids[3] == 261 && ids[4] == 378);
    char *s = tl_tokenizer_decode(t, ids, n, true);
    CHECK(!strcmp(s, "Once upon a time"), "%s", s);
    free(s);
    free(ids);
    tl_tokenizer_free(t);
}

int main(void) {
    test_crafted();
    test_stories();
    TL_TEST_END();
}

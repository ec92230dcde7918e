/* test_tokenizer.c: Qwen2 byte-level BPE against reference ids produced by HF tokenizers / llama.cpp
 * (../shared/assets/tokenizer-vectors), for both tokenizer.json files and for the GGUF-array path;
 * decode, round trip, streaming, chat template, and bad files. */
#include <jansson.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "tl_test.h"
#include "tokenizer/tokenizer.h"

static const char *TOKS[2] = {"assets/qwen2-tokenizer", "assets/qwen2.5-tokenizer"};

static char *slurp(const char *path, size_t *len) {
    tl_error e;
    char *s = tl_read_file(path, len, &e);
    if (!s) fprintf(stderr, "%s\n", e.msg);
    return s;
}

static bool ids_eq(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || !memcmp(a, b, sizeof *a * (size_t)na));
}

static void print_ids(const char *what, const int32_t *v, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

static bool check_encode(const tl_tokenizer *t, const char *text, size_t len, const int32_t *want, int nwant,
                         const char *label) {
    tl_error e;
    int32_t *ids;
    int n = tl_tokenizer_encode(t, text, len, true, &ids, &e);
    bool ok = n >= 0 && ids_eq(ids, n, want, nwant);
    if (!ok) {
        fprintf(stderr, "mismatch (%s) on \"%.*s\"\n", label, (int)TL_MIN(len, 200), text);
        if (n >= 0) print_ids("got ", ids, n);
        print_ids("want", want, nwant);
    }
    free(ids);
    return ok;
}

/* llama.cpp's test-tokenizer-0 files: inputs separated by "\n__ggml_vocab_test__\n", one line of ids each */
static void test_ggml_vectors(const tl_tokenizer *t, const char *label) {
    size_t ni, no;
    char *inp = slurp(tl_shared("assets/tokenizer-vectors/ggml-vocab-qwen2.gguf.inp"), &ni);
    char *out = slurp(tl_shared("assets/tokenizer-vectors/ggml-vocab-qwen2.gguf.out"), &no);
    CHECK(inp && out);
    if (!inp || !out) return;
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *q = out;
    int cases = 0, pass = 0;
    for (;;) {
        char *end = strstr(p, sep);
        if (!end) break;
        char *nl = strchr(q, '\n');
        if (!nl) break;
        *nl = 0;
        int32_t want[512];
        int nw = 0;
        for (char *s = q; *s;) {
            char *e2;
            long v = strtol(s, &e2, 10);
            if (e2 == s) break;
            want[nw++] = (int32_t)v;
            s = e2;
        }
        cases++;
        pass += check_encode(t, p, (size_t)(end - p), want, nw, label);
        p = end + strlen(sep);
        q = nl + 1;
    }
    CHECK(cases == 46, "%s: %d cases read", label, cases);
    CHECK(pass == cases, "%s: %d of %d ggml-vocab-qwen2 cases exact", label, pass, cases);
    free(inp);
    free(out);
}

static void test_hf_integration(const tl_tokenizer *t, const char *label) {
    json_error_t je;
    json_t *root = json_load_file(tl_shared("assets/tokenizer-vectors/hf_transformers_qwen2_integration.json"), 0, &je);
    CHECK(root != NULL, "%s", je.text);
    json_t *cases = json_object_get(root, "cases"), *c;
    size_t i;
    int n = 0;
    json_array_foreach(cases, i, c) {
        json_t *ids = json_object_get(c, "ids");
        int32_t want[1024];
        int nw = (int)json_array_size(ids);
        for (int k = 0; k < nw && k < 1024; k++) want[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        json_t *tx = json_object_get(c, "text");
        CHECK(check_encode(t, json_string_value(tx), json_string_length(tx), want, nw, label), "hf case %zu", i);
        n++;
    }
    CHECK(n == 3);
    json_decref(root);
}

/* tokenizer.json -> GGUF-style arrays -> tl_tokenizer_from_vocab("gpt2", pre "qwen2") */
static tl_tokenizer *from_json_as_gguf(const char *path) {
    json_t *root = json_load_file(path, 0, NULL);
    if (!root) return NULL;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    json_t *added = json_object_get(root, "added_tokens");
    int n = (int)json_object_size(vocab) + (int)json_array_size(added);
    const char **toks = calloc((size_t)n, sizeof *toks);
    int32_t *types = calloc((size_t)n, sizeof *types);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) toks[json_integer_value(v)] = k, types[json_integer_value(v)] = 1;
    size_t i;
    json_array_foreach(added, i, v) {
        int id = (int)json_integer_value(json_object_get(v, "id"));
        toks[id] = json_string_value(json_object_get(v, "content"));
        types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;
    }
    int nm = (int)json_array_size(merges);
    const char **ms = calloc((size_t)nm, sizeof *ms);
    json_array_foreach(merges, i, v) ms[i] = json_string_value(v);
    tl_vocab_spec s = {.model = "gpt2", .pre = "qwen2", .n_tokens = n, .tokens = toks, .token_types = types,
                       .n_merges = nm, .merges = ms, .bos = -1, .eos = 151645, .unk = -1, .pad = -1};
    tl_error e;
    tl_tokenizer *t = tl_tokenizer_from_vocab(&s, &e);
    if (!t) fprintf(stderr, "from_vocab: %s\n", e.msg);
    free(toks);
    free(types);
    free(ms);
    json_decref(root);
    return t;
}

static void test_chat(void) {
    tl_error e;
    tl_tokenizer *t = tl_tokenizer_load(tl_shared("assets/qwen2.5-tokenizer"), &e);
    CHECK(t != NULL, "%s", e.msg);
    if (!t) return;
    char *text = slurp(tl_shared("assets/tokenizer-vectors/derived_chat_prompt.jsonl"), NULL);
    json_t *c = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
    free(text);
    CHECK(c != NULL);
    tl_chat_msg m = {"user", "Hello"};
    char *p = tl_chat_render(t, &m, 1, true);
    const char *want = json_string_value(json_object_get(c, "text"));
    CHECK(want && !strcmp(p, want), "chat prompt:\n%s", p);
    json_t *ids = json_object_get(c, "ids");
    int32_t w[256];
    int nw = (int)json_array_size(ids);
    for (int k = 0; k < nw; k++) w[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
    CHECK(check_encode(t, p, strlen(p), w, nw, "chat"));
    free(p);
    /* a system message replaces the default; no generation prompt */
    tl_chat_msg m2[2] = {{"system", "Be brief."}, {"user", "Hi"}};
    p = tl_chat_render(t, m2, 2, false);
    CHECK(!strcmp(p, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"), "%s", p);
    free(p);
    /* eos: generation_config absent here: tokenizer_config's eos_token <|im_end|> */
    int32_t eos[8];
    int ne = tl_tokenizer_eos(t, eos, 8);
    CHECK(ne >= 1 && eos[0] == 151645, "eos %d", ne ? eos[0] : -1);
    tl_tokenizer_free(t);
    /* Qwen2 (bare tokenizer.json): the Qwen2-Instruct default system prompt */
    t = tl_tokenizer_load(tl_shared("assets/qwen2-tokenizer/tokenizer.json"), &e);
    CHECK(t != NULL, "%s", e.msg);
    p = tl_chat_render(t, &m, 1, true);
    CHECK(!strcmp(p, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                     "<|im_start|>assistant\n"), "%s", p);
    free(p);
    ne = tl_tokenizer_eos(t, eos, 8);
    CHECK(ne == 2 && eos[0] == 151645 && eos[1] == 151643);
    tl_tokenizer_free(t);
    json_decref(c);
}

/* decode(encode(x)) == NFC(x) on random valid UTF-8 from many scripts */
static void test_roundtrip(const tl_tokenizer *t) {
    static const uint32_t ranges[][2] = {{0x20, 0x7e}, {0x09, 0x0d}, {0xa0, 0x24f}, {0x300, 0x36f}, {0x370, 0x3ff},
                                         {0x400, 0x4ff}, {0x590, 0x6ff}, {0x900, 0x97f}, {0xe00, 0xe7f}, {0x1100, 0x11ff},
                                         {0x3040, 0x30ff}, {0x4e00, 0x9fff}, {0xac00, 0xd7a3}, {0x1f300, 0x1faff},
                                         {0x2000, 0x206f}, {0xfe00, 0xfe0f}, {0x10000, 0x1007f}, {0x0, 0x1f}};
    unsigned long long rng = 42;
    int fails = 0;
    for (int it = 0; it < 400; it++) {
        char s[1024];
        size_t n = 0;
        int len = (int)(tl_t_rng(&rng) % 60);
        for (int k = 0; k < len; k++) {
            int r = (int)(tl_t_rng(&rng) % (sizeof ranges / sizeof ranges[0]));
            uint32_t cp = ranges[r][0] + (uint32_t)(tl_t_rng(&rng) % (ranges[r][1] - ranges[r][0] + 1));
            n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)s + n);
        }
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nn = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        int32_t *ids;
        tl_error e;
        int ni = tl_tokenizer_encode(t, s, n, false, &ids, &e);
        size_t dl = 0;
        char *d = ni >= 0 ? tl_tokenizer_decode_n(t, ids, ni, false, &dl) : NULL;
        if (!d || nn < 0 || dl != (size_t)nn || memcmp(d, nfc, (size_t)nn)) fails++;
        free(d);
        free(ids);
        free(nfc);
    }
    CHECK(fails == 0, "%d of 400 round trips differ", fails);
}

static bool valid_utf8(const char *s, size_t n) {
    return utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, NULL, 0, 0) >= 0;
}

static void test_stream(const tl_tokenizer *t) {
    const char *text = "🤗 emoji 👨‍👩‍👧 and 你好世界, 한국어 ✓ done";
    int32_t *ids;
    tl_error e;
    int n = tl_tokenizer_encode(t, text, strlen(text), true, &ids, &e);
    CHECK(n > 0);
    char acc[512] = "";
    int held = 0;
    tl_detok *d = tl_detok_new(t, false);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *o = tl_detok_push(d, ids[i], &len);
        CHECK(valid_utf8(o, len), "partial UTF-8 emitted at token %d", i);
        held += len == 0;
        strncat(acc, o, len);
    }
    size_t len;
    tl_detok_flush(d, &len);
    CHECK(len == 0);
    CHECK(!strcmp(acc, text), "stream: %s", acc);
    CHECK(held > 0, "no token was held back: the test does not split a character");
    tl_detok_free(d);
    free(ids);
    /* " 🤗" is three tokens (" \xF0\x9F", "\xA4", "\x97" per HF): the space comes out at once, the emoji with the third */
    n = tl_tokenizer_encode(t, " 🤗", 5, true, &ids, &e);
    CHECK(n == 3 && ids[0] == 11162 && ids[1] == 97 && ids[2] == 245, "%d", n);
    d = tl_detok_new(t, false);
    size_t l0, l1, l2;
    tl_detok_push(d, ids[0], &l0);
    tl_detok_push(d, ids[1], &l1);
    const char *o2 = tl_detok_push(d, ids[2], &l2);
    CHECK(l0 == 1 && l1 == 0 && l2 == 4 && !memcmp(o2, "🤗", 4), "%zu %zu %zu", l0, l1, l2);
    /* a dangling partial sequence at the end: one U+FFFD at flush */
    tl_detok_push(d, ids[0], &l0);
    const char *f = tl_detok_flush(d, &len);
    CHECK(l0 == 1 && len == 3 && !memcmp(f, "\xEF\xBF\xBD", 3));
    tl_detok_free(d);
    free(ids);
    /* random id sequences: stream == decode, everything emitted valid */
    unsigned long long rng = 7;
    int bad = 0;
    for (int it = 0; it < 200; it++) {
        int32_t v[16];
        for (int k = 0; k < 16; k++) v[k] = (int32_t)(tl_t_rng(&rng) % (unsigned)tl_tokenizer_n_vocab(t));
        bool skip = it & 1;
        char *full = tl_tokenizer_decode(t, v, 16, skip);
        char s[4096] = "";
        d = tl_detok_new(t, skip);
        for (int k = 0; k < 16; k++) {
            const char *o = tl_detok_push(d, v[k], &len);
            bad += !valid_utf8(o, len);
            strncat(s, o, len);
        }
        const char *o = tl_detok_flush(d, &len);
        strncat(s, o, len);
        bad += strcmp(s, full) != 0;
        tl_detok_free(d);
        free(full);
    }
    CHECK(bad == 0, "%d random streams differ from decode", bad);
    /* special tokens: shown or skipped */
    int32_t sp[3] = {151644, 9707, 151645};
    char *a = tl_tokenizer_decode(t, sp, 3, false), *b = tl_tokenizer_decode(t, sp, 3, true);
    CHECK(!strcmp(a, "<|im_start|>Hello<|im_end|>"), "%s", a);
    CHECK(!strcmp(b, "Hello"), "%s", b);
    CHECK(tl_tokenizer_is_special(t, 151645) && !tl_tokenizer_is_special(t, 9707));
    free(a);
    free(b);
}

/* invalid UTF-8 in: each invalid maximal subpart becomes U+FFFD before encoding; never a crash */
static void test_invalid_utf8(const tl_tokenizer *t) {
    tl_error e;
    int32_t *a, *b;
    const char bad[] = "ab\xff\xc3(\xe2\x82 \xf0\x9f\x98";
    const char rep[] = "ab\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD \xEF\xBF\xBD";
    int na = tl_tokenizer_encode(t, bad, sizeof bad - 1, true, &a, &e);
    int nb = tl_tokenizer_encode(t, rep, sizeof rep - 1, true, &b, &e);
    CHECK(na > 0 && ids_eq(a, na, b, nb));
    /* HF tokenizers: encode("\ufffd") == [5691] (from the Python package) */
    free(a);
    na = tl_tokenizer_encode(t, "\xff", 1, true, &a, &e);
    int32_t want[] = {5691};
    CHECK(ids_eq(a, na, want, 1));
    free(a);
    free(b);
    /* embedded NUL is a character like any other */
    na = tl_tokenizer_encode(t, "a\0b", 3, true, &a, &e);
    CHECK(na == 3, "%d", na);
    free(a);
}

static void write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
}

static void expect_error(const char *path, const char *what) {
    tl_error e = {{0}};
    tl_tokenizer *t = tl_tokenizer_load(path, &e);
    CHECK(t == NULL && strstr(e.msg, path) && strstr(e.msg, what), "%s: got '%s'", path, e.msg);
    tl_tokenizer_free(t);
}

static void test_bad_files(void) {
    char dir[] = "/tmp/tl_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256];
    snprintf(p, sizeof p, "%s/nothere.json", dir);
    expect_error(p, "no such");
    expect_error(dir, "tokenizer.json"); /* a folder without tokenizer.json */
    size_t n;
    char *full = slurp(tl_shared("assets/qwen2-tokenizer/tokenizer.json"), &n);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    write_file(p, full, n / 2); /* truncated */
    expect_error(p, "invalid JSON");
    write_file(p, "[1, 2]", 6);
    expect_error(p, "not a JSON object");
    const char *bad[][2] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", "vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "not in the vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b c\"]}}", "merges[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\"]]}}", "merges[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}}", "bad id"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "not supported"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}}", "regex"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"NFKD\"}}", "NFKD"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": \"x\"}]}", "added_tokens[0]"},
        {"{}", "model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(p, bad[i][0], strlen(bad[i][0]));
        expect_error(p, bad[i][1]);
    }
    /* both merge forms load and agree */
    const char *s1 = "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    const char *s2 = "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", \"b\"]]}}";
    for (int k = 0; k < 2; k++) {
        write_file(p, k ? s2 : s1, strlen(k ? s2 : s1));
        tl_error e;
        tl_tokenizer *t = tl_tokenizer_load(p, &e);
        CHECK(t != NULL, "%s", e.msg);
        int32_t *ids;
        int ni = t ? tl_tokenizer_encode(t, "abab", 4, true, &ids, &e) : -1;
        CHECK(ni == 2 && ids[0] == 2 && ids[1] == 2);
        if (ni >= 0) free(ids);
        tl_tokenizer_free(t);
    }
    /* a bad tokenizer_config.json beside a good tokenizer.json is named */
    write_file(p, s1, strlen(s1));
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    write_file(cfg, "{\"chat_template\": ", 18);
    expect_error(dir, "tokenizer_config.json");
    unlink(cfg);
    unlink(p);
    rmdir(dir);
    free(full);
}

/* tests/data/tokenizer_regressions.txt: {"tok": 0|1, "text": ..., "ids": [...]} per line, ids from HF */
static void test_regressions(tl_tokenizer *const *toks) {
    FILE *f = fopen("tests/data/tokenizer_regressions.txt", "r");
    CHECK(f != NULL, "tests/data/tokenizer_regressions.txt missing");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, ok = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] != '{') continue;
        json_t *c = json_loads(line, JSON_ALLOW_NUL, NULL);
        json_t *ids = json_object_get(c, "ids"), *tx = json_object_get(c, "text");
        int which = (int)json_integer_value(json_object_get(c, "tok"));
        int nw = (int)json_array_size(ids);
        int32_t *w = malloc(sizeof *w * (size_t)(nw + 1));
        for (int k = 0; k < nw; k++) w[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        n++;
        ok += tx && which >= 0 && which < 2 && check_encode(toks[which], json_string_value(tx), json_string_length(tx), w, nw, "regression");
        free(w);
        json_decref(c);
    }
    free(line);
    fclose(f);
    CHECK(n > 0 && ok == n, "%d of %d regressions pass", ok, n);
}

/* pathological inputs stay fast: 100 KB of alternating combining marks (utf8proc's own reordering is
 * quadratic: 27 s before tok_nfc.c), 1 MB of one letter (one 1 MB pre-token through the BPE heap) */
static double cpu_now(void) { /* CPU time: the CI box is shared, wall time is noise */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_pathological(const tl_tokenizer *t) {
    size_t n = 100000;
    char *s = malloc(1000001);
    for (size_t i = 0; i + 4 <= n; i += 4) memcpy(s + i, "\xCC\x81\xCC\x96", 4); /* U+0301 U+0316 */
    tl_error e;
    int32_t *ids;
    double t0 = cpu_now();
    int k = tl_tokenizer_encode(t, s, n, true, &ids, &e);
    double dt = cpu_now() - t0;
    CHECK(k > 0 && dt < 3.0, "100 KB of combining marks: %d ids in %.2f s", k, dt);
    free(ids);
    memset(s, 'a', 1000000);
    t0 = cpu_now();
    k = tl_tokenizer_encode(t, s, 1000000, true, &ids, &e);
    dt = cpu_now() - t0;
    CHECK(k > 0 && dt < 3.0, "1 MB of 'a': %d ids in %.2f s", k, dt);
    free(ids);
    free(s);
}

int main(void) {
    tl_tokenizer *toks[2];
    for (int i = 0; i < 2; i++) {
        tl_error e;
        double t0 = tl_now();
        toks[i] = tl_tokenizer_load(tl_shared(TOKS[i]), &e);
        CHECK(toks[i] != NULL, "%s", e.msg);
        if (!toks[i]) TL_TEST_END();
        printf("loaded %s in %.0f ms\n", TOKS[i], (tl_now() - t0) * 1e3);
        CHECK(tl_tokenizer_n_vocab(toks[i]) == (i ? 151665 : 151646), "n_vocab %d", tl_tokenizer_n_vocab(toks[i]));
        test_ggml_vectors(toks[i], TOKS[i]);
        test_hf_integration(toks[i], TOKS[i]);
    }
    tl_tokenizer *g = from_json_as_gguf(tl_shared("assets/qwen2.5-tokenizer/tokenizer.json"));
    CHECK(g != NULL);
    if (g) {
        test_ggml_vectors(g, "gguf-arrays qwen2.5");
        test_hf_integration(g, "gguf-arrays qwen2.5");
        tl_tokenizer_free(g);
    }
    test_chat();
    test_roundtrip(toks[1]);
    test_stream(toks[1]);
    test_invalid_utf8(toks[0]);
    test_pathological(toks[1]);
    test_bad_files();
    test_regressions(toks);
    for (int i = 0; i < 2; i++) tl_tokenizer_free(toks[i]);
    TL_TEST_END();
}

/* test_faults_formats.c: model files that are odd but legal, or hostile (found by fuzz_safetensors):
 * - a safetensors header not padded to 8 bytes leaves every tensor misaligned in the mapping: the
 *   model must load (aligned copies) and generate exactly what the padded file generates;
 * - a shape whose element count wraps 128-bit arithmetic must be rejected, not accepted with a
 *   tiny byte count;
 * - tl_st_parse errors name the problem;
 * - config.json with more heads than hidden units (head_dim 0) is refused (found by fuzz_hfconfig). */
#include <sys/stat.h>
#include <unistd.h>

#include "formats/hfconfig.h"
#include "formats/safetensors.h"
#include "tinyllm.h"
#include "tl_test.h"

static const char *MODEL = "tests/data/hf/qwen2-tied-gqa2-hd64";

static int on_tok(int32_t tok, const char *text, size_t len, void *user) {
    (void)text, (void)len;
    int *v = user;
    if (tok >= 0 && v[0] < 16) v[1 + v[0]++] = tok;
    return 0;
}

static int greedy(const char *model, int *out /* [17] */, char *err) {
    tinyllm_params p;
    tinyllm_params_default(&p);
    p.model = model;
    p.backend = "cpu";
    p.n_threads = 1;
    p.n_ctx = 64;
    tinyllm *t = tinyllm_load(&p, err, 512);
    if (!t) return -1;
    tinyllm_sampling s;
    tinyllm_sampling_default(&s);
    s.temperature = 0;
    s.max_tokens = 8;
    s.ignore_eos = 1;
    int32_t prompt[3] = {1, 2, 3};
    out[0] = 0;
    int n = tinyllm_generate(t, prompt, 3, &s, on_tok, out, NULL);
    if (n < 0) snprintf(err, 512, "%s", tinyllm_last_error(t));
    tinyllm_free(t);
    return n;
}

static int copy_file(const char *from, const char *to) {
    tl_error e;
    size_t n;
    char *d = tl_read_file(from, &n, &e);
    if (!d) return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(d, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(d);
    return ok ? 0 : -1;
}

static void test_unaligned(void) {
    char dir[] = "/tmp/tl_faults_XXXXXX", path[256], src[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(src, sizeof src, "%s/config.json", MODEL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(copy_file(src, path) == 0);
    /* The same file with one more space at the end of the header: the data region starts at an odd offset. */
    snprintf(src, sizeof src, "%s/model.safetensors", MODEL);
    tl_error e;
    size_t n;
    char *d = tl_read_file(src, &n, &e);
    CHECK(d != NULL, "%s", e.msg);
    if (!d) return;
    uint64_t h;
    memcpy(&h, d, 8);
    CHECK((8 + h) % 4 == 0, "the reference file is padded");
    uint64_t h2 = h + 1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(&h2, 8, 1, f);
    fwrite(d + 8, 1, h, f);
    fputc(' ', f);
    fwrite(d + 8 + h, 1, n - 8 - h, f);
    fclose(f);
    free(d);

    int want[17], got[17];
    char err[512] = "";
    int nw = greedy(MODEL, want, err);
    CHECK(nw == 8, "%s", err);
    int ng = greedy(dir, got, err);
    CHECK(ng == 8, "unaligned file: %s", err);
    CHECK(nw == ng && !memcmp(want, got, sizeof(int) * (1 + 8)), "unaligned file generates the same tokens");
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

static int parse(const char *hdr, size_t data_len, tl_error *e) {
    size_t hl = strlen(hdr), n = 8 + hl + data_len;
    char *buf = calloc(1, n);
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, hdr, hl);
    tl_st_file f;
    int rc = tl_st_parse(&f, buf, n, "mem", e);
    if (rc == 0) tl_st_close(&f);
    free(buf);
    return rc;
}

static void test_parse(void) {
    tl_error e;
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, &e) == 0, "%s", e.msg);
    /* 2^62 * 2^62 * 2^62 * 16 wraps to 0 in 128 bits; data_offsets [0, 0] would then "match" */
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904,"
                "4611686018427387904,16],\"data_offsets\":[0,0]}}", 0, &e) == -1 && strstr(e.msg, "2^64"), "%s", e.msg);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, &e) == -1 &&
          strstr(e.msg, "truncated"), "%s", e.msg);
    CHECK(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, &e) == -1 &&
          strstr(e.msg, "need 12 bytes"), "%s", e.msg);
    CHECK(parse("{\"a\":{\"dtype\":\"Q9\",\"shape\":[3],\"data_offsets\":[0,3]}}", 16, &e) == -1 &&
          strstr(e.msg, "dtype Q9"), "%s", e.msg);
    CHECK(parse("[1,2]", 0, &e) == -1 && strstr(e.msg, "not a JSON object"), "%s", e.msg);
    tl_st_file f;
    CHECK(tl_st_parse(&f, "\x05\0\0", 3, "mem", &e) == -1 && strstr(e.msg, "8-byte"), "%s", e.msg);
}

/* found by fuzz_hfconfig: more heads than hidden units made the default head_dim 0, accepted unchecked */
static void test_config_head_dim(void) {
    static const char cfg[] = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 106, \"intermediate_size\": 64,"
                              " \"num_hidden_layers\": 2, \"num_attention_heads\": 214, \"vocab_size\": 100}";
    tl_config c;
    tl_hf_quant q;
    tl_error e = {{0}};
    CHECK(tl_hf_parse_config(cfg, sizeof cfg - 1, "cfg", &c, &q, &e) == -1 && strstr(e.msg, "head_dim"), "%s", e.msg);
}

int main(void) {
    test_config_head_dim();
    test_parse();
    test_unaligned();
    TL_TEST_END();
}

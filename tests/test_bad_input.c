/* test_bad_input.c: bad model files and prompts give a clear error (naming the file / tensor),
 * never a crash: missing folder, unsupported architecture, truncated safetensors, bad header length,
 * malformed header JSON, unsupported dtype, shape mismatch against config.json, prompt over the context. */
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "model/session.h"
#include "tl_test.h"

#define SRC "tests/data/hf/qwen2-tied-gqa2-hd64"

static char tmpdir[256];

static void write_file(const char *name, const void *data, size_t n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    TL_ASSERT(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *n) {
    tl_error e;
    char *d = tl_read_file(path, n, &e);
    TL_ASSERT(d);
    return d;
}

/* Loads tmpdir and expects failure with `needle` in the message. */
static void expect_fail(const char *what, const char *needle) {
    tl_error e = {{0}};
    tl_load_opts o = {.quiet = true};
    tl_model *m = tl_model_load(tmpdir, &o, &e);
    CHECK(m == NULL, "%s: loaded although broken", what);
    CHECK(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, needle);
    if (m) tl_model_free(m);
    printf("%-28s -> %s\n", what, e.msg);
}

/* A safetensors file with one tensor `name` of dtype/shape and data_offsets [0, nbytes). */
static void write_st(const char *dtype, const char *name, int rows, int cols, size_t nbytes, size_t actual) {
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{\"%s\": {\"dtype\": \"%s\", \"shape\": [%d, %d], \"data_offsets\": [0, %zu]}}",
                     name, dtype, rows, cols, nbytes);
    size_t total = 8 + (size_t)n + actual;
    char *buf = tl_calloc(1, total);
    uint64_t len = (uint64_t)n;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, hdr, (size_t)n);
    write_file("model.safetensors", buf, total);
    free(buf);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tl_bad_input_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    size_t ncfg, nst;
    char *cfg = slurp(SRC "/config.json", &ncfg);
    char *st = slurp(SRC "/model.safetensors", &nst);

    tl_error e = {{0}};
    tl_model *m = tl_model_load("/nonexistent/model", NULL, &e);
    CHECK(!m && strstr(e.msg, "/nonexistent/model"), "missing folder: %s", e.msg);

    expect_fail("no config.json", "config.json");

    write_file("config.json", "{\"architectures\": [\"GPT2LMHeadModel\"]}", 38);
    expect_fail("unsupported architecture", "unsupported architecture 'GPT2LMHeadModel'");

    write_file("config.json", "{\"architectures\": [", 19);
    expect_fail("malformed config.json", "invalid JSON");

    write_file("config.json", cfg, ncfg);
    expect_fail("no weights", "model.safetensors");

    write_file("model.safetensors", st, nst / 2);
    expect_fail("truncated safetensors", "past the end");

    write_file("model.safetensors", "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10);
    expect_fail("absurd header length", "header length");

    write_file("model.safetensors", "\x05\0\0\0\0\0\0\0{\"a\":", 13);
    expect_fail("malformed header JSON", "bad safetensors header JSON");

    write_st("F32", "model.embed_tokens.weight", 512, 128, 512 * 128 * 4 + 4, 512 * 128 * 4 + 4);
    expect_fail("size mismatch in header", "need");

    write_st("I32", "model.embed_tokens.weight", 512, 128, 512 * 128 * 4, 512 * 128 * 4);
    expect_fail("unsupported dtype", "dtype I32 not supported");

    write_st("F32", "model.embed_tokens.weight", 511, 128, 511 * 128 * 4, 511 * 128 * 4);
    expect_fail("shape mismatch", "model.embed_tokens.weight");

    write_st("F32", "model.embed_tokens.weight", 512, 128, 512 * 128 * 4, 512 * 128 * 4);
    expect_fail("missing tensor", "missing tensor");

    /* prompt longer than the context */
    tl_load_opts o = {.quiet = true};
    m = tl_model_load(SRC, &o, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (m) {
        tl_backend *be = tl_backend_cpu_new(1);
        tl_session *s = tl_session_new(m, be, 32, &e);
        int32_t ids[40] = {0};
        CHECK(tl_session_eval(s, ids, 40, false, &e) == -1 && strstr(e.msg, "context full"), "%s", e.msg);
        int32_t bad = 100000;
        CHECK(tl_session_eval(s, &bad, 1, false, &e) == -1 && strstr(e.msg, "out of range"), "%s", e.msg);
        tl_session_free(s);
        be->free(be);
        tl_model_free(m);
    }
    free(cfg);
    free(st);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
    TL_TEST_END();
}

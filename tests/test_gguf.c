/* test_gguf.c: the GGUF reader on files built byte by byte here: every value type, arrays of
 * strings, tensor infos and alignment; then malformed files (every truncation, offsets past the
 * end, absurd counts, wrong alignment, bad magic/version/types) must fail with a clear message;
 * finally the real stories260K.gguf header against values read with an independent script. */
#include "formats/gguf.h"
#include "quant/ggml_types.h"
#include "tl_test.h"

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;
static void w_bytes(wbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void w_le(wbuf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        w_bytes(b, &c, 1);
    }
}
static void w_str(wbuf *b, const char *s) {
    w_le(b, strlen(s), 8);
    w_bytes(b, s, strlen(s));
}
static void w_key(wbuf *b, const char *k, uint32_t type) {
    w_str(b, k);
    w_le(b, type, 4);
}
static void w_f32(wbuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    w_le(b, u, 4);
}
static void w_pad(wbuf *b, size_t a) {
    while (b->n % a) w_le(b, 0, 1);
}

/* A valid v3 file: 15 kvs of every type, 2 tensors (f32 [3,2] and q8_0 [32]), alignment `al`. */
static wbuf make_file(uint32_t version, uint64_t al) {
    wbuf b = {0};
    w_bytes(&b, "GGUF", 4);
    w_le(&b, version, 4);
    w_le(&b, 2, 8);  /* tensors */
    w_le(&b, 15, 8); /* kvs */
    w_key(&b, "u8", TL_GGUF_UINT8), w_le(&b, 200, 1);
    w_key(&b, "i8", TL_GGUF_INT8), w_le(&b, (uint8_t)-5, 1);
    w_key(&b, "u16", TL_GGUF_UINT16), w_le(&b, 60000, 2);
    w_key(&b, "i16", TL_GGUF_INT16), w_le(&b, (uint16_t)-300, 2);
    w_key(&b, "u32", TL_GGUF_UINT32), w_le(&b, 4000000000u, 4);
    w_key(&b, "i32", TL_GGUF_INT32), w_le(&b, (uint32_t)-70000, 4);
    w_key(&b, "f32", TL_GGUF_FLOAT32), w_f32(&b, 1.5e-5f);
    w_key(&b, "bool", TL_GGUF_BOOL), w_le(&b, 1, 1);
    w_key(&b, "str", TL_GGUF_STRING), w_str(&b, "hello");
    w_key(&b, "u64", TL_GGUF_UINT64), w_le(&b, 1ull << 40, 8);
    w_key(&b, "i64", TL_GGUF_INT64), w_le(&b, (uint64_t)-5000000000ll, 8);
    double d = 2.25;
    uint64_t du;
    memcpy(&du, &d, 8);
    w_key(&b, "f64", TL_GGUF_FLOAT64), w_le(&b, du, 8);
    w_key(&b, "arr.str", TL_GGUF_ARRAY), w_le(&b, TL_GGUF_STRING, 4), w_le(&b, 3, 8);
    w_str(&b, "a"), w_str(&b, ""), w_str(&b, "\xe2\x96\x81the");
    w_key(&b, "arr.i32", TL_GGUF_ARRAY), w_le(&b, TL_GGUF_INT32, 4), w_le(&b, 3, 8);
    w_le(&b, 1, 4), w_le(&b, (uint32_t)-2, 4), w_le(&b, 3, 4);
    w_key(&b, "general.alignment", TL_GGUF_UINT32), w_le(&b, al, 4);
    /* tensors */
    w_str(&b, "w"), w_le(&b, 2, 4), w_le(&b, 3, 8), w_le(&b, 2, 8), w_le(&b, TL_GGML_F32, 4), w_le(&b, 0, 8);
    uint64_t off2 = (24 + al - 1) / al * al;
    w_str(&b, "q"), w_le(&b, 1, 4), w_le(&b, 32, 8), w_le(&b, TL_GGML_Q8_0, 4), w_le(&b, off2, 8);
    w_pad(&b, al);
    for (int i = 0; i < 6; i++) w_f32(&b, (float)i + 0.5f);
    w_pad(&b, al);
    w_le(&b, 0x3c00, 2); /* d = 1.0 */
    for (int i = 0; i < 32; i++) w_le(&b, (uint8_t)(i - 16), 1);
    return b;
}

static void test_valid(uint32_t version, uint64_t al) {
    wbuf b = make_file(version, al);
    tl_error e = {{0}};
    tl_gguf *g = tl_gguf_parse(b.p, b.n, &e);
    CHECK(g != NULL, "v%u al %llu: %s", version, (unsigned long long)al, e.msg);
    if (!g) return;
    int64_t i;
    double f;
    tl_gguf_str s;
    CHECK(g->version == version && g->n_kv == 15 && g->n_tensors == 2);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "u8"), &i) && i == 200);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "i8"), &i) && i == -5);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "u16"), &i) && i == 60000);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "i16"), &i) && i == -300);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "u32"), &i) && i == 4000000000ll);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "i32"), &i) && i == -70000);
    CHECK(tl_gguf_kv_float(tl_gguf_find(g, "f32"), &f) && f == (double)1.5e-5f);
    CHECK(!tl_gguf_kv_int(tl_gguf_find(g, "f32"), &i), "a float is not an int");
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "bool"), &i) && i == 1);
    CHECK(tl_gguf_kv_str(tl_gguf_find(g, "str"), &s) && tl_gguf_str_eq(s, "hello"));
    CHECK(!tl_gguf_kv_str(tl_gguf_find(g, "u8"), &s));
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "u64"), &i) && i == (1ll << 40));
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "i64"), &i) && i == -5000000000ll);
    CHECK(tl_gguf_kv_float(tl_gguf_find(g, "f64"), &f) && f == 2.25);
    CHECK(tl_gguf_kv_float(tl_gguf_find(g, "u16"), &f) && f == 60000.0);
    CHECK(tl_gguf_find(g, "missing") == NULL);
    const tl_gguf_kv *as = tl_gguf_find(g, "arr.str");
    CHECK(as && as->type == TL_GGUF_ARRAY && as->arr_type == TL_GGUF_STRING && as->arr_n == 3);
    CHECK(tl_gguf_arr_str(as, 0, &s) && tl_gguf_str_eq(s, "a"));
    CHECK(tl_gguf_arr_str(as, 1, &s) && s.n == 0);
    CHECK(tl_gguf_arr_str(as, 2, &s) && tl_gguf_str_eq(s, "\xe2\x96\x81the"));
    CHECK(!tl_gguf_arr_str(as, 3, &s), "index past the end");
    const tl_gguf_kv *ai = tl_gguf_find(g, "arr.i32");
    CHECK(tl_gguf_arr_int(ai, 1, &i) && i == -2);
    CHECK(tl_gguf_arr_float(ai, 2, &f) && f == 3.0);
    CHECK(!tl_gguf_arr_str(ai, 0, &s));
    CHECK(g->alignment == al && g->data_start % al == 0);
    const tl_gguf_tensor *w = tl_gguf_find_tensor(g, "w"), *q = tl_gguf_find_tensor(g, "q");
    CHECK(w && w->n_dims == 2 && w->ne[0] == 3 && w->ne[1] == 2 && w->ne[2] == 1 && w->n_elems == 6 && w->nbytes == 24);
    if (w) {
        float v[6];
        memcpy(v, w->data, 24);
        CHECK(v[0] == 0.5f && v[5] == 5.5f);
    }
    CHECK(q && q->type == TL_GGML_Q8_0 && q->nbytes == 34 && q->data + 34 == b.p + b.n);
    if (q) {
        float y[32];
        CHECK(tl_ggml_dequant_ref(q->type, q->data, y, 32) == 0 && y[0] == -16.0f && y[31] == 15.0f);
    }
    tl_gguf_free(g);
    free(b.p);
}

/* Expects parse to fail with a message containing `want`. */
static void expect_fail(const uint8_t *p, size_t n, const char *want, const char *what) {
    tl_error e = {{0}};
    tl_gguf *g = tl_gguf_parse(p, n, &e);
    CHECK(g == NULL, "%s: parsed a malformed file", what);
    tl_gguf_free(g);
    CHECK(strstr(e.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, want);
}

/* Patches the little-endian u64/u32 at offset `at`. */
static void put_le(uint8_t *p, size_t at, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[at + i] = (uint8_t)(v >> (8 * i));
}

static size_t find_bytes(const wbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i + n <= b->n; i++)
        if (!memcmp(b->p + i, s, n)) return i;
    return (size_t)-1;
}

static void test_malformed(void) {
    wbuf b = make_file(3, 32);
    /* every strict prefix: truncated somewhere (header, a kv, a tensor info, or the data) */
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        tl_error e = {{0}};
        tl_gguf *g = tl_gguf_parse(b.p, n, &e);
        if (g || !e.msg[0]) bad++;
        tl_gguf_free(g);
    }
    CHECK(bad == 0, "%d truncated prefixes parsed or gave no message", bad);
    expect_fail(b.p, 100, "truncated", "cut in the metadata");
    expect_fail(b.p, b.n - 1, "past the end", "cut in the data");

    uint8_t *c = malloc(b.n);
    memcpy(c, b.p, b.n), c[0] = 'X';
    expect_fail(c, b.n, "not a GGUF", "magic");
    memcpy(c, b.p, b.n), put_le(c, 4, 1, 4);
    expect_fail(c, b.n, "version 1", "v1");
    memcpy(c, b.p, b.n), put_le(c, 4, 0x03000000u, 4);
    expect_fail(c, b.n, "big-endian", "byte-swapped version");
    memcpy(c, b.p, b.n), put_le(c, 8, 1ull << 60, 8);
    expect_fail(c, b.n, "absurd count", "tensor count");
    memcpy(c, b.p, b.n), put_le(c, 16, 1ull << 40, 8);
    expect_fail(c, b.n, "absurd count", "kv count");
    size_t as = find_bytes(&b, "arr.str", 7); /* key, then u32 type, u32 elem type, u64 count */
    memcpy(c, b.p, b.n), put_le(c, as + 7 + 8, 1ull << 50, 8);
    expect_fail(c, b.n, "absurd count", "string array count");
    size_t ai = find_bytes(&b, "arr.i32", 7);
    memcpy(c, b.p, b.n), put_le(c, ai + 7 + 8, 1ull << 62, 8);
    expect_fail(c, b.n, "absurd count", "int array count");
    memcpy(c, b.p, b.n), put_le(c, ai + 7 + 4, TL_GGUF_ARRAY, 4);
    expect_fail(c, b.n, "array of arrays", "nested array");
    memcpy(c, b.p, b.n), put_le(c, ai + 7 + 4, 77, 4);
    expect_fail(c, b.n, "unknown array element type", "array elem type");
    size_t u8k = find_bytes(&b, "u8", 2);
    memcpy(c, b.p, b.n), put_le(c, u8k + 2, 99, 4);
    expect_fail(c, b.n, "unknown value type", "value type");
    memcpy(c, b.p, b.n), put_le(c, u8k - 8, 1ull << 62, 8);
    expect_fail(c, b.n, "truncated", "key length");
    size_t al = find_bytes(&b, "general.alignment", 17);
    memcpy(c, b.p, b.n), put_le(c, al + 17 + 4, 48, 4);
    expect_fail(c, b.n, "power of two", "alignment 48");
    memcpy(c, b.p, b.n), put_le(c, al + 17 + 4, 0, 4);
    expect_fail(c, b.n, "power of two", "alignment 0");
    /* tensor "q": name(8+1), n_dims(4), ne[0](8), type(4), offset(8) */
    size_t tq = find_bytes(&b, "\x01\x00\x00\x00\x00\x00\x00\x00q", 9) + 9;
    memcpy(c, b.p, b.n), put_le(c, tq + 4 + 8 + 4, 48, 8);
    expect_fail(c, b.n, "not a multiple of the alignment", "misaligned offset");
    memcpy(c, b.p, b.n), put_le(c, tq + 4 + 8 + 4, 1ull << 40, 8);
    expect_fail(c, b.n, "past the end", "offset past the end");
    memcpy(c, b.p, b.n), put_le(c, tq + 4 + 8 + 4, (uint64_t)-32, 8);
    expect_fail(c, b.n, "past the end", "offset wraps");
    memcpy(c, b.p, b.n), put_le(c, tq + 4, 64, 8);
    expect_fail(c, b.n, "past the end", "size past the end");
    memcpy(c, b.p, b.n), put_le(c, tq + 4, 33, 8);
    expect_fail(c, b.n, "not a multiple", "row not a block multiple");
    memcpy(c, b.p, b.n), put_le(c, tq + 4, 1ull << 63, 8);
    expect_fail(c, b.n, "absurd dimension", "huge ne");
    memcpy(c, b.p, b.n), put_le(c, tq, 9, 4);
    expect_fail(c, b.n, "dimensions", "n_dims 9");
    memcpy(c, b.p, b.n), put_le(c, tq + 4 + 8, 1234, 4);
    expect_fail(c, b.n, "unknown ggml type", "tensor type");
    memcpy(c, b.p, b.n), c[tq - 1] = 'w';
    expect_fail(c, b.n, "appears twice", "duplicate name");
    free(c);
    free(b.p);

    tl_error e = {{0}};
    CHECK(tl_gguf_open("/nonexistent/x.gguf", &e) == NULL && strstr(e.msg, "cannot open"));
}

static void test_stories_header(void) {
    tl_error e = {{0}};
    tl_gguf *g = tl_gguf_open(tl_shared("assets/stories260K/stories260K.gguf"), &e);
    CHECK(g != NULL, "%s", e.msg);
    if (!g) return;
    /* expected values from tools/gguf_dump.py, an independent reader */
    int64_t i;
    double f;
    tl_gguf_str s;
    CHECK(g->version == 3 && g->n_tensors == 48 && g->n_kv == 19);
    CHECK(tl_gguf_kv_str(tl_gguf_find(g, "general.architecture"), &s) && tl_gguf_str_eq(s, "llama"));
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "llama.feed_forward_length"), &i) && i == 172);
    CHECK(tl_gguf_kv_int(tl_gguf_find(g, "tokenizer.ggml.padding_token_id"), &i) && i == 4294967295ll);
    CHECK(tl_gguf_kv_float(tl_gguf_find(g, "llama.attention.layer_norm_rms_epsilon"), &f) && fabs(f - 1e-5) < 1e-9);
    const tl_gguf_kv *tok = tl_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->arr_n == 512 && tl_gguf_arr_str(tok, 2, &s) && tl_gguf_str_eq(s, "</s>"));
    CHECK(tl_gguf_arr_str(tok, 3, &s) && tl_gguf_str_eq(s, "<0x00>"));
    const tl_gguf_tensor *t = tl_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->ne[0] == 172 && t->ne[1] == 64 && t->type == TL_GGML_F32);
    CHECK(t && t->data == g->buf + 14176 + 355840);
    CHECK(g->data_start == 14176);
    tl_gguf_free(g);
}

int main(void) {
    test_valid(3, 32);
    test_valid(2, 32);
    test_valid(3, 64);
    test_valid(3, 8);
    test_malformed();
    test_stories_header();
    TL_TEST_END();
}

/* test_gguf_quant.c: each GGUF block type's scalar dequantizer on blocks crafted by hand from the
 * layout (quant/ggml_types.h); expected values are worked out here from the spec, not by the code
 * under test (literals for a few elements, an independent formula for the rest). */
#include "quant/ggml_types.h"
#include "backend/cpu/cpu_ops.h"
#include "core/pool.h"
#include "tl_test.h"

/* fp16 bit patterns: 0.125 0x3000, 0.25 0x3400, 0.5 0x3800, 1.0 0x3c00, 2.0 0x4000, -1.0 0xbc00 */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static int count_bad(const float *y, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (y[i] != want[i]) {
            if (bad < 3) fprintf(stderr, "  [%d] got %g want %g\n", i, y[i], want[i]);
            bad++;
        }
    return bad;
}

static void test_q4_0(void) {
    uint8_t b[18];
    put16(b, 0x3800); /* d = 0.5 */
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32], w[32];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q4_0, b, y, 32) == 0);
    for (int j = 0; j < 16; j++) w[j] = (j - 8) * 0.5f, w[j + 16] = (7 - j) * 0.5f;
    CHECK(y[0] == -4.0f && y[15] == 3.5f && y[16] == 3.5f && y[31] == -4.0f);
    CHECK(count_bad(y, w, 32) == 0, "q4_0");
}

static void test_q4_1(void) {
    uint8_t b[20];
    put16(b, 0x3400), put16(b + 2, 0xbc00); /* d = 0.25, m = -1 */
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32], w[32];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q4_1, b, y, 32) == 0);
    for (int j = 0; j < 16; j++) w[j] = j * 0.25f - 1.0f, w[j + 16] = (15 - j) * 0.25f - 1.0f;
    CHECK(y[0] == -1.0f && y[16] == 2.75f);
    CHECK(count_bad(y, w, 32) == 0, "q4_1");
}

static void test_q5(void) {
    uint8_t b[24];
    memset(b, 0, sizeof b);
    put16(b, 0x3c00); /* q5_0: d = 1; qh = bits 0 and 31 */
    b[2] = 0x01, b[5] = 0x80;
    b[6 + 15] = 0x7f;
    float y[32];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q5_0, b, y, 32) == 0);
    CHECK(y[0] == 0.0f && y[1] == -16.0f && y[15] == -1.0f && y[31] == 7.0f && y[30] == -16.0f,
          "q5_0: %g %g %g %g", y[0], y[1], y[15], y[31]);

    memset(b, 0, sizeof b); /* q5_1: d = 2, m = 0.5, qh bit 16 */
    put16(b, 0x4000), put16(b + 2, 0x3800);
    b[4 + 2] = 0x01;
    b[8] = 0x31;
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q5_1, b, y, 32) == 0);
    CHECK(y[0] == 2.5f && y[16] == 38.5f && y[1] == 0.5f && y[17] == 0.5f, "q5_1: %g %g", y[0], y[16]);
}

static void test_q8_0(void) {
    uint8_t b[34];
    put16(b, 0x3000); /* d = 0.125 */
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    float y[32], w[32];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q8_0, b, y, 32) == 0);
    for (int j = 0; j < 32; j++) w[j] = (j - 16) * 0.125f;
    CHECK(y[0] == -2.0f && y[31] == 1.875f);
    CHECK(count_bad(y, w, 32) == 0, "q8_0");
}

/* 6-bit scales sc = {1,2,3,4,40,50,60,63}, mins mn = {5,6,7,8,33,34,35,36}, packed by hand:
 * j<4: sc in s[j] bits 0-5, mn in s[j+4] bits 0-5; j>=4: low 4 bits of sc / mn in s[j+4]'s low /
 * high nibble, top 2 bits of sc in s[j-4] bits 6-7, of mn in s[j] bits 6-7. */
static const uint8_t KSCALES[12] = {0x81, 0xC2, 0xC3, 0xC4, 0x85, 0x86, 0x87, 0x88, 0x18, 0x22, 0x3C, 0x4F};
static const int KSC[8] = {1, 2, 3, 4, 40, 50, 60, 63}, KMN[8] = {5, 6, 7, 8, 33, 34, 35, 36};

static void test_k_scales(void) {
    int bad = 0;
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        tl_ggml_k_scale_min(KSCALES, j, &sc, &mn);
        bad += sc != KSC[j] || mn != KMN[j];
    }
    CHECK(bad == 0, "k-quant 6-bit scale unpacking");
}

static void test_q4_k(void) {
    uint8_t b[144];
    put16(b, 0x3c00), put16(b + 2, 0x3800); /* d = 1, dmin = 0.5 */
    memcpy(b + 4, KSCALES, 12);
    for (int i = 0; i < 128; i++) b[16 + i] = (uint8_t)((i & 15) | ((15 - (i & 15)) << 4));
    float y[256], w[256];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q4_K, b, y, 256) == 0);
    /* 64-run i: sub-block 2i from low nibbles of qs[32i..32i+32), 2i+1 from the high nibbles */
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++) {
            w[64 * i + l] = (float)(KSC[2 * i] * (l & 15)) - 0.5f * KMN[2 * i];
            w[64 * i + 32 + l] = (float)(KSC[2 * i + 1] * (15 - (l & 15))) - 0.5f * KMN[2 * i + 1];
        }
    CHECK(y[0] == -2.5f && y[1] == -1.5f && y[32] == 27.0f && y[133] == 183.5f && y[255] == -18.0f &&
              y[224] == 927.0f, "q4_K literals: %g %g %g %g %g %g", y[0], y[1], y[32], y[133], y[255], y[224]);
    CHECK(count_bad(y, w, 256) == 0, "q4_K");
}

static void test_q5_k(void) {
    uint8_t b[176];
    put16(b, 0x3c00), put16(b + 2, 0x3800);
    memcpy(b + 4, KSCALES, 12);
    for (int l = 0; l < 32; l++) b[16 + l] = (l % 2) ? 0xAA : 0x55; /* even l: bits 0,2,4,6; odd: 1,3,5,7 */
    for (int i = 0; i < 128; i++) b[48 + i] = (uint8_t)((i & 15) | ((15 - (i & 15)) << 4));
    float y[256], w[256];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q5_K, b, y, 256) == 0);
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++) {
            w[64 * i + l] = (float)(KSC[2 * i] * ((l & 15) + (l % 2 ? 0 : 16))) - 0.5f * KMN[2 * i];
            w[64 * i + 32 + l] = (float)(KSC[2 * i + 1] * ((15 - (l & 15)) + (l % 2 ? 16 : 0))) - 0.5f * KMN[2 * i + 1];
        }
    CHECK(y[0] == 13.5f && y[33] == 57.0f, "q5_K literals: %g %g", y[0], y[33]);
    CHECK(count_bad(y, w, 256) == 0, "q5_K");
}

static void test_q6_k(void) {
    uint8_t b[210];
    memset(b, 0, sizeof b);
    int q[256], s[16];
    for (int k = 0; k < 16; k++) s[k] = (k % 2 ? -1 : 1) * (k + 1);
    for (int k = 0; k < 256; k++) q[k] = (k * 7) % 64;
    /* pack: element k = 128h + 32*quarter + l; quarter 0/1: low nibble of ql[64h + 32*quarter + l],
     * quarter 2/3: high nibble of ql[64h + 32*(quarter-2) + l]; 2 high bits in qh[32h + l] at 2*quarter */
    for (int k = 0; k < 256; k++) {
        int h = k / 128, quarter = (k % 128) / 32, l = k % 32;
        int qi = 64 * h + 32 * (quarter & 1) + l;
        b[qi] |= (uint8_t)((q[k] & 15) << (quarter >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (uint8_t)((q[k] >> 4) << (2 * quarter));
    }
    for (int k = 0; k < 16; k++) b[192 + k] = (uint8_t)(int8_t)s[k];
    put16(b + 208, 0x3400); /* d = 0.25 */
    float y[256], w[256];
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q6_K, b, y, 256) == 0);
    for (int k = 0; k < 256; k++) w[k] = 0.25f * (float)(s[k / 16] * (q[k] - 32));
    CHECK(y[0] == -8.0f && y[1] == 0.25f * (7 - 32), "q6_K literals: %g %g", y[0], y[1]);
    CHECK(count_bad(y, w, 256) == 0, "q6_K");
}

static void test_plain_and_sizes(void) {
    uint8_t h[4] = {0x00, 0x3c, 0x80, 0xbf}; /* f16 1.0; bf16 -1.0 */
    float y[2];
    CHECK(tl_ggml_dequant_ref(TL_GGML_F16, h, y, 1) == 0 && y[0] == 1.0f);
    CHECK(tl_ggml_dequant_ref(TL_GGML_BF16, h + 2, y, 1) == 0 && y[0] == -1.0f);
    CHECK(tl_ggml_nbytes(TL_GGML_Q4_K, 512) == 288 && tl_ggml_nbytes(TL_GGML_Q6_K, 256) == 210);
    CHECK(tl_ggml_nbytes(TL_GGML_Q8_0, 33) == -1, "not a block multiple");
    CHECK(tl_ggml_nbytes(TL_GGML_F32, INT64_MAX / 2) == -1, "overflow");
    CHECK(tl_ggml_nbytes(999, 32) == -1 && tl_ggml_type_get(999).name == NULL);
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q2_K, h, y, 256) == -1, "unsupported type refused");
    CHECK(tl_ggml_dequant_ref(TL_GGML_Q4_0, h, y, 16) == -1, "partial block refused");
}

/* Random blocks (random codes, sane fp16 scales) of each type, converted to tinyllm layouts: the
 * exact paths must reproduce the dequantized values bit for bit, the others within a bound. */
static void test_convert(void) {
    static const struct {
        uint32_t type;
        int d_off[2]; /* byte offsets of fp16 scale fields to overwrite (-1: none) */
        double max_rel_rms;
        tl_dtype want;
    } cases[] = {
        {TL_GGML_Q8_0, {0, -1}, 0, TL_Q8},   {TL_GGML_Q4_0, {0, -1}, 0, TL_Q4},
        {TL_GGML_Q4_1, {0, 2}, 0, TL_Q4},    {TL_GGML_Q4_K, {0, 2}, 2e-3, TL_Q4},
        {TL_GGML_Q5_0, {0, -1}, 0, TL_Q8}, {TL_GGML_Q5_1, {0, 2}, 1e-2, TL_Q8},
        {TL_GGML_Q5_K, {0, 2}, 1e-2, TL_Q8}, {TL_GGML_Q6_K, {208, -1}, 0, TL_Q8},
    };
    unsigned long long rng = 42;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tl_ggml_type_info ti = tl_ggml_type_get(cases[c].type);
        int64_t rows = 3, cols = 512, nb = rows * cols / ti.block_elems;
        uint8_t *src = malloc((size_t)(nb * ti.block_bytes));
        for (int64_t i = 0; i < nb * ti.block_bytes; i++) src[i] = (uint8_t)tl_t_rng(&rng);
        for (int64_t b = 0; b < nb; b++)
            for (int k = 0; k < 2; k++)
                if (cases[c].d_off[k] >= 0) {
                    float v = tl_t_randf(&rng) * 0.01f;
                    put16(src + b * ti.block_bytes + cases[c].d_off[k], tl_f32_to_f16(v));
                }
        tl_tensor t;
        tl_ggml_conv_err err;
        tl_error e = {{0}};
        int rc = tl_ggml_convert(cases[c].type, src, rows, cols, &t, &err, NULL, &e);
        CHECK(rc == 0, "%s: %s", ti.name, e.msg);
        if (rc) continue;
        CHECK(t.type == cases[c].want && t.rows == rows && t.cols == cols && t.group == (cases[c].type == TL_GGML_Q6_K ? 16 : 32), "%s layout", ti.name);
        /* independent measurement: exact values vs the converted tensor's rows */
        float exact[512], got[512];
        double se = 0, sr = 0, mx = 0;
        for (int64_t r = 0; r < rows; r++) {
            tl_ggml_dequant_ref(cases[c].type, src + r * (cols / ti.block_elems) * ti.block_bytes, exact, cols);
            tl_tensor_row_f32(&t, r, got);
            for (int k = 0; k < cols; k++) {
                double d = fabs((double)got[k] - exact[k]);
                mx = d > mx ? d : mx;
                se += d * d, sr += (double)exact[k] * exact[k];
            }
        }
        double rel = sqrt(se / sr);
        if (cases[c].max_rel_rms == 0) CHECK(mx == 0, "%s should convert exactly: max abs %g", ti.name, mx);
        else CHECK(rel <= cases[c].max_rel_rms && rel > 0, "%s rel rms %g", ti.name, rel);
        CHECK(fabs(err.max_abs - mx) <= 1e-12 && fabs(err.rel_rms - rel) <= 1e-9, "%s reported error %g/%g vs %g/%g",
              ti.name, err.max_abs, err.rel_rms, mx, rel);
        printf("convert %-5s -> %s: max abs %.3g, rel rms %.3g\n", ti.name, tl_dtype_name(t.type), mx, rel);
        /* the same tensor and error report when rows are split over 2 threads */
        int64_t rows2 = 40;
        uint8_t *src2 = malloc((size_t)(rows2 * cols / ti.block_elems * ti.block_bytes));
        for (int64_t i = 0; i < rows2; i++)
            memcpy(src2 + i * (cols / ti.block_elems) * ti.block_bytes, src + (i % rows) * (cols / ti.block_elems) * ti.block_bytes,
                   (size_t)((cols / ti.block_elems) * ti.block_bytes));
        tl_tensor t1, t2;
        tl_ggml_conv_err e1, e2;
        tl_pool *pool = tl_pool_create(2);
        CHECK(tl_ggml_convert(cases[c].type, src2, rows2, cols, &t1, &e1, NULL, &e) == 0 &&
              tl_ggml_convert(cases[c].type, src2, rows2, cols, &t2, &e2, pool, &e) == 0);
        bool same = true;
        float r1[512], r2[512];
        for (int64_t r = 0; r < rows2 && same; r++) {
            tl_tensor_row_f32(&t1, r, r1), tl_tensor_row_f32(&t2, r, r2);
            same = !memcmp(r1, r2, sizeof r1);
        }
        CHECK(same && e1.max_abs == e2.max_abs && e1.rel_rms == e2.rel_rms, "%s: threaded conversion differs", ti.name);
        tl_pool_free(pool);
        tl_aligned_free(t1.owned), tl_aligned_free(t2.owned);
        free(src2);
        tl_aligned_free(t.owned);
        free(src);
    }
    tl_tensor t;
    tl_error e = {{0}};
    CHECK(tl_ggml_convert(TL_GGML_Q2_K, NULL, 1, 256, &t, NULL, NULL, &e) == -1 && strstr(e.msg, "cannot be converted"));
}

int main(void) {
    test_q4_0();
    test_q4_1();
    test_q5();
    test_q8_0();
    test_k_scales();
    test_q4_k();
    test_q5_k();
    test_q6_k();
    test_plain_and_sizes();
    test_convert();
    TL_TEST_END();
}

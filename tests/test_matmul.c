/* test_matmul.c: tl_cpu_matmul_ref against products computed here from the generating fp32
 * values, then every kernel tier (scalar, AVX2, AVX-512 where cpuid has it) and path (direct,
 * panel, Q4 int8/fp32) against the reference, on ragged shapes with outliers, threaded and not. */
#include "backend/cpu/matmul_impl.h"
#include "core/cpu.h"
#include "core/pool.h"
#include "tl_test.h"

static unsigned long long seed = 42;

/* Random fp32 value in [-1, 1) with ~1% outliers of magnitude up to 30. */
static float rnd_outlier(void) {
    float v = tl_t_randf(&seed);
    if (tl_t_rng(&seed) % 100 == 0) v *= 30.0f;
    return v;
}

/* A weight of the given dtype plus the exact fp32 values it stands for (truth[rows*cols]). */
typedef struct {
    tl_tensor t;
    float *truth;
    float *cs; /* Q4: code * scale (the part the int8 path multiplies by quantized x) */
} wt;

static wt make_weight(tl_dtype type, int64_t rows, int64_t cols, int group, tl_dtype sb) {
    wt w = {0};
    w.t.type = type;
    w.t.rows = rows;
    w.t.cols = cols;
    w.truth = malloc((size_t)(rows * cols) * sizeof(float));
    if (type == TL_F32 || type == TL_F16 || type == TL_BF16) {
        size_t es = type == TL_F32 ? 4 : 2;
        w.t.data = malloc((size_t)(rows * cols) * es);
        for (int64_t i = 0; i < rows * cols; i++) {
            float v = rnd_outlier();
            if (type == TL_F32) {
                ((float *)w.t.data)[i] = v;
                w.truth[i] = v;
            } else if (type == TL_F16) {
                uint16_t h = tl_f32_to_f16(v);
                ((uint16_t *)w.t.data)[i] = h;
                w.truth[i] = tl_f16_to_f32(h);
            } else {
                uint16_t h = tl_f32_to_bf16(v);
                ((uint16_t *)w.t.data)[i] = h;
                w.truth[i] = tl_bf16_to_f32(h);
            }
        }
        return w;
    }
    w.t.group = group;
    int64_t ng = rows * (cols / group);
    if (type == TL_Q4) {
        w.t.sb_type = sb;
        w.cs = malloc((size_t)(rows * cols) * sizeof(float));
        w.t.data = calloc((size_t)(rows * cols / 8), 4);
        w.t.scales = malloc((size_t)ng * 2);
        w.t.biases = malloc((size_t)ng * 2);
        float *s = malloc((size_t)ng * sizeof(float)), *b = malloc((size_t)ng * sizeof(float));
        for (int64_t g = 0; g < ng; g++) {
            float sv = (tl_t_randf(&seed) + 1.2f) * 0.05f, bv = rnd_outlier() * 0.5f;
            if (tl_t_rng(&seed) % 50 == 0) sv *= 20.0f; /* an outlier group */
            uint16_t hs = sb == TL_F16 ? tl_f32_to_f16(sv) : tl_f32_to_bf16(sv);
            uint16_t hb = sb == TL_F16 ? tl_f32_to_f16(bv) : tl_f32_to_bf16(bv);
            ((uint16_t *)w.t.scales)[g] = hs;
            ((uint16_t *)w.t.biases)[g] = hb;
            s[g] = sb == TL_F16 ? tl_f16_to_f32(hs) : tl_bf16_to_f32(hs);
            b[g] = sb == TL_F16 ? tl_f16_to_f32(hb) : tl_bf16_to_f32(hb);
        }
        uint32_t *q = w.t.data;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                uint32_t code = (uint32_t)(tl_t_rng(&seed) & 15);
                q[(r * cols + k) / 8] |= code << (4 * (k % 8)); /* lowest bits first */
                int64_t g = r * (cols / group) + k / group;
                w.truth[r * cols + k] = (float)code * s[g] + b[g];
                w.cs[r * cols + k] = (float)code * s[g];
            }
        free(s);
        free(b);
    } else { /* Q8 */
        w.t.data = malloc((size_t)(rows * cols));
        w.t.scales = malloc((size_t)ng * sizeof(float));
        for (int64_t g = 0; g < ng; g++) ((float *)w.t.scales)[g] = (tl_t_randf(&seed) + 1.1f) * 0.01f;
        for (int64_t i = 0; i < rows * cols; i++) {
            int8_t v = (int8_t)((int)(tl_t_rng(&seed) % 255) - 127);
            ((int8_t *)w.t.data)[i] = v;
            w.truth[i] = (float)v * ((float *)w.t.scales)[i / group];
        }
    }
    return w;
}

static void free_weight(wt *w) {
    free(w->t.data);
    free(w->t.scales);
    free(w->t.biases);
    free(w->truth);
    free(w->cs);
}

/* Analytic bound of the int8-activation error of output (t, r): each x[k] is off by at most
 * half a step of its 32-block, max|x_block| / 254, and multiplies code*scale. */
static double i8_bound(const wt *w, const float *x, int t, int64_t r) {
    int64_t cols = w->t.cols;
    double b = 0;
    for (int64_t k0 = 0; k0 < cols; k0 += 32) {
        float amax = 0;
        for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[t * cols + k0 + k]));
        for (int k = 0; k < 32; k++) b += fabs(w->cs[r * cols + k0 + k]) * amax / 254.0;
    }
    return b;
}

static float *rand_x(int n_tok, int64_t cols) {
    float *x = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = rnd_outlier();
    return x;
}

/* Every table this CPU can run: scalar, avx2-rows (the previous Q4 kernel), avx2, avx512-rows,
 * avx512 (the 4-row VNNI kernel); tl_mm_isa() is the tier the driver picks here. Returns the count. */
static int tables(const tl_mm_kernels **tabs) {
    int n = 0;
    tabs[n++] = &tl_mm_scalar;
    if (tl_mm_isa() >= TL_ISA_AVX2) tabs[n++] = &tl_mm_avx2_rows, tabs[n++] = &tl_mm_avx2;
    if (tl_mm_isa() >= TL_ISA_AVX512) tabs[n++] = &tl_mm_avx512_rows, tabs[n++] = &tl_mm_avx512;
    return n;
}

/* Runs every available tier/path on (w, x) and compares with the reference. */
static void check_all(wt *w, const float *x, int n_tok, tl_pool *pool, const char *what) {
    int64_t rows = w->t.rows, cols = w->t.cols;
    size_t ny = (size_t)(n_tok * rows);
    float *ref = malloc(ny * sizeof(float)), *y = malloc(ny * sizeof(float)), *exp = malloc(ny * sizeof(float));
    float *yi8 = malloc(ny * sizeof(float));
    /* expected from the generating values, in double */
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            double acc = 0;
            for (int64_t k = 0; k < cols; k++) acc += (double)x[t * cols + k] * w->truth[r * cols + k];
            exp[t * rows + r] = (float)acc;
        }
    tl_cpu_matmul_ref(&w->t, x, ref, n_tok);
    double e = tl_rel_err(ref, exp, ny);
    CHECK(e < 1e-6, "%s n_tok=%d: reference vs truth rel err %g", what, n_tok, e);

    bool q4 = w->t.type == TL_Q4;
    const tl_mm_kernels *tabs[5];
    int ntab = tables(tabs);
    for (int ti = 0; ti < ntab; ti++) {
        const tl_mm_kernels *k = tabs[ti];
        for (int path = 0; path < (q4 ? 4 : 1); path++) {
            for (size_t i = 0; i < ny; i++) y[i] = NAN;
            tl_mm_run(k, (tl_mm_q4_path)path, &w->t, x, y, n_tok, pool);
            bool i8 = q4 && path != TL_MM_Q4_F32 && (path != TL_MM_Q4_LEGACY || n_tok <= TL_MM_DIRECT_T);
            /* fp32 paths: summation order only. int8 activations: x rounded to 1/254 of its block max. */
            if (!i8) {
                e = tl_rel_err(y, ref, ny);
                CHECK(e < 2e-5, "%s n_tok=%d isa=%s path=%d: rel err %g", what, n_tok, k->name, path, e);
            } else {
                int bad = 0;
                for (int t = 0; t < n_tok; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double d = fabs((double)y[t * rows + r] - ref[t * rows + r]);
                        if (!(d <= i8_bound(w, x, t, r) * 1.001 + 1e-5 * fabs(ref[t * rows + r]) + 1e-6)) bad++;
                    }
                CHECK(bad == 0, "%s n_tok=%d isa=%s path=%d: %d outputs past the int8 error bound", what, n_tok, k->name,
                      path, bad); /* the SIMD int8 kernels must match the scalar int8 specification tightly */
                tl_mm_run(&tl_mm_scalar, TL_MM_Q4_I8, &w->t, x, yi8, n_tok, NULL);
                e = tl_rel_err(y, yi8, ny);
                CHECK(e < 2e-5, "%s n_tok=%d isa=%s: int8 path vs scalar int8 spec rel err %g", what, n_tok, k->name,
                      e);
            }
        }
    }
    if (q4 && tl_mm_isa() >= TL_ISA_AVX512) { /* same integer sums, same fp32 fold order as AVX2: equal bits */
        const tl_mm_kernels *pairs[2][2] = {{&tl_mm_avx2, &tl_mm_avx512}, {&tl_mm_avx2_rows, &tl_mm_avx512_rows}};
        for (int pi = 0; pi < 2; pi++) {
            tl_mm_run(pairs[pi][0], TL_MM_Q4_I8, &w->t, x, yi8, n_tok, pool);
            tl_mm_run(pairs[pi][1], TL_MM_Q4_I8, &w->t, x, y, n_tok, pool);
            CHECK(!memcmp(y, yi8, ny * sizeof(float)), "%s n_tok=%d: %s differs from %s (rel err %g)", what, n_tok,
                  pairs[pi][1]->name, pairs[pi][0]->name, tl_rel_err(y, yi8, ny));
        }
    }
    free(ref);
    free(y);
    free(exp);
    free(yi8);
}

/* The SIMD activation quantizers against the scalar specification: q, d, d8 bit-identical,
 * gsum to summation order. */
static void check_quantize(int n_tok, int64_t cols, int group) {
    if (tl_cpu_isa() < TL_ISA_AVX2) return;
    float *x = rand_x(n_tok, cols);
    if (cols >= 64) /* an all-zero block and a block of one huge value */
        for (int i = 0; i < 32; i++) x[i] = 0.0f, x[32 + i] = i == 5 ? -1e4f : 1e-3f;
    int64_t nq = n_tok * cols, nb = nq / 32, ng = nq / group, n8 = n_tok * TL_CDIV(cols, 64) * 8;
    tl_mm_xq a, b;
    a.q = malloc((size_t)nq), b.q = malloc((size_t)nq);
    a.d = malloc((size_t)nb * 4), b.d = malloc((size_t)nb * 4);
    a.gsum = malloc((size_t)ng * 4), b.gsum = malloc((size_t)ng * 4);
    a.d8 = malloc((size_t)n8 * 4), b.d8 = malloc((size_t)n8 * 4);
    tl_mm_quantize_x(x, n_tok, cols, group, &a);
    tl_mm_quantize_x_avx2(x, n_tok, cols, group, &b);
    CHECK(!memcmp(a.q, b.q, (size_t)nq) && !memcmp(a.d, b.d, (size_t)nb * 4) && !memcmp(a.d8, b.d8, (size_t)n8 * 4),
          "quantize_x avx2 vs scalar: q/d/d8 differ (n_tok=%d cols=%lld g=%d)", n_tok, (long long)cols, group);
    double e = tl_rel_err(b.gsum, a.gsum, (size_t)ng);
    CHECK(e < 1e-6, "quantize_x avx2 gsum rel err %g", e);
    free(a.q), free(b.q), free(a.d), free(b.d), free(a.gsum), free(b.gsum), free(a.d8), free(b.d8), free(x);
}

/* tl_mm_run_n over parts sharing x (q/k/v-like: different row counts) equals separate runs. */
static void check_parts(tl_dtype type, int group, int n_tok, tl_pool *pool) {
    int64_t rows[3] = {36, 9, 9}, cols = 256;
    wt w[3];
    float *y[3], *ys[3];
    const tl_tensor *tw[3];
    float *x = rand_x(n_tok, cols);
    for (int i = 0; i < 3; i++) {
        w[i] = make_weight(type, rows[i], cols, group, TL_F16);
        tw[i] = &w[i].t;
        y[i] = malloc((size_t)(n_tok * rows[i]) * sizeof(float));
        ys[i] = malloc((size_t)(n_tok * rows[i]) * sizeof(float));
        tl_mm_run(tl_mm_for_isa(tl_cpu_isa()), TL_MM_Q4_AUTO, tw[i], x, ys[i], n_tok, NULL);
    }
    tl_mm_run_n(tl_mm_for_isa(tl_cpu_isa()), TL_MM_Q4_AUTO, tw, y, 3, x, n_tok, pool);
    for (int i = 0; i < 3; i++) {
        double e = tl_rel_err(y[i], ys[i], (size_t)(n_tok * rows[i]));
        CHECK(e < 1e-6, "run_n %s part %d n_tok=%d: rel err %g vs a separate run", tl_dtype_name(type), i, n_tok, e);
        free(y[i]), free(ys[i]), free_weight(&w[i]);
    }
    free(x);
}

int main(void) {
    tl_pool *pool = tl_pool_create(3);
    printf("best ISA here: %s (matmul tier: %s)\n", tl_isa_name(tl_cpu_isa()), tl_isa_name(tl_mm_isa()));
    if (tl_mm_isa() < TL_ISA_AVX512) printf("SKIP AVX-512 kernels: cpuid reports no AVX-512 (F/BW/VL/DQ/VNNI)\n");
    if (tl_mm_isa() < TL_ISA_AVX2) printf("SKIP AVX2 kernels: not available or capped by TL_CPU\n");

    const int ntoks[] = {1, 2, 3, 4, 5, 7, 13};
    const int ntoks_q4[] = {1, 2, 3, 4, 5, 6, 7, 8, 13, 37};
    for (int i = 0; i < 10; i++) {
        check_quantize(ntoks_q4[i], 896, 64);
        check_quantize(ntoks_q4[i] % 3 + 1, 384, i % 2 ? 32 : 128);
    }
    for (int i = 0; i < 10; i += 3) {
        check_parts(TL_Q4, 64, ntoks_q4[i], pool);
        check_parts(TL_BF16, 0, ntoks_q4[i], pool);
    }
    const tl_dtype dense[] = {TL_F32, TL_F16, TL_BF16};
    for (int d = 0; d < 3; d++) {
        /* ragged: rows not a multiple of anything, cols with a tail past the panel width */
        wt w = make_weight(dense[d], 37, 300, 0, TL_F32);
        for (int i = 0; i < 7; i++) {
            float *x = rand_x(ntoks[i], w.t.cols);
            check_all(&w, x, ntoks[i], i % 2 ? pool : NULL, tl_dtype_name(dense[d]));
            free(x);
        }
        free_weight(&w);
        wt w1 = make_weight(dense[d], 5, 7, 0, TL_F32); /* tiny, odd */
        float *x = rand_x(6, 7);
        check_all(&w1, x, 1, pool, "tiny");
        check_all(&w1, x, 6, pool, "tiny");
        free(x);
        free_weight(&w1);
    }
    const int groups[] = {32, 64, 128};
    for (int gi = 0; gi < 3; gi++)
        for (int sbi = 0; sbi < 2; sbi++) {
            int g = groups[gi];
            tl_dtype sb = sbi ? TL_BF16 : TL_F16;
            /* cols = 11 groups of 32 (odd number of 64-chunks: a last 32-block), 5 of 64, 3 of 128;
             * then 6 and 14 chunks of 64 for every group (the 4-row kernel's case; 896 = n_embd of
             * qwen2-0.5b: 14 groups of 64, a ragged last step of the scale transpose); 29 rows = 7 x 4 + 1 */
            int64_t colss[3] = {g == 32 ? 352 : g == 64 ? 320 : 384, 384, 896};
            for (int ci = 0; ci < 3; ci++) {
                int64_t cols = colss[ci];
                wt w = make_weight(TL_Q4, ci ? 30 : 29, cols, g, sb);
                char what[64];
                snprintf(what, sizeof what, "q4 g%d %s cols %lld", g, tl_dtype_name(sb), (long long)cols);
                for (int i = 0; i < 10; i++) {
                    float *x = rand_x(ntoks_q4[i], cols);
                    check_all(&w, x, ntoks_q4[i], i % 2 ? pool : NULL, what);
                    free(x);
                }
                free_weight(&w);
            }
        }
    { /* several token blocks per task (the driver keeps ~256 KiB of int8 x per task): 4096 wide */
        wt w = make_weight(TL_Q4, 13, 4096, 64, TL_F16);
        float *x = rand_x(70, 4096);
        check_all(&w, x, 70, pool, "q4 g64 4096 wide, 70 tokens");
        free(x);
        free_weight(&w);
    }
    for (int gi = 0; gi < 3; gi++) {
        wt w = make_weight(TL_Q8, 19, 384, groups[gi], TL_F32);
        for (int i = 0; i < 7; i += 3) {
            float *x = rand_x(ntoks[i], 384);
            check_all(&w, x, ntoks[i], pool, "q8");
            free(x);
        }
        free_weight(&w);
    }
    /* a zero activation row must give exactly zero for the int8 path (amax = 0 block scale) */
    {
        wt w = make_weight(TL_Q4, 8, 64, 32, TL_F16);
        float x[64] = {0}, y[8];
        const tl_mm_kernels *tabs[5];
        int ntab = tables(tabs);
        for (int ti = 0; ti < ntab; ti++) {
            tl_mm_run(tabs[ti], TL_MM_Q4_I8, &w.t, x, y, 1, NULL);
            int nz = 0;
            for (int i = 0; i < 8; i++) nz += y[i] != 0.0f;
            CHECK(nz == 0, "%s: zero x gives %d non-zero outputs", tabs[ti]->name, nz);
        }
        free_weight(&w);
    }
    tl_pool_free(pool);
    TL_TEST_END();
}

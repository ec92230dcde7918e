/* test_cuda_ops.c (GPU only: built with -DTL_GPU_TESTS=ON, run by scripts/gpu.sh): every CUDA kernel
 * against the CPU scalar reference on random data with outliers, at edge shapes. Outputs are poisoned
 * with NaN before each launch so an unwritten element fails. */
#include <cuda_runtime_api.h>
#include <math.h>

#include "backend/backend.h" /* TL_TOKEN_PREV */
#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cu_sample.h" /* tl_cu_samp_out */
#include "backend/cuda/cuda_ops.h"
#include "gpu/cu_check.h"
#include "tl_test.h"

static unsigned long long seed = 42;

static void *dup_dev(const void *h, size_t n) {
    void *d;
    CU(cudaMalloc(&d, n ? n : 1));
    if (n) CU(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    return d;
}
static void *dev_nan(size_t n) { /* device buffer filled with NaN bytes (0xff) */
    void *d;
    CU(cudaMalloc(&d, n ? n : 1));
    CU(cudaMemset(d, 0xff, n ? n : 1));
    return d;
}
static void get(void *h, const void *d, size_t n) {
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
}
/* random floats in [-1, 1) with a few outliers of +-amp */
static float *rand_vec(size_t n, float amp) {
    float *v = tl_malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) {
        v[i] = tl_t_randf(&seed);
        if (tl_t_rng(&seed) % 97 == 0) v[i] *= amp;
    }
    return v;
}

/* a random INT4 tensor [rows, cols] (host): random codes, scales 0.01-0.06 with every 37th group 20x (outliers),
 * biases near -8 scale; codes / scales / biases are the caller's to free */
static tl_tensor rand_q4(int rows, int cols, int group, tl_dtype sbt) {
    const size_t nw = (size_t)rows * cols / 8, ng = (size_t)rows * cols / group;
    uint32_t *codes = tl_malloc(nw * 4);
    uint16_t *sc = tl_malloc(ng * 2), *bi = tl_malloc(ng * 2);
    for (size_t i = 0; i < nw; i++) codes[i] = (uint32_t)tl_t_rng(&seed);
    for (size_t i = 0; i < ng; i++) {
        float s = 0.01f + 0.05f * fabsf(tl_t_randf(&seed)), b = -8 * s + 0.01f * tl_t_randf(&seed);
        if (i % 37 == 0) s *= 20, b *= 20; /* outlier groups */
        sc[i] = sbt == TL_BF16 ? tl_f32_to_bf16(s) : tl_f32_to_f16(s);
        bi[i] = sbt == TL_BF16 ? tl_f32_to_bf16(b) : tl_f32_to_f16(b);
    }
    return (tl_tensor){.type = TL_Q4, .rows = rows, .cols = cols, .data = codes, .group = group, .sb_type = sbt,
                       .scales = sc, .biases = bi};
}

/* ---- the one-launch GEMV (q4_gemv.cu) on a tiled matrix: plain x, RMSNorm'ed x, SiLU(gate)*up, with bias
 * and an in-place residual; against tl_cpu_rmsnorm / tl_cpu_silu_mul + tl_cpu_matmul_ref. Also: the same
 * result twice (bit for bit), and token 0's row equal bit for bit to a 1-token run (batch invariance). ---- */
static void test_q4g(const tl_tensor *w, const tl_cu_q4 *tw, int n_tok, const float *bias, const float *db) {
    const int rows = (int)w->rows, cols = (int)w->cols;
    tl_error e = {{0}};
    float *xin = rand_vec((size_t)n_tok * 2 * cols, 30.f), *nw = rand_vec(cols, 3.f), *res = rand_vec((size_t)n_tok * rows, 5.f);
    float *xr = tl_malloc((size_t)n_tok * cols * 4), *want = tl_malloc((size_t)n_tok * rows * 4),
          *got = tl_malloc((size_t)n_tok * rows * 4), *again = tl_malloc((size_t)n_tok * rows * 4);
    float *dxin = dup_dev(xin, (size_t)n_tok * 2 * cols * 4), *dnw = dup_dev(nw, cols * 4);
    float *dres = dup_dev(res, (size_t)n_tok * rows * 4), *dy = dev_nan((size_t)n_tok * rows * 4);
    for (int mode = 0; mode < 3; mode++) {
        /* reference input rows [n_tok, cols]: x = the first cols of each 2*cols-wide row */
        for (int t = 0; t < n_tok; t++) memcpy(xr + (size_t)t * cols, xin + (size_t)t * 2 * cols, (size_t)cols * 4);
        if (mode == TL_CU_X_RMSNORM) {
            float *tmp = tl_malloc((size_t)n_tok * cols * 4);
            tl_cpu_rmsnorm(xr, nw, tmp, n_tok, cols, 1e-6f);
            memcpy(xr, tmp, (size_t)n_tok * cols * 4);
            free(tmp);
        } else if (mode == TL_CU_X_SILU) {
            float *u = tl_malloc((size_t)n_tok * cols * 4);
            for (int t = 0; t < n_tok; t++) memcpy(u + (size_t)t * cols, xin + (size_t)t * 2 * cols + cols, (size_t)cols * 4);
            tl_cpu_silu_mul(xr, u, (size_t)n_tok * cols);
            free(u);
        }
        tl_cpu_matmul_ref(w, xr, want, n_tok);
        for (int t = 0; t < n_tok; t++)
            for (int r = 0; r < rows; r++) want[(size_t)t * rows + r] += bias[r] + (mode ? res[(size_t)t * rows + r] : 0.f);
        /* mode 0 writes y; modes 1, 2 add the residual in place (y = resid). rep 1: a ring of 2 stages,
         * wrapped many times */
        float *y = mode ? dres : dy;
        for (int rep = 0; rep < 2; rep++) {
            if (mode) CU(cudaMemcpy(dres, res, (size_t)n_tok * rows * 4, cudaMemcpyHostToDevice));
            else CU(cudaMemset(dy, 0xff, (size_t)n_tok * rows * 4));
            tl_cu_gemv_args ga = {.w = tw, .x = dxin, .x_stride = 2 * cols, .x_mode = mode, .norm_w = dnw,
                                  .eps = 1e-6f, .bias = db, .resid = mode ? dres : NULL, .y = y, .n_tok = n_tok,
                                  .ring = rep ? 2 : 0};
            CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == 0, "%s", e.msg);
            get(rep ? again : got, y, (size_t)n_tok * rows * 4);
        }
        double err = tl_rel_err(got, want, (size_t)n_tok * rows);
        CHECK(err < 1e-3, "q4g gemv mode %d %dx%d g%d n_tok %d: rel err %.3g", mode, rows, cols, w->group, n_tok, err);
        /* a short ring sums in the same order: equal bit for bit */
        CHECK(!memcmp(got, again, (size_t)n_tok * rows * 4), "q4g gemv mode %d %dx%d n_tok %d: two runs differ", mode,
              rows, cols, n_tok);
        if (mode == 0 && rows >= 1000)
            printf("q4g gemv %dx%d g%d n_tok %d: rel err %.2e\n", rows, cols, w->group, n_tok, err);
        if (n_tok == 1) { /* one token: v5 with x first (the default, got) against v4 (tl_cu_gemv_args.dbg 128: the
                           * same sums, the same bits) and other x-first orders (dbg bits 12-14: 7 the old order,
                           * 1 no stage before x), with rings of 2 too */
            static const int dbgs[4] = {128 | 7 << 12, 128, 1 << 12, 7 << 12};
            for (int v = 0; v < 4; v++) {
                if (mode) CU(cudaMemcpy(dres, res, (size_t)rows * 4, cudaMemcpyHostToDevice));
                else CU(cudaMemset(dy, 0xff, (size_t)rows * 4));
                tl_cu_gemv_args gv = {.w = tw, .x = dxin, .x_stride = 2 * cols, .x_mode = mode, .norm_w = dnw,
                                      .eps = 1e-6f, .bias = db, .resid = mode ? dres : NULL, .y = y, .n_tok = 1,
                                      .ring = v & 1 ? 2 : 0, .dbg = dbgs[v]};
                CHECK(tl_cu_q4g_gemv(&gv, 0, &e) == 0, "%s", e.msg);
                get(again, y, (size_t)rows * 4);
                CHECK(!memcmp(got, again, (size_t)rows * 4), "q4g gemv one token mode %d %dx%d dbg %d ring %d: differs from v5",
                      mode, rows, cols, dbgs[v], v & 1 ? 2 : 0);
            }
        }
        if (n_tok > 1) { /* token 0 alone (every mode: the prologue's per-token work too) */
            if (mode) CU(cudaMemcpy(dres, res, (size_t)rows * 4, cudaMemcpyHostToDevice));
            else CU(cudaMemset(dy, 0xff, (size_t)rows * 4));
            tl_cu_gemv_args g1 = {.w = tw, .x = dxin, .x_stride = 2 * cols, .x_mode = mode, .norm_w = dnw,
                                  .eps = 1e-6f, .bias = db, .resid = mode ? dres : NULL, .y = y, .n_tok = 1};
            CHECK(tl_cu_q4g_gemv(&g1, 0, &e) == 0, "%s", e.msg);
            get(again, y, (size_t)rows * 4);
            CHECK(!memcmp(got, again, (size_t)rows * 4),
                  "q4g gemv mode %d %dx%d n_tok %d: token 0 differs from a 1-token run", mode, rows, cols, n_tok);
        }
    }
    cudaFree(dxin), cudaFree(dnw), cudaFree(dres), cudaFree(dy);
    free(xin), free(nw), free(res), free(xr), free(want), free(got), free(again);
}

/* ---- the GEMV's forward_decode forms: fp16 x (TL_CU_X_F16) equal bit for bit to plain x holding the same
 * values; gate/up pairs (y_silu16) against silu(gate) * up of the plain result. Each against the CPU reference, twice
 * (ring of 2: same bits), and token 0 alone (the same bits). ---- */
static void test_q4g_decode_forms(const tl_tensor *w, const tl_cu_q4 *tw, int n_tok, const float *bias, const float *db) {
    const int rows = (int)w->rows, cols = (int)w->cols;
    tl_error e = {{0}};
    const size_t nx = (size_t)n_tok * cols, ny = (size_t)n_tok * rows;
    float *xf = rand_vec(nx, 30.f), *want = tl_malloc(ny * 4), *got = tl_malloc(ny * 4), *again = tl_malloc(ny * 4);
    uint16_t *h16 = tl_malloc(nx * 2);
    for (size_t i = 0; i < nx; i++) h16[i] = tl_f32_to_f16(xf[i]), xf[i] = tl_f16_to_f32(h16[i]);
    float *dxf = dup_dev(xf, nx * 4), *dy = dev_nan(ny * 4);
    uint16_t *dh = dup_dev(h16, nx * 2);
    /* fp16 x against plain x of the same values */
    tl_cpu_matmul_ref(w, xf, want, n_tok);
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < rows; r++) want[(size_t)t * rows + r] += bias[r];
    for (int rep = 0; rep < 4; rep++) { /* 1: a ring of 2, 2: plain x, 3: a grid of 5 blocks */
        tl_cu_gemv_args ga = {.w = tw, .x = rep == 2 ? dxf : NULL, .x16 = rep != 2 ? dh : NULL, .x_stride = cols,
                              .x_mode = rep != 2 ? TL_CU_X_F16 : TL_CU_X_PLAIN, .bias = db, .y = dy, .n_tok = n_tok,
                              .ring = rep == 1 ? 2 : 0, .grid = rep == 3 ? 5 : 0};
        CU(cudaMemset(dy, 0xff, ny * 4));
        CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == 0, "%s", e.msg);
        get(rep ? again : got, dy, ny * 4);
        if (rep) CHECK(!memcmp(got, again, ny * 4), "q4g gemv fp16 x %dx%d n_tok %d: run %d differs", rows, cols, n_tok, rep);
    }
    double err = tl_rel_err(got, want, ny);
    CHECK(err < 1e-3, "q4g gemv fp16 x %dx%d g%d n_tok %d: rel err %.3g", rows, cols, w->group, n_tok, err);
    if (n_tok > 1) {
        tl_cu_gemv_args g1 = {.w = tw, .x16 = dh, .x_stride = cols, .x_mode = TL_CU_X_F16, .bias = db, .y = dy, .n_tok = 1};
        CU(cudaMemset(dy, 0xff, ny * 4));
        CHECK(tl_cu_q4g_gemv(&g1, 0, &e) == 0, "%s", e.msg);
        get(again, dy, (size_t)rows * 4);
        CHECK(!memcmp(got, again, (size_t)rows * 4), "q4g gemv fp16 x %dx%d n_tok %d: token 0 alone differs", rows, cols, n_tok);
    }
    /* gate/up pairs: h[t, r] = silu(gate_r) * up_r in fp16 from the RMSNorm'ed input */
    if (rows % 32 == 0) {
        const int F = rows / 2;
        float *nw = rand_vec(cols, 3.f), *dnw = dup_dev(nw, cols * 4);
        uint16_t *dhh = dev_nan((size_t)n_tok * F * 2), *hh = tl_malloc((size_t)n_tok * F * 2), *hh2 = tl_malloc((size_t)n_tok * F * 2);
        tl_cu_gemv_args gy = {.w = tw, .x = dxf, .x_stride = cols, .x_mode = TL_CU_X_RMSNORM, .norm_w = dnw, .eps = 1e-6f,
                              .bias = db, .y = dy, .n_tok = n_tok};
        CHECK(tl_cu_q4g_gemv(&gy, 0, &e) == 0, "%s", e.msg);
        get(want, dy, ny * 4);
        for (int rep = 0; rep < 3; rep++) {
            tl_cu_gemv_args gh = gy;
            gh.y = NULL, gh.y_silu16 = dhh, gh.ring = rep == 1 ? 2 : 0, gh.n_tok = rep == 2 ? 1 : n_tok;
            CU(cudaMemset(dhh, 0xff, (size_t)n_tok * F * 2));
            CHECK(tl_cu_q4g_gemv(&gh, 0, &e) == 0, "%s", e.msg);
            get(rep ? hh2 : hh, dhh, (size_t)(rep == 2 ? 1 : n_tok) * F * 2);
            if (rep) CHECK(!memcmp(hh, hh2, (size_t)(rep == 2 ? 1 : n_tok) * F * 2), "q4g gate/up pairs %dx%d n_tok %d: run %d differs",
                           rows, cols, n_tok, rep);
        }
        double md = 0, mb = 1e-30;
        for (int t = 0; t < n_tok; t++)
            for (int r = 0; r < F; r++) {
                const double g = want[(size_t)t * rows + r], u = want[(size_t)t * rows + F + r];
                const double ref = g / (1 + exp(-g)) * u, v = tl_f16_to_f32(hh[(size_t)t * F + r]);
                if (fabs(ref) > 6e4) continue; /* past fp16's range */
                md = v == v ? fmax(md, fabs(v - ref)) : INFINITY, mb = fmax(mb, fabs(ref));
            }
        CHECK(md / mb < 2e-3, "q4g gate/up pairs %dx%d n_tok %d: h rel err %.3g", rows, cols, n_tok, md / mb);
        cudaFree(dnw), cudaFree(dhh);
        free(nw), free(hh), free(hh2);
    }
    cudaFree(dxf), cudaFree(dy), cudaFree(dh);
    free(xf), free(want), free(got), free(again), free(h16);
}

/* ---- INT4 GEMV and dequantize, against tl_cpu_matmul_ref / tl_tensor_row_f32 ---- */
static void test_q4(int rows, int cols, int group, int n_tok, tl_dtype sbt) {
    size_t nw = (size_t)rows * cols / 8, ng = (size_t)rows * cols / group;
    tl_tensor w = rand_q4(rows, cols, group, sbt);
    uint32_t *codes = (uint32_t *)w.data;
    uint16_t *sc = (uint16_t *)w.scales, *bi = (uint16_t *)w.biases;
    float *x = rand_vec((size_t)n_tok * cols, 30.f), *bias = rand_vec(rows, 1.f);
    float *want = tl_malloc((size_t)n_tok * rows * 4), *got = tl_malloc((size_t)n_tok * rows * 4);
    tl_cpu_matmul_ref(&w, x, want, n_tok);
    for (int t = 0; t < n_tok; t++)
        for (int r = 0; r < rows; r++) want[(size_t)t * rows + r] += bias[r];

    uint32_t *sb = tl_malloc(ng * 4);
    tl_cu_q4_pack_sb(sc, bi, ng, sb);
    tl_cu_q4 dw = {.rows = rows, .cols = cols, .group = group, .sb_bf16 = sbt == TL_BF16};
    dw.codes = dup_dev(codes, nw * 4);
    dw.sb = dup_dev(sb, ng * 4);
    float *dx = dup_dev(x, (size_t)n_tok * cols * 4), *db = dup_dev(bias, rows * 4);
    float *dy = dev_nan((size_t)n_tok * rows * 4);
    tl_error e = {{0}};
    CHECK(tl_cu_q4_gemv(&dw, dx, db, dy, n_tok, 0, &e) == 0, "%s", e.msg);
    get(got, dy, (size_t)n_tok * rows * 4);
    double err = tl_rel_err(got, want, (size_t)n_tok * rows);
    CHECK(err < 2e-5, "q4 gemv %dx%d g%d n_tok %d %s: rel err %.3g", rows, cols, group, n_tok, tl_dtype_name(sbt), err);

    /* dequantize rows [r0, r0+nr) to bf16: each element within one bf16 rounding of the reference */
    int r0 = rows / 3, nr = rows - r0;
    uint16_t *dq = dev_nan((size_t)rows * cols * 2), *hq = tl_malloc((size_t)rows * cols * 2);
    CHECK(tl_cu_q4_dequant_bf16(&dw, r0, nr, dq, 0, &e) == 0, "%s", e.msg);
    get(hq, dq, (size_t)nr * cols * 2);
    float *row = tl_malloc((size_t)cols * 4);
    int bad = 0;
    for (int r = 0; r < nr && !bad; r++) {
        tl_tensor_row_f32(&w, r0 + r, row);
        for (int i = 0; i < cols; i++) {
            float g = tl_bf16_to_f32(hq[(size_t)r * cols + i]);
            if (!(fabsf(g - row[i]) <= fabsf(row[i]) * (1.f / 128) + 1e-6f)) bad++;
        }
    }
    CHECK(bad == 0, "q4 dequant %dx%d g%d: %d elements off", rows, cols, group, bad);
    /* the tensor-core layout: GEMV (x rounded to fp16: ~1e-4) and dequantize */
    if (cols % 64 == 0) {
        size_t nt = ((size_t)rows + 15) / 16;
        uint32_t *tc = tl_malloc(nt * 16 * (cols / 8) * 4), *tsb = tl_malloc(nt * 16 * (cols / group) * 4);
        CHECK(tl_cu_q4t_repack(codes, sc, bi, rows, cols, group, tc, tsb) == 0);
        tl_cu_q4 tw = dw;
        tw.tiled = 1;
        tw.codes = dup_dev(tc, nt * 16 * (cols / 8) * 4);
        tw.sb = dup_dev(tsb, nt * 16 * (cols / group) * 4);
        void *ws = dev_nan(tl_cu_q4t_ws_bytes(cols));
        CU(cudaMemset(dy, 0xff, (size_t)n_tok * rows * 4));
        CHECK(tl_cu_q4t_gemv(&tw, dx, db, dy, n_tok, ws, 0, &e) == 0, "%s", e.msg);
        get(got, dy, (size_t)n_tok * rows * 4);
        double terr = tl_rel_err(got, want, (size_t)n_tok * rows);
        CHECK(terr < 1e-3, "q4 mma gemv %dx%d g%d n_tok %d %s: rel err %.3g", rows, cols, group, n_tok,
              tl_dtype_name(sbt), terr);
        if (rows >= 1000) printf("q4 mma gemv %dx%d g%d n_tok %d: rel err %.2e (fp32 gemv %.2e)\n", rows, cols, group, n_tok, terr, err);
        if (tl_cu_q4g_fits(cols, n_tok)) test_q4g(&w, &tw, n_tok, bias, db), test_q4g_decode_forms(&w, &tw, n_tok, bias, db);
        int tr0 = rows / 3 / 16 * 16, tnr = rows - tr0;
        CU(cudaMemset(dq, 0xff, (size_t)rows * cols * 2));
        CHECK(tl_cu_q4t_dequant_bf16(&tw, tr0, tnr, dq, 0, &e) == 0, "%s", e.msg);
        get(hq, dq, (size_t)tnr * cols * 2);
        int tbad = 0;
        for (int r = 0; r < tnr && !tbad; r++) {
            tl_tensor_row_f32(&w, tr0 + r, row);
            for (int i = 0; i < cols; i++) {
                float g = tl_bf16_to_f32(hq[(size_t)r * cols + i]);
                if (!(fabsf(g - row[i]) <= fabsf(row[i]) * (1.f / 128) + 1e-6f)) tbad++;
            }
        }
        CHECK(tbad == 0, "q4 tiled dequant %dx%d g%d: %d elements off", rows, cols, group, tbad);
        /* the prefill path's line-store dequantize: bit-identical to the direct one, rows outside untouched */
        uint16_t *hq2 = tl_malloc((size_t)rows * cols * 2);
        CU(cudaMemset(dq, 0xff, (size_t)rows * cols * 2));
        CHECK(tl_cu_q4t_dequant_bf16_lines(&tw, tr0, tnr, dq, 0, &e) == 0, "%s", e.msg);
        get(hq2, dq, (size_t)rows * cols * 2);
        size_t after = 0;
        for (size_t i = (size_t)tnr * cols; i < (size_t)rows * cols; i++) after += hq2[i] != 0xffff;
        CHECK(!memcmp(hq, hq2, (size_t)tnr * cols * 2) && after == 0,
              "q4 tiled dequant (line stores) %dx%d g%d: differs from the direct kernel (%zu written past the rows)", rows,
              cols, group, after);
        CHECK(tl_cu_q4t_dequant_bf16_lines(&tw, 5, 3, dq, 0, &e) == -1, "unaligned row start accepted");
        free(hq2);
        CHECK(tl_cu_q4t_dequant_bf16(&tw, 5, 3, dq, 0, &e) == -1, "unaligned row start accepted");
        cudaFree((void *)tw.codes), cudaFree((void *)tw.sb), cudaFree(ws);
        free(tc), free(tsb);
    }
    cudaFree((void *)dw.codes), cudaFree((void *)dw.sb), cudaFree(dx), cudaFree(db), cudaFree(dy), cudaFree(dq);
    free(codes), free(sc), free(bi), free(sb), free(x), free(bias), free(want), free(got), free(hq), free(row);
}

/* ---- the INT4 tensor-core GEMM (q4_gemm.cu), 17..512 token rows, against tl_cpu_matmul_ref: every
 * configuration, split-K automatic / off (and no K rotation) / 3 (partials summed by the reduce kernel), outputs and partials
 * poisoned with NaN, fresh x with outliers per n; the automatic run twice, equal bit for bit ---- */
static void test_q4m(int rows, int cols, int group, tl_dtype sbt, const int *ns, int nn, int with_bias) {
    const size_t nt = ((size_t)rows + 15) / 16;
    tl_tensor w = rand_q4(rows, cols, group, sbt);
    uint32_t *codes = (uint32_t *)w.data;
    uint16_t *sc = (uint16_t *)w.scales, *bi = (uint16_t *)w.biases;
    uint32_t *tc = tl_malloc(nt * 16 * (cols / 8) * 4), *tsb = tl_malloc(nt * 16 * (cols / group) * 4);
    CHECK(tl_cu_q4t_repack(codes, sc, bi, rows, cols, group, tc, tsb) == 0);
    tl_cu_q4 tw = {.rows = rows, .cols = cols, .group = group, .sb_bf16 = sbt == TL_BF16, .tiled = 1};
    tw.codes = dup_dev(tc, nt * 16 * (cols / 8) * 4);
    tw.sb = dup_dev(tsb, nt * 16 * (cols / group) * 4);
    float *bias = rand_vec(rows, 1.f), *db = dup_dev(bias, rows * 4);
    tl_error e = {{0}};
    for (int ni = 0; ni < nn; ni++) {
        const int n = ns[ni];
        const size_t ny = (size_t)n * rows, part_floats = 3 * ny;
        float *x = rand_vec((size_t)n * cols, 30.f), *want = tl_malloc(ny * 4), *got = tl_malloc(ny * 4),
              *again = tl_malloc(ny * 4);
        tl_cpu_matmul_ref(&w, x, want, n);
        if (with_bias)
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++) want[(size_t)t * rows + r] += bias[r];
        float *dx = dup_dev(x, (size_t)n * cols * 4), *dy = dev_nan(ny * 4), *dpart = dev_nan(part_floats * 4);
        uint16_t *dxh = dev_nan((size_t)n * cols * 2);
        double worst = 0;
        for (int cfg = 0; cfg <= TL_CU_GEMM_NCFG; cfg++)
            for (int sp = 0; sp < 3; sp++) {
                const int split = sp == 0 ? 0 : sp == 1 ? 1 : 3;
                CU(cudaMemset(dy, 0xff, ny * 4));
                CU(cudaMemset(dpart, 0xff, part_floats * 4));
                tl_cu_gemm_args ga = {.w = &tw, .x = dx, .bias = with_bias ? db : NULL, .y = dy, .n = n, .xh = dxh,
                                      .part = dpart, .part_floats = part_floats, .cfg = cfg, .split = split,
                                      .no_rot = sp == 1};
                CHECK(tl_cu_q4t_gemm(&ga, 0, &e) == 0, "%s", e.msg);
                get(got, dy, ny * 4);
                double err = tl_rel_err(got, want, ny);
                worst = err > worst ? err : worst;
                CHECK(err < 1e-3, "q4 gemm %s split %d %dx%d g%d %s n %d bias %d: rel err %.3g",
                      tl_cu_q4t_gemm_cfg_name(cfg ? cfg : tl_cu_q4t_gemm_cfg(n)), split, rows, cols, group,
                      tl_dtype_name(sbt), n, with_bias, err);
                if (sp == 0) { /* again: equal bit for bit */
                    CU(cudaMemset(dy, 0xff, ny * 4));
                    CHECK(tl_cu_q4t_gemm(&ga, 0, &e) == 0, "%s", e.msg);
                    get(again, dy, ny * 4);
                    CHECK(!memcmp(got, again, ny * 4), "q4 gemm cfg %d %dx%d n %d: two runs differ", cfg, rows, cols, n);
                }
            }
        printf("q4 gemm %dx%d g%d %s n %d bias %d: worst rel err %.2e over %d configurations x 3 splits\n", rows, cols,
               group, tl_dtype_name(sbt), n, with_bias, worst, TL_CU_GEMM_NCFG + 1);
        cudaFree(dx), cudaFree(dy), cudaFree(dpart), cudaFree(dxh);
        free(x), free(want), free(got), free(again);
    }
    /* errors: untiled, a bad configuration, a forced split without room for its partials */
    tl_cu_q4 ut = tw;
    ut.tiled = 0;
    tl_cu_gemm_args bad = {.w = &ut, .n = 17};
    CHECK(tl_cu_q4t_gemm(&bad, 0, &e) == -1 && strstr(e.msg, "tiled"), "%s", e.msg);
    bad.w = &tw, bad.cfg = TL_CU_GEMM_NCFG + 1;
    CHECK(tl_cu_q4t_gemm(&bad, 0, &e) == -1 && strstr(e.msg, "configuration"), "%s", e.msg);
    if (cols >= 256) {
        bad.cfg = 0, bad.split = 2;
        CHECK(tl_cu_q4t_gemm(&bad, 0, &e) == -1 && strstr(e.msg, "partials"), "%s", e.msg);
    }
    cudaFree((void *)tw.codes), cudaFree((void *)tw.sb), cudaFree(db);
    free(codes), free(sc), free(bi), free(tc), free(tsb), free(bias);
}

static void test_q4_errors(void) {
    tl_cu_q4 w = {.rows = 4, .cols = 96, .group = 48};
    tl_error e = {{0}};
    CHECK(tl_cu_q4_gemv(&w, NULL, NULL, NULL, 1, 0, &e) == -1 && strstr(e.msg, "group"), "%s", e.msg);
    w.group = 32;
    CHECK(tl_cu_q4_gemv(&w, NULL, NULL, NULL, 17, 0, &e) == -1 && strstr(e.msg, "n_tok"), "%s", e.msg);
    w.cols = 100;
    CHECK(tl_cu_q4_dequant_bf16(&w, 0, 1, NULL, 0, &e) == -1, "%s", e.msg);
    /* the one-launch GEMV: tiled layout only, n_tok 1..16, x of all tokens must fit in shared memory */
    tl_cu_q4 t = {.rows = 16, .cols = 18944, .group = 64, .tiled = 0};
    tl_cu_gemv_args ga = {.w = &t, .x_stride = 18944, .n_tok = 1};
    CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == -1 && strstr(e.msg, "tiled"), "%s", e.msg);
    t.tiled = 1;
    ga.n_tok = 17;
    CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == -1 && strstr(e.msg, "n_tok"), "%s", e.msg);
    ga.n_tok = 16;
    CHECK(!tl_cu_q4g_fits(18944, 16) && !tl_cu_q4g_fits(18944, 4) && tl_cu_q4g_fits(18944, 1) &&
              tl_cu_q4g_fits(3584, 8) && !tl_cu_q4g_fits(100, 1),
          "q4g fits");
    CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == -1 && strstr(e.msg, "shared memory"), "%s", e.msg);
    ga.n_tok = 1;
    ga.x_mode = TL_CU_X_SILU; /* needs a 2*cols stride */
    CHECK(tl_cu_q4g_gemv(&ga, 0, &e) == -1 && strstr(e.msg, "stride"), "%s", e.msg);
}

/* ---- RMSNorm (+ residual), SiLU*mul, embed ---- */
static void test_small_ops(int n_tok, int n) {
    tl_error e = {{0}};
    float *x = rand_vec((size_t)n_tok * n, 50.f), *d = rand_vec((size_t)n_tok * n, 5.f), *w = rand_vec(n, 3.f);
    float *want = tl_malloc((size_t)n_tok * n * 4), *got = tl_malloc((size_t)n_tok * n * 4);
    float *xs = tl_malloc((size_t)n_tok * n * 4);
    float *dx = dup_dev(x, (size_t)n_tok * n * 4), *dd = dup_dev(d, (size_t)n_tok * n * 4), *dw = dup_dev(w, n * 4);
    float *dy = dev_nan((size_t)n_tok * n * 4);
    tl_cpu_rmsnorm(x, w, want, n_tok, n, 1e-6f);
    CHECK(tl_cu_rmsnorm(dx, NULL, dw, dy, n_tok, n, 1e-6f, 0, &e) == 0, "%s", e.msg);
    get(got, dy, (size_t)n_tok * n * 4);
    CHECK(tl_rel_err(got, want, (size_t)n_tok * n) < 1e-5, "rmsnorm %d x %d: %.3g", n_tok, n,
          tl_rel_err(got, want, (size_t)n_tok * n));
    for (size_t i = 0; i < (size_t)n_tok * n; i++) xs[i] = x[i] + d[i];
    tl_cpu_rmsnorm(xs, w, want, n_tok, n, 1e-6f);
    CHECK(tl_cu_rmsnorm(dx, dd, dw, dy, n_tok, n, 1e-6f, 0, &e) == 0, "%s", e.msg);
    get(got, dy, (size_t)n_tok * n * 4);
    CHECK(tl_rel_err(got, want, (size_t)n_tok * n) < 1e-5, "add+rmsnorm: %.3g", tl_rel_err(got, want, (size_t)n_tok * n));
    get(got, dx, (size_t)n_tok * n * 4);
    CHECK(tl_rel_err(got, xs, (size_t)n_tok * n) == 0, "residual add not written back");

    /* silu_mul: gu [n_tok, 2n] (gate, up) */
    float *gu = rand_vec((size_t)n_tok * 2 * n, 10.f), *g = tl_malloc((size_t)n_tok * n * 4),
          *u = tl_malloc((size_t)n_tok * n * 4);
    for (int t = 0; t < n_tok; t++)
        for (int i = 0; i < n; i++) g[(size_t)t * n + i] = gu[(size_t)t * 2 * n + i], u[(size_t)t * n + i] = gu[(size_t)t * 2 * n + n + i];
    tl_cpu_silu_mul(g, u, (size_t)n_tok * n);
    float *dgu = dup_dev(gu, (size_t)n_tok * 2 * n * 4);
    CU(cudaMemset(dy, 0xff, (size_t)n_tok * n * 4));
    CHECK(tl_cu_silu_mul(dgu, dy, n_tok, n, 0, &e) == 0, "%s", e.msg);
    get(got, dy, (size_t)n_tok * n * 4);
    CHECK(tl_rel_err(got, g, (size_t)n_tok * n) < 1e-6, "silu_mul: %.3g", tl_rel_err(got, g, (size_t)n_tok * n));
    /* bf16 variants of the prefill path: rmsnorm's output = the fp32 kernel's, rounded; silu_mul from bf16
     * gate/up = the CPU reference on the rounded inputs, rounded (one bf16 rounding: 2^-8 relative) */
    if (n % 8 == 0) {
        uint16_t *hb = tl_malloc((size_t)n_tok * 2 * n * 2);
        uint16_t *dyb = dev_nan((size_t)n_tok * n * 2);
        float *dx2 = dup_dev(x, (size_t)n_tok * n * 4);
        CHECK(tl_cu_rmsnorm(dx2, dd, dw, dy, n_tok, n, 1e-6f, 0, &e) == 0, "%s", e.msg);
        get(got, dy, (size_t)n_tok * n * 4);
        CU(cudaMemcpy(dx2, x, (size_t)n_tok * n * 4, cudaMemcpyHostToDevice));
        CHECK(tl_cu_rmsnorm_bf16(dx2, dd, dw, dyb, n_tok, n, 1e-6f, 0, &e) == 0, "%s", e.msg);
        get(hb, dyb, (size_t)n_tok * n * 2);
        size_t off = 0;
        for (size_t i = 0; i < (size_t)n_tok * n; i++) off += hb[i] != tl_f32_to_bf16(got[i]);
        get(got, dx2, (size_t)n_tok * n * 4);
        CHECK(off == 0 && tl_rel_err(got, xs, (size_t)n_tok * n) == 0, "rmsnorm_bf16 %d x %d: %zu values off", n_tok, n, off);
        for (size_t i = 0; i < (size_t)n_tok * 2 * n; i++) hb[i] = tl_f32_to_bf16(gu[i]);
        for (int t = 0; t < n_tok; t++)
            for (int i = 0; i < n; i++)
                g[(size_t)t * n + i] = tl_bf16_to_f32(hb[(size_t)t * 2 * n + i]),
                u[(size_t)t * n + i] = tl_bf16_to_f32(hb[(size_t)t * 2 * n + n + i]);
        tl_cpu_silu_mul(g, u, (size_t)n_tok * n);
        uint16_t *dgub = dup_dev(hb, (size_t)n_tok * 2 * n * 2);
        CU(cudaMemset(dyb, 0xff, (size_t)n_tok * n * 2));
        CHECK(tl_cu_silu_mul_bf16(dgub, dyb, n_tok, n, 0, &e) == 0, "%s", e.msg);
        get(hb, dyb, (size_t)n_tok * n * 2);
        for (size_t i = 0; i < (size_t)n_tok * n; i++) got[i] = tl_bf16_to_f32(hb[i]);
        CHECK(tl_rel_err(got, g, (size_t)n_tok * n) < 8e-3, "silu_mul_bf16: %.3g", tl_rel_err(got, g, (size_t)n_tok * n));
        cudaFree(dyb), cudaFree(dx2), cudaFree(dgub);
        free(hb);
    }
    cudaFree(dx), cudaFree(dd), cudaFree(dw), cudaFree(dy), cudaFree(dgu);
    free(x), free(d), free(w), free(want), free(got), free(xs), free(gu), free(g), free(u);
}

static void test_embed(int n_vocab, int n_embd, int group) {
    tl_error e = {{0}};
    size_t nw = (size_t)n_vocab * n_embd / 8, ng = (size_t)n_vocab * n_embd / group;
    uint32_t *codes = tl_malloc(nw * 4), *sb = tl_malloc(ng * 4);
    uint16_t *sc = tl_malloc(ng * 2), *bi = tl_malloc(ng * 2);
    for (size_t i = 0; i < nw; i++) codes[i] = (uint32_t)tl_t_rng(&seed);
    for (size_t i = 0; i < ng; i++) sc[i] = tl_f32_to_f16(0.1f * tl_t_randf(&seed)), bi[i] = tl_f32_to_f16(tl_t_randf(&seed));
    tl_tensor w = {.type = TL_Q4, .rows = n_vocab, .cols = n_embd, .data = codes, .group = group, .sb_type = TL_F16,
                   .scales = sc, .biases = bi};
    int32_t ids[5] = {0, n_vocab - 1, 3, 3, n_vocab / 2};
    float *want = tl_malloc(5 * (size_t)n_embd * 4), *got = tl_malloc(5 * (size_t)n_embd * 4);
    tl_cpu_embed(&w, ids, 5, want);
    tl_cu_q4_pack_sb(sc, bi, ng, sb);
    tl_cu_q4 dw = {.rows = n_vocab, .cols = n_embd, .group = group, .sb_bf16 = 0};
    dw.codes = dup_dev(codes, nw * 4);
    dw.sb = dup_dev(sb, ng * 4);
    int32_t *dids = dup_dev(ids, sizeof ids);
    float *dout = dev_nan(5 * (size_t)n_embd * 4);
    CHECK(tl_cu_embed(&dw, NULL, n_vocab, n_embd, dids, NULL, 5, dout, 0, &e) == 0, "%s", e.msg);
    get(got, dout, 5 * (size_t)n_embd * 4);
    CHECK(tl_rel_err(got, want, 5 * (size_t)n_embd) < 1e-6, "embed q4: %.3g", tl_rel_err(got, want, 5 * (size_t)n_embd));
    /* gather rows 4, 1 of the embedded rows */
    int32_t idx[2] = {4, 1};
    int32_t *didx = dup_dev(idx, sizeof idx);
    float *dg = dev_nan(2 * (size_t)n_embd * 4);
    CHECK(tl_cu_gather_rows(dout, didx, 2, n_embd, dg, 0, &e) == 0, "%s", e.msg);
    get(got, dg, 2 * (size_t)n_embd * 4);
    CHECK(!memcmp(got, want + 4 * (size_t)n_embd, (size_t)n_embd * 4) && !memcmp(got + n_embd, want + n_embd, (size_t)n_embd * 4),
          "gather_rows");
    cudaFree((void *)dw.codes), cudaFree((void *)dw.sb), cudaFree(dids), cudaFree(dout), cudaFree(didx), cudaFree(dg);
    free(codes), free(sb), free(sc), free(bi), free(want), free(got);
}

/* The embedding of TL_TOKEN_PREV(r) ids (backend.h) is that of prev[r].token: n ids (every 3rd such an id, r = 0
 * and the last row among them), bf16 table, against the same rows looked up by their resolved ids. */
static void test_embed_prev(int n, int n_prev) {
    tl_error e = {{0}};
    const int V = 3000, E = 64;
    uint16_t *tab = tl_malloc((size_t)V * E * 2);
    for (size_t i = 0; i < (size_t)V * E; i++) tab[i] = tl_f32_to_bf16(tl_t_randf(&seed));
    int32_t *ids = tl_malloc((size_t)n * 4), *want = tl_malloc((size_t)n * 4);
    tl_cu_samp_out *prev = tl_malloc((size_t)n_prev * sizeof *prev);
    for (int r = 0; r < n_prev; r++) prev[r] = (tl_cu_samp_out){.token = (1000 + 7 * r) % V, .logprob = -1.f};
    for (int t = 0; t < n; t++) {
        const int r = t == 0 ? 0 : t == 3 ? n_prev - 1 : (int)(tl_t_rng(&seed) % (unsigned)n_prev);
        ids[t] = t % 3 == 0 ? TL_TOKEN_PREV(r) : (int32_t)(tl_t_rng(&seed) % V);
        want[t] = t % 3 == 0 ? prev[r].token : ids[t];
    }
    uint16_t *dtab = dup_dev(tab, (size_t)V * E * 2);
    int32_t *dids = dup_dev(ids, (size_t)n * 4), *dwant = dup_dev(want, (size_t)n * 4);
    tl_cu_samp_out *dprev = dup_dev(prev, (size_t)n_prev * sizeof *prev);
    float *d1 = dev_nan((size_t)n * E * 4), *d2 = dev_nan((size_t)n * E * 4);
    float *g1 = tl_malloc((size_t)n * E * 4), *g2 = tl_malloc((size_t)n * E * 4);
    CHECK(tl_cu_embed(NULL, dtab, V, E, dids, dprev, n, d1, 0, &e) == 0, "%s", e.msg);
    CHECK(tl_cu_embed(NULL, dtab, V, E, dwant, NULL, n, d2, 0, &e) == 0, "%s", e.msg);
    get(g1, d1, (size_t)n * E * 4);
    get(g2, d2, (size_t)n * E * 4);
    CHECK(!memcmp(g1, g2, (size_t)n * E * 4), "embed of TL_TOKEN_PREV ids: %d ids, %d rows", n, n_prev);
    cudaFree(dtab), cudaFree(dids), cudaFree(dwant), cudaFree(dprev), cudaFree(d1), cudaFree(d2);
    free(tab), free(ids), free(want), free(prev), free(g1), free(g2);
}

/* ---- RoPE + paged KV write, then attention: a mixed batch against tl_cpu_rope/kv_write/attn_naive ---- */
typedef struct {
    int n_past, n_new;
} seq_shape;

static size_t esz(tl_dtype t) { return t == TL_F32 ? 4 : 2; }

/* The fused RoPE + KV write + decode attention (tl_cu_attention_decode_rope) on a batch where every sequence
 * has one new token: a0 reads the raw q/k/v rows (a0->q) and its own copy of the cache from before the write
 * (a0->kcache / vcache inside dk2 / dv2); ra is the rope call that ran on dk / dv, aref the unfused decode
 * attention on its result. Variants: no split; up to 16 slices merged by a kernel, by the last slice, through
 * a cluster (> 8 slices: the merge kernel); up to 8 slices (and >= 64 keys a slice) through a cluster. Each
 * equals bit for bit the unfused decode kernel with the same slices merged by the merge kernel (and so does
 * the unfused kernel with the variant's merge); the cache equals the rope kernel's byte for byte, qkv is left
 * unrotated, the merge counters end at zero, a rerun and each token alone give the same bits. */
static void test_decode_rope(const tl_cu_attn_args *a0, const tl_cu_attn_args *aref, const tl_cu_rope_args *ra,
                             const float *qkv_raw, void *dk, void *dk2, void *dv, void *dv2, size_t half,
                             const float *want, size_t part_floats) {
    tl_error e = {{0}};
    const int n_tok = a0->n_tok, QD = a0->n_head * a0->head_dim, RW = a0->q_stride;
    const size_t ob = (size_t)n_tok * QD * 4;
    float *got = tl_malloc(ob), *got2 = tl_malloc(ob), *ref = tl_malloc(ob), *gq = tl_malloc((size_t)n_tok * RW * 4);
    char *c1 = tl_malloc(half), *c2 = tl_malloc(half);
    int32_t *cnt = tl_calloc(1024, 4);
    int *dcnt = dup_dev(cnt, 1024 * 4);
    tl_cu_rope_args r = *ra;
    r.qkv = (float *)a0->q, r.kcache = (void *)a0->kcache, r.vcache = (void *)a0->vcache;
    static const int msplit[6] = {1, 16, 16, 16, 8, 8}, skeys[6] = {0, 0, 0, 0, 0, 64};
    for (int v = 0; v < 6; v++) {
        tl_cu_attn_args at = *a0, rf = *aref;
        at.max_split = rf.max_split = msplit[v];
        at.split_keys = rf.split_keys = skeys[v];
        const int ns = tl_cu_attention_splits(&at);
        /* the reference: rope kernel's q and cache, decode kernel, merge kernel */
        rf.counters = NULL, rf.merge_cluster = 0;
        CU(cudaMemset(rf.out, 0xff, ob));
        CHECK(tl_cu_attention_decode(&rf, 0, &e) == 0, "%s", e.msg);
        get(ref, rf.out, ob);
        at.counters = v == 2 ? dcnt : NULL;
        at.merge_cluster = v >= 3;
        CU(cudaMemset(at.partial, 0xff, part_floats * 4));
        if (v >= 2) { /* the unfused kernel with this variant's merge */
            rf.counters = at.counters, rf.merge_cluster = at.merge_cluster;
            CU(cudaMemset(rf.out, 0xff, ob));
            CHECK(tl_cu_attention_decode(&rf, 0, &e) == 0, "%s", e.msg);
            get(got, rf.out, ob);
            CHECK(!memcmp(got, ref, ob), "decode attention h%d/%d hd%d variant %d (%d splits): merge differs from the "
                  "merge kernel's", at.n_head, at.n_head_kv, at.head_dim, v, ns);
        }
        CU(cudaMemset(at.out, 0xff, ob));
        CHECK(tl_cu_attention_decode_rope(&at, &r, 0, &e) == 0, "%s", e.msg);
        get(got, at.out, ob);
        get(c1, dk, half), get(c2, dk2, half);
        int same_k = !memcmp(c1, c2, half);
        get(c1, dv, half), get(c2, dv2, half);
        CHECK(same_k && !memcmp(c1, c2, half), "decode + rope h%d/%d hd%d: cache differs from the rope kernel's",
              at.n_head, at.n_head_kv, at.head_dim);
        CHECK(!memcmp(got, ref, ob),
              "decode + rope h%d/%d hd%d %s bs%d variant %d (%d splits): output differs from rope + decode kernel",
              at.n_head, at.n_head_kv, at.head_dim, tl_dtype_name(at.kv_dtype), at.block_size, v, ns);
        double md = 0, mb = 1e-30;
        for (size_t i = 0; i < (size_t)n_tok * QD; i++) {
            const double d = fabs((double)got[i] - want[i]);
            md = d == d ? fmax(md, d) : INFINITY;
            mb = fmax(mb, fabs((double)want[i]));
        }
        CHECK(md / mb < (at.kv_dtype == TL_BF16 ? 1e-2 : 3e-3), "decode + rope: rel err %.3g", md / mb);
        get(gq, at.q, (size_t)n_tok * RW * 4);
        CHECK(!memcmp(gq, qkv_raw, (size_t)n_tok * RW * 4), "decode + rope: qkv modified");
        CU(cudaMemset(at.out, 0xff, ob));
        CHECK(tl_cu_attention_decode_rope(&at, &r, 0, &e) == 0, "%s", e.msg);
        get(got2, at.out, ob);
        CHECK(!memcmp(got, got2, ob), "decode + rope: rerun differs");
        printf("  decode + rope h%d/%d hd%d %s bs%d, %d tokens, max ctx %d, variant %d, %d splits: rel err %.2e, = "
               "rope + decode kernels\n", at.n_head, at.n_head_kv, at.head_dim, tl_dtype_name(at.kv_dtype),
               at.block_size, n_tok, at.max_ctx, v, ns, md / mb);
        if (v) continue;
        int same = 1;
        for (int t = 0; t < n_tok; t += 1 + n_tok / 7) { /* a few tokens alone */
            tl_cu_attn_args a1 = at;
            tl_cu_rope_args r1 = r;
            a1.q += (size_t)t * RW, a1.out += (size_t)t * QD, a1.n_tok = 1, a1.ctx_len += t, a1.bt_off += t;
            r1.qkv += (size_t)t * RW, r1.n_tok = 1, r1.pos += t, r1.slot += t;
            CU(cudaMemset(at.out, 0xff, ob));
            CHECK(tl_cu_attention_decode_rope(&a1, &r1, 0, &e) == 0, "%s", e.msg);
            get(got2, at.out, ob);
            same &= !memcmp(got + (size_t)t * QD, got2 + (size_t)t * QD, (size_t)QD * 4);
        }
        CHECK(same, "decode + rope: a token alone differs from the same token in the batch");
    }
    get(cnt, dcnt, 1024 * 4);
    int nz = 0;
    for (int i = 0; i < 1024; i++) nz += cnt[i] != 0;
    CHECK(nz == 0, "decode + rope: %d merge counters left non-zero", nz);
    cudaFree(dcnt);
    free(got), free(got2), free(ref), free(gq), free(c1), free(c2), free(cnt);
}

static void test_attention(int n_head, int n_head_kv, int hd, tl_dtype kvt, int bs, const seq_shape *ss, int n_seq,
                           int neox) {
    tl_error e = {{0}};
    tl_config c = {.n_layer = 2, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = hd};
    int n_tok = 0, nblk = 0;
    for (int s = 0; s < n_seq; s++) n_tok += ss[s].n_new, nblk += (ss[s].n_past + ss[s].n_new + bs - 1) / bs;
    nblk += 3;
    tl_kv kv;
    CHECK(tl_kv_init_host(&kv, &c, bs, nblk, kvt, &e) == 0, "%s", e.msg);
    /* random history in every block (both layers), so attention reads real data */
    size_t half = kv.bytes / 2;
    for (size_t i = 0; i < half / esz(kvt); i++) {
        float a = tl_t_randf(&seed) * 2, b = tl_t_randf(&seed);
        if (kvt == TL_F32) ((float *)kv.k)[i] = a, ((float *)kv.v)[i] = b;
        else if (kvt == TL_BF16) ((uint16_t *)kv.k)[i] = tl_f32_to_bf16(a), ((uint16_t *)kv.v)[i] = tl_f32_to_bf16(b);
        else ((uint16_t *)kv.k)[i] = tl_f32_to_f16(a), ((uint16_t *)kv.v)[i] = tl_f32_to_f16(b);
    }
    /* block tables: a shuffled assignment of blocks; batch metadata */
    int32_t *perm = tl_malloc(nblk * 4);
    for (int i = 0; i < nblk; i++) perm[i] = i;
    for (int i = nblk - 1; i > 0; i--) {
        int j = (int)(tl_t_rng(&seed) % (unsigned)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    tl_batch_seq *seqs = tl_malloc((size_t)n_seq * sizeof *seqs);
    int32_t *tokens = tl_calloc(n_tok, 4), *pos = tl_malloc(n_tok * 4), *slot = tl_malloc(n_tok * 4);
    int32_t *ctx = tl_malloc(n_tok * 4), *btoff = tl_malloc(n_tok * 4);
    int tok = 0, used = 0, max_ctx = 0;
    for (int s = 0; s < n_seq; s++) {
        int nb = (ss[s].n_past + ss[s].n_new + bs - 1) / bs;
        seqs[s] = (tl_batch_seq){.tok_start = tok, .n_new = ss[s].n_new, .n_past = ss[s].n_past, .block_table = perm + used};
        for (int j = 0; j < ss[s].n_new; j++, tok++) {
            int p = ss[s].n_past + j;
            pos[tok] = p;
            slot[tok] = perm[used + p / bs] * bs + p % bs;
            ctx[tok] = p + 1;
            btoff[tok] = used;
            if (p + 1 > max_ctx) max_ctx = p + 1;
        }
        used += nb;
    }
    tl_batch b = {.n_tok = n_tok, .tokens = tokens, .pos = pos, .n_seq = n_seq, .seqs = seqs};
    const int QD = n_head * hd, KVD = n_head_kv * hd, RW = QD + 2 * KVD;
    float *qkv = rand_vec((size_t)n_tok * RW, 4.f);
    float *q = tl_malloc((size_t)n_tok * QD * 4), *k = tl_malloc((size_t)n_tok * KVD * 4), *v = tl_malloc((size_t)n_tok * KVD * 4);
    for (int t = 0; t < n_tok; t++) {
        memcpy(q + (size_t)t * QD, qkv + (size_t)t * RW, QD * 4);
        memcpy(k + (size_t)t * KVD, qkv + (size_t)t * RW + QD, KVD * 4);
        memcpy(v + (size_t)t * KVD, qkv + (size_t)t * RW + QD + KVD, KVD * 4);
    }
    /* device copies: the cache (before the write), qkv, metadata */
    const int layer = 1;
    size_t lay = half / 2; /* bytes of one layer of k (n_layer = 2) */
    void *dk = dup_dev(kv.k, half), *dv = dup_dev(kv.v, half);
    void *dk2 = dup_dev(kv.k, half), *dv2 = dup_dev(kv.v, half); /* the fused decode kernel's own cache */
    float *dqkv = dup_dev(qkv, (size_t)n_tok * RW * 4), *dqkv2 = dup_dev(qkv, (size_t)n_tok * RW * 4);
    int32_t *dpos = dup_dev(pos, n_tok * 4), *dslot = dup_dev(slot, n_tok * 4), *dctx = dup_dev(ctx, n_tok * 4),
            *dbtoff = dup_dev(btoff, n_tok * 4), *dbt = dup_dev(perm, nblk * 4);
    /* CPU reference */
    tl_cpu_rope(q, k, pos, n_tok, n_head, n_head_kv, hd, 1e6f, neox ? TL_ROPE_NEOX : TL_ROPE_NORM);
    tl_cpu_kv_write(&kv, layer, &b, k, v);
    float *want = tl_malloc((size_t)n_tok * QD * 4), *got = tl_malloc((size_t)n_tok * QD * 4);
    tl_attn_args aa = {.kv = &kv, .layer = layer, .batch = &b, .q = q, .out = want, .n_head = n_head,
                       .scale = 1.0f / sqrtf((float)hd)};
    tl_attn_naive(&aa, NULL);
    /* GPU */
    tl_cu_rope_args ra = {.qkv = dqkv, .n_tok = n_tok, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = hd,
                          .pos = dpos, .slot = dslot, .theta = 1e6f, .neox = neox, .kcache = (char *)dk + lay,
                          .vcache = (char *)dv + lay, .kv_dtype = kvt, .block_size = bs};
    CHECK(tl_cu_rope_kv_write(&ra, 0, &e) == 0, "%s", e.msg);
    /* q after rope equals the CPU's; the cache equals the CPU's cache byte for byte (f32) or nearly */
    float *gqkv = tl_malloc((size_t)n_tok * RW * 4);
    get(gqkv, dqkv, (size_t)n_tok * RW * 4);
    double qerr = 0;
    for (int t = 0; t < n_tok; t++) qerr = fmax(qerr, tl_rel_err(gqkv + (size_t)t * RW, q + (size_t)t * QD, QD));
    CHECK(qerr < 1e-6, "rope q: %.3g", qerr);
    char *gk = tl_malloc(half), *gv = tl_malloc(half);
    get(gk, dk, half);
    get(gv, dv, half);
    /* the cache as values: equal up to one rounding of the cache dtype (rope's fp32 FMA on the GPU may
     * differ from the CPU's in the last bit before the 16-bit rounding) */
    size_t diff = 0, nel = half / esz(kvt);
    double tol = kvt == TL_F32 ? 1e-6 : kvt == TL_BF16 ? 1.0 / 128 : 1.0 / 1024;
    for (size_t i = 0; i < nel; i++) {
        float a = tl_kv_load(gk, i, kvt), b2 = tl_kv_load(kv.k, i, kvt);
        float c2 = tl_kv_load(gv, i, kvt), d2 = tl_kv_load(kv.v, i, kvt);
        diff += !(fabsf(a - b2) <= tol * fabsf(b2) + 1e-6f) || !(fabsf(c2 - d2) <= tol * fabsf(d2) + 1e-6f);
    }
    CHECK(diff == 0, "kv write: %zu of %zu values differ", diff, nel);
    /* attn.cu is held to 2e-5 against the CPU attention over the GPU's own cache: a 16-bit value the GPU
     * rounded the other way (one bf16 ulp is 1/128) would otherwise decide the error, not the attention
     * (seen: 3.2e-5 with the CPU's cache, bf16, on one random draw) */
    float *wantg = tl_malloc((size_t)n_tok * QD * 4);
    {
        void *ck = kv.k, *cv = kv.v;
        kv.k = gk, kv.v = gv;
        tl_attn_args ag = aa;
        ag.out = wantg;
        tl_attn_naive(&ag, NULL);
        kv.k = ck, kv.v = cv;
    }

    size_t part_floats = (size_t)n_tok * n_head * 16 * (hd + 2);
    float *dpart = dev_nan(part_floats * 4), *dout = dev_nan((size_t)n_tok * QD * 4);
    int32_t *cnt = tl_calloc(1024, 4);
    int *dcnt = dup_dev(cnt, 1024 * 4);
    float *first_split = tl_malloc((size_t)n_tok * QD * 4);
    /* no split; slices + merge kernel; the same slices merged by the last one (equal bit for bit); 32-key slices */
    for (int split = 0; split < 4 && n_head / n_head_kv <= 8; split++) { /* attn.cu: G <= 8 */
        tl_cu_attn_args at = {.q = dqkv, .q_stride = RW, .out = dout, .n_tok = n_tok, .n_head = n_head,
                              .n_head_kv = n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                              .kcache = (char *)dk + lay, .vcache = (char *)dv + lay, .kv_dtype = kvt,
                              .block_size = bs, .ctx_len = dctx, .bt_off = dbtoff, .bt = dbt, .partial = dpart,
                              .max_split = split ? 16 : 1, .max_ctx = max_ctx, .n_sm = 132,
                              .split_keys = split == 3 ? 32 : 0, .counters = split >= 2 ? dcnt : NULL};
        CU(cudaMemset(dout, 0xff, (size_t)n_tok * QD * 4));
        CHECK(tl_cu_attention(&at, 0, &e) == 0, "%s", e.msg);
        get(got, dout, (size_t)n_tok * QD * 4);
        double err = tl_rel_err(got, wantg, (size_t)n_tok * QD);
        CHECK(err < 2e-5, "attention h%d/%d hd%d %s bs%d split %d: rel err %.3g", n_head, n_head_kv, hd,
              tl_dtype_name(kvt), bs, split, err);
        if (split == 1) memcpy(first_split, got, (size_t)n_tok * QD * 4);
        if (split == 2)
            CHECK(!memcmp(first_split, got, (size_t)n_tok * QD * 4), "attention: merged in-kernel != merge kernel");
    }
    /* the counters are back at zero for the next launch */
    get(cnt, dcnt, 1024 * 4);
    int nz = 0;
    for (int i = 0; i < 1024; i++) nz += cnt[i] != 0;
    CHECK(nz == 0, "attention: %d merge counters left non-zero", nz);
    cudaFree(dcnt);
    free(first_split), free(cnt), free(wantg);
    /* the tensor-core decode kernel (attn_decode.cu) on every token of the batch (each its own context), with
     * and without splits; NaN-poisoned outputs and partials; bit-identical on a rerun; without splits each
     * token alone (the backend's per-run pointer offsets) gives the same bits as in the whole batch. q and P
     * are rounded to 16 bits: tolerance 1e-2 (bf16) / 3e-3 (f16) of the largest output. */
    int dec1 = 1; /* every sequence one new token: the fused RoPE + attention kernel applies */
    for (int s = 0; s < n_seq; s++) dec1 &= ss[s].n_new == 1;
    if (tl_cu_attention_decode_ok(hd, kvt, n_head, n_head_kv)) {
        float *got2 = tl_malloc((size_t)n_tok * QD * 4);
        for (int split = 0; split < 2; split++) {
            tl_cu_attn_args at = {.q = dqkv, .q_stride = RW, .out = dout, .n_tok = n_tok, .n_head = n_head,
                                  .n_head_kv = n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                                  .kcache = (char *)dk + lay, .vcache = (char *)dv + lay, .kv_dtype = kvt,
                                  .block_size = bs, .ctx_len = dctx, .bt_off = dbtoff, .bt = dbt, .partial = dpart,
                                  .max_split = split ? 16 : 1, .max_ctx = max_ctx, .n_sm = 132};
            CU(cudaMemset(dout, 0xff, (size_t)n_tok * QD * 4));
            CU(cudaMemset(dpart, 0xff, part_floats * 4));
            CHECK(tl_cu_attention_decode(&at, 0, &e) == 0, "%s", e.msg);
            get(got, dout, (size_t)n_tok * QD * 4);
            double md = 0, mb = 1e-30;
            for (size_t i = 0; i < (size_t)n_tok * QD; i++) {
                const double d = fabs((double)got[i] - want[i]);
                md = d == d ? fmax(md, d) : INFINITY;
                mb = fmax(mb, fabs((double)want[i]));
            }
            const double err = md / mb, tol = kvt == TL_BF16 ? 1e-2 : 3e-3;
            CHECK(err < tol, "decode attention h%d/%d hd%d %s bs%d split %d (%d splits): rel err %.3g", n_head,
                  n_head_kv, hd, tl_dtype_name(kvt), bs, split, tl_cu_attention_splits(&at), err);
            printf("  decode attention h%d/%d hd%d %s bs%d, %d tokens, max ctx %d, %d splits: rel err %.2e\n", n_head,
                   n_head_kv, hd, tl_dtype_name(kvt), bs, n_tok, max_ctx, tl_cu_attention_splits(&at), err);
            CU(cudaMemset(dout, 0xff, (size_t)n_tok * QD * 4));
            CHECK(tl_cu_attention_decode(&at, 0, &e) == 0, "%s", e.msg);
            get(got2, dout, (size_t)n_tok * QD * 4);
            CHECK(!memcmp(got, got2, (size_t)n_tok * QD * 4), "decode attention: rerun differs");
            if (split) continue;
            int same = 1;
            for (int t = 0; t < n_tok; t += 1 + n_tok / 7) { /* a few tokens alone */
                tl_cu_attn_args r = at;
                r.q += (size_t)t * RW, r.out += (size_t)t * QD, r.n_tok = 1, r.ctx_len += t, r.bt_off += t;
                CU(cudaMemset(dout, 0xff, (size_t)n_tok * QD * 4));
                CHECK(tl_cu_attention_decode(&r, 0, &e) == 0, "%s", e.msg);
                get(got2, dout, (size_t)n_tok * QD * 4);
                same &= !memcmp(got + (size_t)t * QD, got2 + (size_t)t * QD, (size_t)QD * 4);
            }
            CHECK(same, "decode attention h%d/%d hd%d: a token alone differs from the same token in the batch", n_head,
                  n_head_kv, hd);
        }
        free(got2);
    }
    if (dec1 && tl_cu_attention_decode_ok(hd, kvt, n_head, n_head_kv))
        test_decode_rope(&(tl_cu_attn_args){.q = dqkv2, .q_stride = RW, .out = dout, .n_tok = n_tok, .n_head = n_head,
                                            .n_head_kv = n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                                            .kcache = (char *)dk2 + lay, .vcache = (char *)dv2 + lay, .kv_dtype = kvt,
                                            .block_size = bs, .ctx_len = dctx, .bt_off = dbtoff, .bt = dbt,
                                            .partial = dpart, .max_ctx = max_ctx, .n_sm = 132},
                         &(tl_cu_attn_args){.q = dqkv, .q_stride = RW, .out = dout, .n_tok = n_tok, .n_head = n_head,
                                            .n_head_kv = n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                                            .kcache = (char *)dk + lay, .vcache = (char *)dv + lay, .kv_dtype = kvt,
                                            .block_size = bs, .ctx_len = dctx, .bt_off = dbtoff, .bt = dbt,
                                            .partial = dpart, .max_ctx = max_ctx, .n_sm = 132},
                         &ra, qkv, dk, dk2, dv, dv2, half, want, part_floats);
    /* the tensor-core prefill kernel on the same batch (bf16/f16 cache, head_dim 64/128): variant 0 puts every
     * sequence in tiles of the full tile size, 1 in ragged smaller tiles, 2 only the sequences with more than
     * one new token (decode rows must stay untouched: NaN). q and P are rounded to 16 bits: tolerance 1e-2
     * (bf16) / 3e-3 (f16) of the largest output, against the fp32 reference. */
    if (tl_cu_attention_prefill_ok(hd, kvt, n_head, n_head_kv)) {
        int32_t *tiles = tl_malloc(((size_t)n_tok + n_seq) * 2 * 4);
        uint8_t *cov = tl_malloc((size_t)n_tok);
        for (int vr = 0; vr < 6; vr++) {
            const int variant = vr % 3, rows = vr < 3 ? 64 : 128;
            const int tt = tl_cu_prefill_tile_tokens(n_head, n_head_kv, rows);
            const int per = variant == 1 ? TL_MAX(1, tt / 3) : tt;
            int nt = 0;
            for (int t = 0; t < n_tok; t++) cov[t] = 0;
            for (int s = 0; s < n_seq; s++) {
                if (variant == 2 && seqs[s].n_new <= 1) continue;
                for (int j = 0; j < seqs[s].n_new; j += per, nt++)
                    tiles[2 * nt] = seqs[s].tok_start + j, tiles[2 * nt + 1] = TL_MIN(per, seqs[s].n_new - j);
                for (int j = 0; j < seqs[s].n_new; j++) cov[seqs[s].tok_start + j] = 1;
            }
            int32_t *dtiles = dup_dev(tiles, (size_t)nt * 2 * 4 + 4);
            tl_cu_attn_args at = {.q = dqkv, .q_stride = RW, .out = dout, .n_tok = n_tok, .n_head = n_head,
                                  .n_head_kv = n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                                  .kcache = (char *)dk + lay, .vcache = (char *)dv + lay, .kv_dtype = kvt,
                                  .block_size = bs, .ctx_len = dctx, .bt_off = dbtoff, .bt = dbt};
            CU(cudaMemset(dout, 0xff, (size_t)n_tok * QD * 4));
            CHECK(tl_cu_attention_prefill(&at, dtiles, nt, rows, 0, &e) == 0, "%s", e.msg);
            get(got, dout, (size_t)n_tok * QD * 4);
            double md = 0, mb = 1e-30;
            size_t touched = 0;
            for (int t = 0; t < n_tok; t++)
                for (int i = 0; i < QD; i++) {
                    const float a = got[(size_t)t * QD + i], w = want[(size_t)t * QD + i];
                    if (!cov[t]) {
                        touched += a == a; /* still NaN */
                        continue;
                    }
                    const double d = fabs((double)a - w);
                    md = d == d ? fmax(md, d) : INFINITY;
                    mb = fmax(mb, fabs((double)w));
                }
            const double err = md / mb, tol = kvt == TL_BF16 ? 1e-2 : 3e-3;
            CHECK(err < tol && touched == 0, "prefill attention h%d/%d hd%d %s bs%d rows %d variant %d (%d tiles): rel "
                  "err %.3g, %zu values outside the tiles written", n_head, n_head_kv, hd, tl_dtype_name(kvt), bs, rows,
                  variant, nt, err, touched);
            if (variant == 0)
                printf("  prefill attention h%d/%d hd%d %s bs%d rows %d, %d seqs, %d tiles: rel err %.2e\n", n_head,
                       n_head_kv, hd, tl_dtype_name(kvt), bs, rows, n_seq, nt, err);
            cudaFree(dtiles);
        }
        free(tiles), free(cov);
    }
    cudaFree(dk2), cudaFree(dv2), cudaFree(dqkv2);
    cudaFree(dk), cudaFree(dv), cudaFree(dqkv), cudaFree(dpos), cudaFree(dslot), cudaFree(dctx), cudaFree(dbtoff);
    cudaFree(dbt), cudaFree(dpart), cudaFree(dout);
    tl_kv_free_host(&kv);
    free(perm), free(tokens), free(pos), free(slot), free(ctx), free(btoff), free(qkv), free(q), free(k), free(v);
    free(want), free(got), free(gqkv), free(gk), free(gv), free(seqs);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int dev = 0;
    if (cudaGetDeviceCount(&dev) != cudaSuccess || dev == 0) {
        printf("no CUDA device: skipped\n");
        return 0;
    }
    test_q4_errors();
    const int toks[] = {1, 2, 3, 4, 5, 8, 9, 16};
    for (int i = 0; i < 8; i++) test_q4(37, 896, 64, toks[i], i % 2 ? TL_BF16 : TL_F16);
    test_q4(1, 32, 32, 1, TL_F16);
    test_q4(4608, 3584, 64, 1, TL_F16);
    test_q4(1000, 4864, 128, 7, TL_BF16);
    test_q4(333, 18944 / 8, 32, 16, TL_F16);
    test_q4(64, 29568, 64, 1, TL_F16); /* 72B's down_proj width: the one-pass fp16 prologue's widest */
    test_q4(16, 64, 32, 8, TL_BF16);
    test_q4(192, 128, 64, 1, TL_BF16); /* the HF reference checkpoints' shapes */
    test_q4(512, 128, 64, 1, TL_F16);
    test_q4(512, 128, 64, 7, TL_BF16);
    test_q4(17, 128, 128, 9, TL_F16);
    test_q4(3584, 18944, 64, 1, TL_BF16);
    test_q4(1000, 3584, 128, 16, TL_F16);
    test_q4(513, 4864, 32, 12, TL_BF16);
    /* 64-column blocks a tile not a multiple of the v2 stage (16 / 32): a warp with one block of a stage */
    test_q4(100, 1472, 64, 3, TL_F16);
    test_q4(40, 1472, 32, 1, TL_BF16);
    test_q4(50, 1152, 128, 5, TL_BF16);
    test_q4(300, 1472, 64, 16, TL_BF16);
    /* the INT4 GEMM: ragged rows, n = 17 .. 512, cols 64 .. 18944, groups 32/64/128, fp16/bf16 scales, bias on/off */
    const int n_a[] = {17, 33}, n_b[] = {17, 100}, n_c[] = {64, 257}, n_d[] = {33, 129}, n_e[] = {512}, n_f[] = {17, 40},
              n_g[] = {80}, n_h[] = {20};
    test_q4m(37, 896, 64, TL_F16, n_a, 2, 1);
    test_q4m(300, 1472, 32, TL_BF16, n_b, 2, 0);
    test_q4m(1000, 3584, 128, TL_BF16, n_c, 2, 1);
    test_q4m(333, 18944, 64, TL_F16, n_d, 2, 1);
    test_q4m(513, 4864, 32, TL_F16, n_e, 1, 0);
    test_q4m(16, 64, 32, TL_BF16, n_f, 2, 1);
    test_q4m(4608, 3584, 64, TL_F16, n_g, 1, 1);
    test_q4m(3584, 18944, 128, TL_BF16, n_h, 1, 0);
    test_small_ops(1, 896);
    test_small_ops(7, 3584);
    test_small_ops(3, 100);
    test_small_ops(33, 4864);
    test_embed(1000, 896, 64);
    test_embed_prev(1, 1);
    test_embed_prev(700, 37);
    const seq_shape mix[] = {{20, 37}, {1000, 1}, {0, 1}, {5, 2}};
    const seq_shape dec[] = {{3000, 1}};
    const seq_shape pre[] = {{0, 300}};
    test_attention(28, 4, 128, TL_BF16, 16, mix, 4, 1);
    test_attention(28, 4, 128, TL_BF16, 16, dec, 1, 1);
    test_attention(14, 2, 64, TL_F32, 16, mix, 4, 1);
    test_attention(14, 2, 64, TL_F16, 32, pre, 1, 0);
    test_attention(4, 2, 16, TL_F32, 16, mix, 4, 1);
    test_attention(8, 8, 32, TL_BF16, 8, mix, 4, 0);
    test_attention(64, 8, 128, TL_BF16, 16, dec, 1, 1);
    /* prefill-sized mixes for the tensor-core kernel: chunks with and without history (n_past off every
     * tile multiple), decodes, an empty history; GQA 7/1/2/8, head_dim 128/64, block sizes 16 and 7 */
    const seq_shape mix2[] = {{0, 200}, {1000, 1}, {37, 90}, {0, 1}, {130, 64}, {5, 17}};
    const seq_shape longp[] = {{0, 700}};
    test_attention(28, 4, 128, TL_F16, 16, mix2, 6, 1);
    test_attention(16, 16, 64, TL_BF16, 16, mix2, 6, 1);
    test_attention(12, 6, 128, TL_BF16, 7, mix2, 6, 0);
    test_attention(64, 8, 128, TL_BF16, 16, mix2, 6, 1);
    test_attention(14, 2, 64, TL_BF16, 16, longp, 1, 1);
    /* decode batches for the tensor-core decode kernel: 40 sequences of one new token, contexts 1..3000
     * (tile multiples and off them), plus one 9-token chunk; GQA 7/1/2/8/16, head_dim 128/64, bf16/f16,
     * block sizes 16/7/32; and single decodes of 512 / 3000 (splits) */
    seq_shape decs[41];
    unsigned long long ds = 99;
    const int fixed[8] = {0, 63, 64, 65, 127, 2999, 1, 1000};
    for (int i = 0; i < 40; i++) decs[i] = (seq_shape){i < 8 ? fixed[i] : (int)(tl_t_rng(&ds) % 3000), 1};
    decs[40] = (seq_shape){200, 9};
    const seq_shape d512[] = {{511, 1}};
    test_attention(28, 4, 128, TL_BF16, 16, decs, 41, 1);
    test_attention(28, 4, 128, TL_F16, 7, decs, 40, 1);
    test_attention(16, 16, 64, TL_BF16, 32, decs, 41, 1);
    test_attention(12, 6, 128, TL_F16, 16, decs, 40, 0);
    test_attention(64, 8, 64, TL_BF16, 16, decs, 41, 1);
    test_attention(32, 2, 128, TL_BF16, 16, decs, 20, 1);
    test_attention(28, 4, 128, TL_BF16, 16, d512, 1, 1);
    test_attention(14, 2, 64, TL_F16, 7, dec, 1, 1);
    TL_TEST_END();
}

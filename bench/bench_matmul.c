/* bench_matmul.c: matmul kernels vs the machine's read bandwidth (not a test).
 * usage: bench_matmul [threads] [rows] [cols] [all|q4]   (q4: only the Q4 kernel-table section)
 * Decode (n_tok = 1): weight GB/s vs a threaded read of a buffer far larger than the caches,
 * measured in the same run; batched decode (n_tok = 4); prefill (n_tok = 512) GFLOP/s.
 * Q4 is run both ways: int8 activations (i8) and fp32 FMA on dequantized groups (f32); then the
 * i8 path once per Q4 kernel table this CPU runs (AVX2 / AVX-512, one-row "-rows" vs 4-row).
 * The machine may be shared with other jobs: numbers are best-of-N. */
#include <immintrin.h>

#include "backend/cpu/matmul_impl.h"
#include "core/pool.h"

static unsigned long long rng = 1;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

typedef struct {
    const uint64_t *p;
    size_t n, chunk;
    uint64_t *out;
} sum_ctx;

__attribute__((target("avx2"))) static void sum_task(void *arg, int task, int thread) {
    sum_ctx *c = arg;
    size_t a = (size_t)task * c->chunk, b = a + c->chunk < c->n ? a + c->chunk : c->n;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = a; i + 16 <= b; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(c->p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(c->p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(c->p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(c->p + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, s0);
    c->out[task] = v[0] + v[1] + v[2] + v[3];
    (void)thread;
}

/* Threaded read bandwidth (GB/s) over a 1 GiB buffer, best of 5. */
static double read_bw(tl_pool *pool) {
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *p = tl_aligned_alloc(bytes);
    for (size_t i = 0; i < n; i++) p[i] = i;
    int tasks = 64;
    uint64_t out[64];
    sum_ctx c = {p, n, n / tasks, out};
    double best = 0;
    for (int it = 0; it < 5; it++) {
        double t0 = tl_now();
        tl_pool_run(pool, sum_task, &c, tasks);
        double dt = tl_now() - t0;
        if (bytes / dt / 1e9 > best) best = bytes / dt / 1e9;
    }
    uint64_t s = 0;
    for (int i = 0; i < tasks; i++) s += out[i];
    tl_aligned_free(p);
    return s ? best : 0;
}

static tl_tensor make(tl_dtype ty, int64_t rows, int64_t cols, int group) {
    tl_tensor t = {.type = ty, .rows = rows, .cols = cols};
    size_t n = (size_t)(rows * cols);
    if (ty == TL_Q4) {
        t.group = group;
        t.sb_type = TL_F16;
        t.data = tl_aligned_alloc(n / 2);
        t.scales = tl_aligned_alloc(n / group * 2);
        t.biases = tl_aligned_alloc(n / group * 2);
        for (size_t i = 0; i < n / 8; i++) ((uint32_t *)t.data)[i] = (uint32_t)next();
        for (size_t i = 0; i < n / group; i++) {
            ((uint16_t *)t.scales)[i] = tl_f32_to_f16(0.01f);
            ((uint16_t *)t.biases)[i] = tl_f32_to_f16(-0.08f);
        }
    } else if (ty == TL_Q8) {
        t.group = group;
        t.data = tl_aligned_alloc(n);
        t.scales = tl_aligned_alloc(n / group * 4);
        for (size_t i = 0; i < n / 8; i++) ((uint64_t *)t.data)[i] = next();
        for (size_t i = 0; i < n / group; i++) ((float *)t.scales)[i] = 0.01f;
    } else {
        size_t es = ty == TL_F32 ? 4 : 2;
        t.data = tl_aligned_alloc(n * es);
        for (size_t i = 0; i < n; i++) {
            float v = (float)((int64_t)(next() % 2001) - 1000) * 1e-4f;
            if (ty == TL_F32) ((float *)t.data)[i] = v;
            else ((uint16_t *)t.data)[i] = ty == TL_F16 ? tl_f32_to_f16(v) : tl_f32_to_bf16(v);
        }
    }
    return t;
}

static size_t wbytes(const tl_tensor *t) {
    size_t n = (size_t)(t->rows * t->cols);
    switch (t->type) {
    case TL_F32: return n * 4;
    case TL_F16:
    case TL_BF16: return n * 2;
    case TL_Q4: return n / 2 + n / t->group * 4;
    case TL_Q8: return n + n / t->group * 4;
    }
    return 0;
}

static double time_mm(const tl_mm_kernels *k, tl_mm_q4_path path, const tl_tensor *w, const float *x, float *y,
                      int n_tok, tl_pool *pool, int iters) {
    tl_mm_run(k, path, w, x, y, n_tok, pool); /* warm */
    double best = 1e30;
    for (int i = 0; i < iters; i++) {
        double t0 = tl_now();
        tl_mm_run(k, path, w, x, y, n_tok, pool);
        double dt = tl_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 0;
    int64_t rows = argc > 2 ? atoll(argv[2]) : 32768, cols = argc > 3 ? atoll(argv[3]) : 4096;
    tl_pool *pool = tl_pool_create(nth);
    const tl_mm_kernels *k = tl_mm_for_isa(tl_mm_isa());
    printf("bench_matmul: %d threads, kernels %s; the machine may be shared with other jobs (best-of-N)\n",
           tl_pool_size(pool), k->name);
    double bw = read_bw(pool);
    printf("threaded read bandwidth (1 GiB sum): %.1f GB/s\n", bw);
    float *x = tl_aligned_alloc((size_t)(512 * cols) * sizeof(float));
    for (int64_t i = 0; i < 512 * cols; i++) x[i] = (float)((int64_t)(next() % 2001) - 1000) * 1e-3f;
    float *y = tl_aligned_alloc((size_t)(512 * rows) * sizeof(float));
    struct {
        tl_dtype ty;
        tl_mm_q4_path path;
        const char *name;
    } cases[] = {{TL_BF16, 0, "bf16"}, {TL_F16, 0, "f16"},         {TL_F32, 0, "f32"},
                 {TL_Q4, TL_MM_Q4_I8, "q4 g64 i8"}, {TL_Q4, TL_MM_Q4_F32, "q4 g64 f32"}, {TL_Q8, 0, "q8 g32"}};
    printf("decode/batched: W [%lld, %lld]; prefill: first 4864 rows x %lld cols (qwen2-0.5b ffn-like)\n",
           (long long)rows, (long long)cols, (long long)cols);
    printf("%-12s %9s %8s %7s %10s %10s %12s\n", "weights", "MB", "n_tok=1", "GB/s", "%read-bw", "n_tok=4", "512 GFLOP/s");
    bool q4_only = argc > 4 && !strcmp(argv[4], "q4");
    for (size_t ci = 0; ci < (q4_only ? 0 : sizeof cases / sizeof cases[0]); ci++) {
        tl_tensor w = make(cases[ci].ty, rows, cols, cases[ci].ty == TL_Q8 ? 32 : 64);
        double t1 = time_mm(k, cases[ci].path, &w, x, y, 1, pool, 5);
        double t4 = time_mm(k, cases[ci].path, &w, x, y, 4, pool, 3);
        tl_tensor wp = w;
        wp.rows = TL_MIN(rows, 4864);
        double tp = time_mm(k, cases[ci].path, &wp, x, y, 512, pool, 2);
        double gbs = wbytes(&w) / t1 / 1e9;
        printf("%-12s %9.1f %6.2fms %7.1f %9.0f%% %8.2fms %12.1f\n", cases[ci].name, wbytes(&w) / 1e6, t1 * 1e3, gbs,
               100 * gbs / bw, t4 * 1e3, 2.0 * 512 * wp.rows * cols / tp / 1e9);
        tl_aligned_free(w.data);
        tl_aligned_free(w.scales);
        if (w.biases) tl_aligned_free(w.biases);
    }
    /* Q4 int8 path per kernel table this CPU runs (the "-rows" ones: the previous one-row kernels) */
    const tl_mm_kernels *tabs[4];
    int ntab = 0;
    if (tl_mm_isa() >= TL_ISA_AVX2) tabs[ntab++] = &tl_mm_avx2_rows, tabs[ntab++] = &tl_mm_avx2;
    if (tl_mm_isa() >= TL_ISA_AVX512) tabs[ntab++] = &tl_mm_avx512_rows, tabs[ntab++] = &tl_mm_avx512;
    printf("q4 g64 i8 by kernel table (same W and x):\n");
    printf("%-12s %9s %8s %7s %10s %10s %12s\n", "table", "MB", "n_tok=1", "GB/s", "%read-bw", "n_tok=4", "512 GFLOP/s");
    tl_tensor w = make(TL_Q4, rows, cols, 64);
    for (int ti = 0; ti < ntab; ti++) {
        double t1 = time_mm(tabs[ti], TL_MM_Q4_I8, &w, x, y, 1, pool, 5);
        double t4 = time_mm(tabs[ti], TL_MM_Q4_I8, &w, x, y, 4, pool, 3);
        tl_tensor wp = w;
        wp.rows = TL_MIN(rows, 4864);
        double tp = time_mm(tabs[ti], TL_MM_Q4_I8, &wp, x, y, 512, pool, 2);
        double gbs = wbytes(&w) / t1 / 1e9;
        printf("%-12s %9.1f %6.2fms %7.1f %9.0f%% %8.2fms %12.1f\n", tabs[ti]->name, wbytes(&w) / 1e6, t1 * 1e3, gbs,
               100 * gbs / bw, t4 * 1e3, 2.0 * 512 * wp.rows * cols / tp / 1e9);
    }
    tl_aligned_free(w.data);
    tl_aligned_free(w.scales);
    tl_aligned_free(w.biases);
    tl_pool_free(pool);
    return 0;
}

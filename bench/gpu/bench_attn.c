/* bench_attn.c: decode attention alone, Qwen2-7B shapes (28 query heads, 4 KV heads, head_dim 128, KV bf16,
 * block 16, shuffled block tables), attn.cu's CUDA-core kernel (tl_cu_attention) against attn_decode.cu's
 * tensor-core kernel (tl_cu_attention_decode) in the same run: batches of decode rows with contexts uniform
 * in [128, 2048], and batch 1 at contexts 512 / 4096 (with the backend's splits: scratch for 16). Reports
 * microseconds (median of 20) and the KV bytes read per second against the D2D copy bandwidth (read +
 * write) measured here. Usage: gpu_bench_attn [commit]. Prints "RESULT name value". */
#include <cuda_runtime_api.h>
#include <math.h>

#include "backend/cuda/cuda_ops.h"
#include "model/model.h"
#include "tl_test.h" /* tl_t_rng */
#include "gpu_bench.h"

enum { NH = 28, NKV = 4, HD = 128, BS = 16, RW = (NH + 2 * NKV) * HD };

static void *dalloc_rand(size_t bytes, unsigned long long seed, int as_bf16) {
    void *d;
    CU(cudaMalloc(&d, bytes));
    size_t n = bytes / 4;
    uint32_t *h = tl_malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        if (as_bf16) { /* two bf16 values in [-2, 2) */
            uint32_t lo = tl_f32_to_bf16(tl_t_randf(&seed) * 2), hi = tl_f32_to_bf16(tl_t_randf(&seed) * 2);
            h[i] = lo | hi << 16;
        } else {
            float f = tl_t_randf(&seed) * 4;
            memcpy(&h[i], &f, 4);
        }
    }
    CU(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

/* one case: n rows, contexts from ctx[] ; times both kernels; returns nothing, prints */
static void run_case(const char *name, const char *tag, int n, const int *ctx, double copy, int n_sm) {
    int64_t nblk = 0, kv_tok = 0;
    int max_ctx = 0;
    for (int i = 0; i < n; i++) nblk += (ctx[i] + BS - 1) / BS, kv_tok += ctx[i], max_ctx = TL_MAX(max_ctx, ctx[i]);
    const size_t kvb = (size_t)nblk * NKV * BS * HD * 2;
    void *dk = dalloc_rand(kvb, 1, 1), *dv = dalloc_rand(kvb, 2, 1);
    float *dq = dalloc_rand((size_t)n * RW * 4, 3, 0);
    float *dout, *dpart;
    CU(cudaMalloc((void **)&dout, (size_t)n * NH * HD * 4));
    const int max_split = n <= 64 ? 16 : 1; /* as the backend */
    CU(cudaMalloc((void **)&dpart, (size_t)TL_MIN(n, 64) * NH * 16 * (HD + 2) * 4));
    int32_t *perm = tl_malloc((size_t)nblk * 4), *off = tl_malloc((size_t)n * 4);
    unsigned long long s = 77;
    for (int64_t i = 0; i < nblk; i++) perm[i] = (int32_t)i;
    for (int64_t i = nblk - 1; i > 0; i--) {
        int64_t j = (int64_t)(tl_t_rng(&s) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int64_t used = 0;
    for (int i = 0; i < n; i++) off[i] = (int32_t)used, used += (ctx[i] + BS - 1) / BS;
    int32_t *dbt, *dctx, *doff;
    CU(cudaMalloc((void **)&dbt, (size_t)nblk * 4));
    CU(cudaMalloc((void **)&dctx, (size_t)n * 4));
    CU(cudaMalloc((void **)&doff, (size_t)n * 4));
    CU(cudaMemcpy(dbt, perm, (size_t)nblk * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dctx, ctx, (size_t)n * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(doff, off, (size_t)n * 4, cudaMemcpyHostToDevice));
    tl_cu_attn_args a = {.q = dq, .q_stride = RW, .out = dout, .n_tok = n, .n_head = NH, .n_head_kv = NKV,
                         .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .kcache = dk, .vcache = dv,
                         .kv_dtype = TL_BF16, .block_size = BS, .ctx_len = dctx, .bt_off = doff, .bt = dbt,
                         .partial = dpart, .max_split = max_split, .max_ctx = max_ctx, .n_sm = n_sm};
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    double us[2];
    float *res[2];
    for (int k = 0; k < 2; k++) {
        double t[20];
        for (int i = -3; i < 20; i++) {
            tl_error e = {{0}};
            cudaEventRecord(e0, 0);
            int r = k ? tl_cu_attention_decode(&a, 0, &e) : tl_cu_attention(&a, 0, &e);
            cudaEventRecord(e1, 0);
            if (r) fprintf(stderr, "%s: %s\n", k ? "decode" : "old", e.msg), exit(2);
            CU(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            if (i >= 0) t[i] = ms * 1e-3;
        }
        us[k] = median(t, 20) * 1e6;
        res[k] = tl_malloc((size_t)n * NH * HD * 4);
        CU(cudaMemcpy(res[k], dout, (size_t)n * NH * HD * 4, cudaMemcpyDeviceToHost));
    }
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < (size_t)n * NH * HD; i++) {
        double d = fabs((double)res[1][i] - res[0][i]);
        md = d == d ? fmax(md, d) : INFINITY;
        mb = fmax(mb, fabs((double)res[0][i]));
    }
    const double bytes = (double)kv_tok * NKV * HD * 2 * 2; /* K and V, bf16 */
    const double gb0 = bytes / us[0] / 1e3, gb1 = bytes / us[1] / 1e3;
    printf("%-36s splits %2d: attn.cu %8.1f us %6.0f GB/s (%3.0f%% of copy) | tensor cores %8.1f us %6.0f GB/s (%3.0f%% "
           "of copy), %.2fx; max diff %.1e of max |out|\n",
           name, tl_cu_attention_splits(&a), us[0], gb0, 100 * gb0 / (copy * 1e3), us[1], gb1,
           100 * gb1 / (copy * 1e3), us[0] / us[1], md / mb);
    printf("RESULT attn_%s_old_us %.1f\nRESULT attn_%s_tc_us %.1f\nRESULT attn_%s_tc_GBps %.0f\n", tag, us[0], tag, us[1],
           tag, gb1);
    free(res[0]), free(res[1]), free(perm), free(off);
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dout), cudaFree(dpart), cudaFree(dbt), cudaFree(dctx);
    cudaFree(doff);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    (void)tl_t_pass, (void)tl_t_fail;
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    const double copy = copy_bw();
    printf("gpu_bench_attn: %s, %d SMs, commit %s; copy bandwidth (D2D, read+write) %.2f TB/s\n", prop.name,
           prop.multiProcessorCount, argc > 1 ? argv[1] : "?", copy);
    printf("7B decode attention: %d query heads, %d KV heads, head_dim %d, KV bf16, block %d; GB/s = K+V bytes read\n",
           NH, NKV, HD, BS);
    int *ctx = tl_malloc(512 * sizeof *ctx);
    unsigned long long s = 5;
    const int rows[] = {64, 176, 256, 512};
    for (int ri = 0; ri < 4; ri++) {
        for (int i = 0; i < rows[ri]; i++) ctx[i] = 128 + (int)(tl_t_rng(&s) % 1921);
        char name[64], tag[32];
        snprintf(name, sizeof name, "%d rows, ctx uniform 128..2048", rows[ri]);
        snprintf(tag, sizeof tag, "b%d", rows[ri]);
        run_case(name, tag, rows[ri], ctx, copy, prop.multiProcessorCount);
    }
    const int c1[] = {512, 4096};
    for (int i = 0; i < 2; i++) {
        char name[64], tag[32];
        snprintf(name, sizeof name, "batch 1, ctx %d", c1[i]);
        snprintf(tag, sizeof tag, "b1_ctx%d", c1[i]);
        run_case(name, tag, 1, &c1[i], copy, prop.multiProcessorCount);
    }
    free(ctx);
    return 0;
}

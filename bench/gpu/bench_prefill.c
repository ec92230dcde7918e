/* bench_prefill.c: where a Qwen2-7B prefill's time goes, op by op, through the kernels of cuda_ops.h.
 * One transformer layer (7B shapes, INT4 group 64 in the tensor-core layout, KV bf16, block 16, one
 * sequence of L tokens) is replayed as the backend's forward_body runs it (rmsnorm, x -> bf16, dequantize
 * in 128 MiB row chunks + cuBLAS bf16->fp32, bias, rope + KV write, attention, silu*mul), each op between
 * CUDA events, times the 28 layers. Then variants of the big items measured alone: attention
 * (tensor-core prefill kernel vs attn.cu), and the GEMMs (chunked as now, one GEMM per matrix, bf16 out).
 * Usage: gpu_bench_prefill [commit]. Prints the card's cuBLAS bf16 rate measured in the same run. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>

#include "backend/cuda/cuda_ops.h"
#include "model/model.h"
#include "tl_test.h"
#include "gpu_bench.h"

#define OK(x)                                                   \
    do {                                                        \
        tl_error e_ = {{0}};                                    \
        if ((x) != 0) fprintf(stderr, "%s: %s\n", #x, e_.msg), exit(2); \
    } while (0)
#define BL(x)                                                                      \
    do {                                                                           \
        cublasStatus_t s_ = (x);                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) fprintf(stderr, "%s: %d\n", #x, (int)s_), exit(2); \
    } while (0)

/* Qwen2-7B */
enum { E = 3584, NH = 28, NKV = 4, HD = 128, FF = 18944, NL = 28, BS = 16 };
#define DEQ_ELEMS (64u << 20) /* the backend's dequantize scratch (CU_DEQ_ELEMS) */

static void *dalloc(size_t n) {
    void *p;
    CU(cudaMalloc(&p, n));
    return p;
}
static void fill_u64(void *d, size_t bytes, unsigned long long seed) { /* random bits */
    size_t chunk = 64 << 20;
    uint64_t *h = tl_malloc(chunk);
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t n = TL_MIN(chunk, bytes - off);
        for (size_t i = 0; i < n / 8; i++) h[i] = tl_t_rng(&seed);
        CU(cudaMemcpy((char *)d + off, h, n, cudaMemcpyHostToDevice));
    }
    free(h);
}
static float *dev_randf(size_t n, float amp, unsigned long long seed) {
    float *h = tl_malloc(n * 4), *d = dalloc(n * 4);
    for (size_t i = 0; i < n; i++) h[i] = amp * tl_t_randf(&seed);
    CU(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    free(h);
    return d;
}
static uint16_t *dev_randbf(size_t n, unsigned long long seed) {
    uint16_t *h = tl_malloc(n * 2), *d = dalloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = tl_f32_to_bf16(tl_t_randf(&seed));
    CU(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

/* a random INT4 matrix in the tiled layout: random codes, i.i.d. small bf16 scales/biases (any order is a
 * valid tiled sb array) */
static tl_cu_q4 rand_q4(int64_t rows, int64_t cols, unsigned long long seed) {
    size_t nt = (size_t)(rows + 15) / 16, ncode = nt * 16 * (size_t)cols / 8, nsb = nt * 16 * (size_t)(cols / 64);
    uint32_t *codes = dalloc(ncode * 4), *sb = dalloc(nsb * 4);
    fill_u64(codes, ncode * 4, seed);
    uint32_t *h = tl_malloc(nsb * 4);
    for (size_t i = 0; i < nsb; i++)
        h[i] = tl_f32_to_bf16(0.002f + 0.01f * fabsf(tl_t_randf(&seed))) |
               (uint32_t)tl_f32_to_bf16(0.05f * tl_t_randf(&seed)) << 16;
    CU(cudaMemcpy(sb, h, nsb * 4, cudaMemcpyHostToDevice));
    free(h);
    return (tl_cu_q4){.rows = rows, .cols = cols, .group = 64, .sb_bf16 = 1, .tiled = 1, .codes = codes, .sb = sb};
}

static cudaEvent_t ev[64];
static int n_ev;
static cudaStream_t st;
static cublasHandle_t bl;
static void mark(void) { CU(cudaEventRecord(ev[n_ev++], st)); }

enum { C_SMALL, C_CONV, C_DEQ, C_GEMM, C_ATTN, C_N };

/* the backend's matmul for > 16 rows: x -> bf16, per 128 MiB row chunk: dequantize, GemmEx (fp32 out);
 * each piece between events, its category appended to cat[] */
static void matmul(const tl_cu_q4 *w, const float *x, float *y, int n, uint16_t *xbf, uint16_t *deq, int *cat) {
    const float one = 1.f, zero = 0.f;
    OK(tl_cu_f32_to_bf16(x, xbf, (size_t)n * w->cols, st, &e_));
    mark(), cat[n_ev - 1] = C_CONV;
    int64_t chunk = TL_MAX(16, (int64_t)DEQ_ELEMS / w->cols / 16 * 16);
    for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
        int64_t nr = TL_MIN(chunk, w->rows - r0);
        OK(tl_cu_q4t_dequant_bf16(w, r0, nr, deq, st, &e_));
        mark(), cat[n_ev - 1] = C_DEQ;
        BL(cublasGemmEx(bl, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)w->cols, &one, deq, CUDA_R_16BF, (int)w->cols, xbf,
                        CUDA_R_16BF, (int)w->cols, &zero, y + r0, CUDA_R_32F, (int)w->rows, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
        mark(), cat[n_ev - 1] = C_GEMM;
    }
}

/* the prefill path (forwards of > 512 tokens): x already bf16, line-store dequantize, fp32 or bf16 out */
static void matmul_big(const tl_cu_q4 *w, const uint16_t *xb, void *y, int y_bf16, int n, uint16_t *deq, int *cat) {
    const float one = 1.f, zero = 0.f;
    int64_t chunk = TL_MAX(16, (int64_t)DEQ_ELEMS / w->cols / 16 * 16);
    for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
        int64_t nr = TL_MIN(chunk, w->rows - r0);
        OK(tl_cu_q4t_dequant_bf16_lines(w, r0, nr, deq, st, &e_));
        mark(), cat[n_ev - 1] = C_DEQ;
        BL(cublasGemmEx(bl, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)w->cols, &one, deq, CUDA_R_16BF, (int)w->cols, xb,
                        CUDA_R_16BF, (int)w->cols, &zero, (char *)y + r0 * (y_bf16 ? 2 : 4),
                        y_bf16 ? CUDA_R_16BF : CUDA_R_32F, (int)w->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        mark(), cat[n_ev - 1] = C_GEMM;
    }
}

static double gemm_tflops(int m, int n, int k, const void *a, const void *b, void *c, cudaDataType ct) {
    const float one = 1.f, zero = 0.f;
    cudaEvent_t a0, a1;
    cudaEventCreate(&a0), cudaEventCreate(&a1);
    double t[7];
    for (int i = -2; i < 7; i++) {
        cudaEventRecord(a0, st);
        BL(cublasGemmEx(bl, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_16BF, k, b, CUDA_R_16BF, k, &zero, c, ct, m,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        cudaEventRecord(a1, st);
        CU(cudaEventSynchronize(a1));
        float ms;
        cudaEventElapsedTime(&ms, a0, a1);
        if (i >= 0) t[i] = ms * 1e-3;
    }
    cudaEventDestroy(a0), cudaEventDestroy(a1);
    return 2.0 * m * n * (double)k / median(t, 7) / 1e12;
}

int main(int argc, char **argv) {
    (void)tl_t_pass, (void)tl_t_fail;
    const char *commit = argc > 1 ? argv[1] : "?";
    struct cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, %d SMs; commit %s\n", p.name, p.multiProcessorCount, commit);
    CU(cudaStreamCreate(&st));
    BL(cublasCreate(&bl));
    BL(cublasSetStream(bl, st));
    for (int i = 0; i < 64; i++) CU(cudaEventCreate(&ev[i]));
    const int Lmax = 4096, RW = (NH + 2 * NKV) * HD, QD = NH * HD;
    /* ceiling: cuBLAS bf16 8192^3, bf16 out, random data (as bench_cuda) */
    uint16_t *ga = dev_randbf((size_t)8192 * 8192, 1), *gb = dev_randbf((size_t)8192 * 8192, 2);
    void *gc = dalloc((size_t)8192 * 8192 * 4);
    double mm = gemm_tflops(8192, 8192, 8192, ga, gb, gc, CUDA_R_16BF);
    printf("cuBLAS bf16 8192^3: %.0f TFLOP/s (bf16 out); fp32 out: %.0f TFLOP/s\n", mm,
           gemm_tflops(8192, 8192, 8192, ga, gb, gc, CUDA_R_32F));
    cudaFree(ga), cudaFree(gb), cudaFree(gc);

    tl_cu_q4 wqkv = rand_q4(RW, E, 11), wo = rand_q4(E, QD, 12), wgu = rand_q4(2 * FF, E, 13), wd = rand_q4(E, FF, 14);
    float *x = dev_randf((size_t)Lmax * E, 1.f, 21), *tmp = dev_randf((size_t)Lmax * E, 0.1f, 22);
    float *xn = dalloc((size_t)Lmax * E * 4), *qkv = dalloc((size_t)Lmax * RW * 4), *att = dalloc((size_t)Lmax * QD * 4);
    float *gu = dalloc((size_t)Lmax * 2 * FF * 4), *hb = dalloc((size_t)Lmax * FF * 4);
    float *nw = dev_randf(E, 1.f, 23), *bias = dev_randf(RW, 0.5f, 24);
    uint16_t *xbf = dalloc((size_t)Lmax * FF * 2), *deq = dalloc((size_t)DEQ_ELEMS * 2);
    const int nblk = Lmax / BS + 1;
    const size_t kvb = (size_t)nblk * NKV * BS * HD * 2;
    void *kc = dalloc(kvb), *vc = dalloc(kvb);
    fill_u64(kc, kvb, 31), fill_u64(vc, kvb, 32); /* overwritten by the rope write for the used slots */
    /* metadata: one sequence, shuffled block table */
    int32_t *h = tl_malloc((size_t)(4 * Lmax + nblk + 2 * Lmax) * 4);
    int32_t *pos = h, *slot = h + Lmax, *ctx = h + 2 * Lmax, *off = h + 3 * Lmax, *btab = h + 4 * Lmax,
            *tiles = btab + nblk;
    unsigned long long sd = 5;
    for (int i = 0; i < nblk; i++) btab[i] = i;
    for (int i = nblk - 1; i > 0; i--) {
        int j = (int)(tl_t_rng(&sd) % (unsigned)(i + 1)), t = btab[i];
        btab[i] = btab[j], btab[j] = t;
    }
    for (int t = 0; t < Lmax; t++) pos[t] = t, slot[t] = btab[t / BS] * BS + t % BS, ctx[t] = t + 1, off[t] = 0;
    const int tt = tl_cu_prefill_tile_tokens(NH, NKV, 64);
    int32_t *dm = dalloc((size_t)(4 * Lmax + nblk + 2 * Lmax) * 4);
    float *part = dalloc(4);

    printf("\nper-layer replay x %d layers (7B shapes, INT4 g64 tiled, KV bf16 block %d); ms for the whole model:\n", NL,
           BS);
    printf("%6s %9s %9s %9s %9s %9s %9s\n", "tokens", "small", "conv", "dequant", "gemm", "attn", "total");
    for (int L = 1024; L <= Lmax; L *= 2) {
        int n_tiles = 0;
        for (int j = 0; j < L; j += tt, n_tiles++) tiles[2 * n_tiles] = j, tiles[2 * n_tiles + 1] = TL_MIN(tt, L - j);
        CU(cudaMemcpy(dm, h, (size_t)(4 * Lmax + nblk + 2 * Lmax) * 4, cudaMemcpyHostToDevice));
        const int32_t *dpos = dm, *dslot = dm + Lmax, *dctx = dm + 2 * Lmax, *doff = dm + 3 * Lmax,
                      *dbt = dm + 4 * Lmax, *dtiles = dbt + nblk;
        /* mode 0: tensor-core attention, fp32 activations (commit ca6a79c's forward); 1: the same with attn.cu;
         * 2: tensor-core attention + the bf16 prefill path (rmsnorm/silu write bf16, gate/up bf16 out of
         * cuBLAS, line-store dequantize: the forward for > 512 tokens now) */
        double cat_ms[3][C_N] = {{0}};
        for (int mode = 0; mode < 3; mode++) {
            const int reps = 4;
            for (int rep = -1; rep < reps; rep++) {
                int cat[64];
                n_ev = 0;
                mark();
                if (mode == 2) {
                    OK(tl_cu_rmsnorm_bf16(x, tmp, nw, xbf, L, E, 1e-6f, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul_big(&wqkv, xbf, qkv, 0, L, deq, cat);
                } else {
                    OK(tl_cu_rmsnorm(x, tmp, nw, xn, L, E, 1e-6f, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul(&wqkv, xn, qkv, L, xbf, deq, cat);
                }
                OK(tl_cu_add_bias(qkv, bias, L, RW, st, &e_));
                mark(), cat[n_ev - 1] = C_SMALL;
                tl_cu_rope_args ra = {.qkv = qkv, .n_tok = L, .n_head = NH, .n_head_kv = NKV, .head_dim = HD,
                                      .pos = dpos, .slot = dslot, .theta = 1e6f, .neox = 1, .kcache = kc, .vcache = vc,
                                      .kv_dtype = TL_BF16, .block_size = BS};
                OK(tl_cu_rope_kv_write(&ra, st, &e_));
                mark(), cat[n_ev - 1] = C_SMALL;
                tl_cu_attn_args aa = {.q = qkv, .q_stride = RW, .out = att, .n_tok = L, .n_head = NH, .n_head_kv = NKV,
                                      .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .kcache = kc, .vcache = vc,
                                      .kv_dtype = TL_BF16, .block_size = BS, .ctx_len = dctx, .bt_off = doff, .bt = dbt,
                                      .partial = part, .max_split = 1, .max_ctx = L, .n_sm = p.multiProcessorCount};
                if (mode == 1) OK(tl_cu_attention(&aa, st, &e_));
                else OK(tl_cu_attention_prefill(&aa, dtiles, n_tiles, 64, st, &e_));
                mark(), cat[n_ev - 1] = C_ATTN;
                if (mode == 2) {
                    OK(tl_cu_f32_to_bf16(att, xbf, (size_t)L * QD, st, &e_));
                    mark(), cat[n_ev - 1] = C_CONV;
                    matmul_big(&wo, xbf, tmp, 0, L, deq, cat);
                    OK(tl_cu_rmsnorm_bf16(x, tmp, nw, xbf, L, E, 1e-6f, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul_big(&wgu, xbf, gu, 1, L, deq, cat);
                    OK(tl_cu_silu_mul_bf16((const uint16_t *)gu, xbf, L, FF, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul_big(&wd, xbf, tmp, 0, L, deq, cat);
                } else {
                    matmul(&wo, att, tmp, L, xbf, deq, cat);
                    OK(tl_cu_rmsnorm(x, tmp, nw, xn, L, E, 1e-6f, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul(&wgu, xn, gu, L, xbf, deq, cat);
                    OK(tl_cu_silu_mul(gu, hb, L, FF, st, &e_));
                    mark(), cat[n_ev - 1] = C_SMALL;
                    matmul(&wd, hb, tmp, L, xbf, deq, cat);
                }
                CU(cudaStreamSynchronize(st));
                if (rep < 0) continue;
                for (int i = 1; i < n_ev; i++) {
                    float ms;
                    CU(cudaEventElapsedTime(&ms, ev[i - 1], ev[i]));
                    cat_ms[mode][cat[i]] += ms * NL / reps;
                }
            }
        }
        double tot[3] = {0, 0, 0};
        for (int m = 0; m < 3; m++)
            for (int c = 0; c < C_N; c++) tot[m] += cat_ms[m][c];
        const double mat = 2.0 * L * NL * ((double)RW * E + (double)E * QD + 2.0 * FF * E + (double)E * FF);
        const double af = 4.0 * NL * NH * HD * ((double)L * (L + 1) / 2);
        static const char *mname[3] = {"tc attn, fp32 act", "attn.cu, fp32 act", "tc attn, bf16 act"};
        for (int m = 0; m < 3; m++)
            printf("%6d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f | %5.0f TFLOP/s = %3.0f%% of cuBLAS  (%s)\n", L,
                   cat_ms[m][C_SMALL], cat_ms[m][C_CONV], cat_ms[m][C_DEQ], cat_ms[m][C_GEMM], cat_ms[m][C_ATTN], tot[m],
                   (mat + af) / tot[m] * 1e-9, 100 * (mat + af) / tot[m] * 1e-9 / mm, mname[m]);
        printf("  L=%d: attention (causal, %.2f TFLOP): tensor cores %.0f TFLOP/s, attn.cu %.1f TFLOP/s; GEMMs %.0f "
               "TFLOP/s (fp32 path) / %.0f (bf16 path)\n",
               L, af * 1e-12, af / cat_ms[0][C_ATTN] * 1e-9, af / cat_ms[1][C_ATTN] * 1e-9,
               mat / cat_ms[0][C_GEMM] * 1e-9, mat / cat_ms[2][C_GEMM] * 1e-9);
        printf("RESULT replay%d_ms %.1f\nRESULT replay%d_bf16_ms %.1f\nRESULT attn%d_tc_TFLOPs %.0f\n", L, tot[0], L,
               tot[2], L, af / cat_ms[0][C_ATTN] * 1e-9);
        /* the attention kernel alone (one layer, K/V as the last replay wrote them), 64 vs 128 rows a block */
        for (int rows = 64; rows <= 128; rows *= 2) {
            const int t2 = tl_cu_prefill_tile_tokens(NH, NKV, rows);
            int nt2 = 0;
            for (int j = 0; j < L; j += t2, nt2++) tiles[2 * nt2] = j, tiles[2 * nt2 + 1] = TL_MIN(t2, L - j);
            CU(cudaMemcpy(dm + 4 * Lmax + nblk, tiles, (size_t)nt2 * 2 * 4, cudaMemcpyHostToDevice));
            tl_cu_attn_args aa = {.q = qkv, .q_stride = RW, .out = att, .n_tok = L, .n_head = NH, .n_head_kv = NKV,
                                  .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .kcache = kc, .vcache = vc,
                                  .kv_dtype = TL_BF16, .block_size = BS, .ctx_len = dctx, .bt_off = doff, .bt = dbt};
            double ta[9];
            for (int i = -2; i < 9; i++) {
                CU(cudaEventRecord(ev[0], st));
                OK(tl_cu_attention_prefill(&aa, dtiles, nt2, rows, st, &e_));
                CU(cudaEventRecord(ev[1], st));
                CU(cudaEventSynchronize(ev[1]));
                float ms;
                CU(cudaEventElapsedTime(&ms, ev[0], ev[1]));
                if (i >= 0) ta[i] = ms;
            }
            const double tm = median(ta, 9);
            printf("  attention alone, L=%d, %d rows a block: %.3f ms/layer = %.0f TFLOP/s\n", L, rows, tm,
                   af / NL / tm * 1e-9);
            printf("RESULT attn%d_rows%d_TFLOPs %.0f\n", L, rows, af / NL / tm * 1e-9);
        }
    }

    /* GEMM variants at L = 4096 on the 4 shapes: as now (dequantized chunks, fp32 out), the whole matrix in
     * one GEMM (fp32 out; bf16 out) */
    printf("\nGEMM variants, 4096 tokens, TFLOP/s (chunk = %u elements):\n", DEQ_ELEMS);
    const tl_cu_q4 *ws[4] = {&wqkv, &wo, &wgu, &wd};
    const char *wn[4] = {"qkv 4608x3584", "o 3584x3584", "gate_up 37888x3584", "down 3584x18944"};
    size_t maxel = (size_t)2 * FF * E;
    uint16_t *full = dalloc(maxel * 2);
    for (int i = 0; i < 4; i++) {
        const tl_cu_q4 *w = ws[i];
        OK(tl_cu_q4t_dequant_bf16(w, 0, w->rows, full, st, &e_));
        int64_t chunk = TL_MAX(16, (int64_t)DEQ_ELEMS / w->cols / 16 * 16);
        double tch = 0;
        for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
            int64_t nr = TL_MIN(chunk, w->rows - r0);
            double fl = 2.0 * nr * 4096 * w->cols;
            tch += fl / (gemm_tflops((int)nr, 4096, (int)w->cols, full + r0 * w->cols, xbf, gu, CUDA_R_32F) * 1e12);
        }
        double f = 2.0 * w->rows * 4096 * w->cols;
        printf("  %-20s chunked fp32-out %5.0f | one GEMM fp32-out %5.0f | one GEMM bf16-out %5.0f\n", wn[i], f / tch * 1e-12,
               gemm_tflops((int)w->rows, 4096, (int)w->cols, full, xbf, gu, CUDA_R_32F),
               gemm_tflops((int)w->rows, 4096, (int)w->cols, full, xbf, gu, CUDA_R_16BF));
    }
    CU(cudaDeviceSynchronize());
    return 0;
}

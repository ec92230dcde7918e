/* bench_cuda.c: CUDA backend benchmarks against the card's own ceilings, measured in the same run:
 * device-to-device copy bandwidth (bytes read + written) and a cuBLAS bf16 8192^3 matmul rate. Then the
 * INT4 GEMV alone, decode (batch 1 and batched) and 4096-token prefill of a dummy model through the
 * backend's forward. Usage: gpu_bench_cuda [model=dummy:qwen2-7b] [commit] [decode | engine [n] | gemm [max batch]].
 * Prints "RESULT name value".
 * Timings are medians; the host may be shared, the GPU is not. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"
#include "engine/engine.h"
#include "tl_test.h" /* tl_t_rng */
#include "gpu_bench.h"

static void fill_random(void *d, size_t bytes, unsigned long long seed) {
    size_t chunk = 64 << 20;
    uint64_t *h = tl_malloc(chunk);
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t n = TL_MIN(chunk, bytes - off);
        for (size_t i = 0; i < n / 8; i++) h[i] = tl_t_rng(&seed);
        CU(cudaMemcpy((char *)d + off, h, n, cudaMemcpyHostToDevice));
    }
    free(h);
}

/* A device INT4 matrix [rows, cols] of random codes (seed) and constant group-64 fp16 (scale | bias) words,
 * sized for the tiled layout (rows padded to 16; random codes read the same bytes in either layout); *bytes
 * += what a GEMV streams. Free with bench_q4_free. */
static tl_cu_q4 bench_q4(int rows, int cols, int tiled, unsigned long long seed, size_t *bytes) {
    const size_t rp = (size_t)(rows + 15) / 16 * 16, cb = rp * cols / 2, sb = rp * (cols / 64) * 4;
    void *c, *s;
    CU(cudaMalloc(&c, cb));
    CU(cudaMalloc(&s, sb));
    fill_random(c, cb, seed);
    uint16_t *hs = tl_malloc(sb);
    for (size_t i = 0; i < sb / 2; i += 2) hs[i] = tl_f32_to_f16(0.01f), hs[i + 1] = tl_f32_to_f16(-0.08f);
    CU(cudaMemcpy(s, hs, sb, cudaMemcpyHostToDevice));
    free(hs);
    if (bytes) *bytes += cb + sb;
    return (tl_cu_q4){.rows = rows, .cols = cols, .group = 64, .sb_bf16 = 0, .tiled = tiled, .codes = c, .sb = s};
}
static void bench_q4_free(tl_cu_q4 *w) { cudaFree((void *)w->codes), cudaFree((void *)w->sb); }

/* GEMV alone on 7B-shaped matrices: 4 copies rotated so L2 (50 MB) holds none between calls */
static void gemv_bench(double copy) {
    const int shapes[][2] = {{4608, 3584}, {3584, 3584}, {37888, 3584}, {3584, 18944}, {152064, 3584}};
    const int toks[] = {1, 4, 16};
    for (int si = 0; si < 5; si++) {
        int rows = shapes[si][0], cols = shapes[si][1];
        size_t bytes = 0; /* of one copy */
        tl_cu_q4 w[4];
        for (int k = 0; k < 4; k++) w[k] = bench_q4(rows, cols, 0, 11 + k, k ? NULL : &bytes);
        float *x, *y;
        CU(cudaMalloc((void **)&x, (size_t)16 * cols * 4));
        CU(cudaMalloc((void **)&y, (size_t)16 * rows * 4));
        CU(cudaMemset(x, 0x3c, (size_t)16 * cols * 4)); /* finite values: 0x3c3c3c3c = 0.0115 */
        void *ws;
        CU(cudaMalloc(&ws, tl_cu_q4t_ws_bytes(cols)));
        /* fp32 CUDA-core, q4_mma.cu (3 launches), q4_gemv.cu (1 launch: shared-memory ring fed by bulk copies,
         * 16 consumer warps), and two probes of q4_gemv.cu's kernel with wrong results: ring (the weight stream
         * alone: consumers only wait and release stages) and math (the consumers alone: no loads, no waits) */
        const char *vn[5] = {"fp32", "mma", "v3", "ring", "math"};
        const int vimpl[5] = {0, 0, 0, TL_CU_GEMV_RING, TL_CU_GEMV_MATH};
        for (int ti = 3; ti < 15; ti++) { /* (fp32 skipped: see bench/RESULTS.md for it) */
            int vi = ti / 3, tiled = vi >= 1, one = vi >= 2;
            if (vi >= 3 && toks[ti % 3] > 8) continue;
            if (one && !tl_cu_q4g_fits(cols, toks[ti % 3])) {
                printf("gemv int4 %-5s %6d x %5d  n_tok %2d: x does not fit shared memory (mma used)\n", vn[vi], rows, cols, toks[ti % 3]);
                continue;
            }
            for (int k = 0; k < 4; k++) w[k].tiled = tiled; /* random codes: either layout reads the same bytes */
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0), cudaEventCreate(&e1);
            double t[20];
            tl_error e = {{0}};
            for (int i = -4; i < 20; i++) {
                cudaEventRecord(e0, 0);
                tl_cu_gemv_args ga = {.w = &w[(i + 8) % 4], .x = x, .x_stride = cols, .y = y, .n_tok = toks[ti % 3],
                                      .impl = vimpl[vi]};
                int r = one     ? tl_cu_q4g_gemv(&ga, 0, &e)
                        : tiled ? tl_cu_q4t_gemv(&w[(i + 8) % 4], x, NULL, y, toks[ti % 3], ws, 0, &e)
                                : tl_cu_q4_gemv(&w[(i + 8) % 4], x, NULL, y, toks[ti % 3], 0, &e);
                if (r) fprintf(stderr, "%s\n", e.msg), exit(2);
                cudaEventRecord(e1, 0);
                CU(cudaEventSynchronize(e1));
                float ms;
                cudaEventElapsedTime(&ms, e0, e1);
                if (i >= 0) t[i] = ms * 1e-3;
            }
            double tm = median(t, 20), bw = bytes / tm / 1e12;
            const char *nm = vn[vi];
            printf("gemv int4 %-5s %6d x %5d  n_tok %2d: %7.1f us  %.2f TB/s (%.0f%% of copy)\n", nm, rows, cols,
                   toks[ti % 3], tm * 1e6, bw, 100 * bw / copy);
            printf("RESULT gemv_%s_%dx%d_t%d_TBps %.3f\n", nm, rows, cols, toks[ti % 3], bw);
        }
        cudaFree(ws);
        for (int k = 0; k < 4; k++) bench_q4_free(&w[k]);
        cudaFree(x), cudaFree(y);
    }
}

/* One 7B layer's GEMVs alone (o 3584x3584 on att, gate/up 37888x3584 RMSNorm'ed, down 3584x18944 SiLU*up,
 * next q/k/v 4608x3584 RMSNorm'ed, batch 1), 4 copies of the layer rotated past L2, CUDA events around the
 * four launches (PDL, own stream), in variants: ring depth caps, and probes with wrong results that leave
 * out the x prologue, the epilogue, the math or the loads (what each costs). */
static void layer_bench(double copy) {
    const int shp[4][2] = {{3584, 3584}, {37888, 3584}, {3584, 18944}, {4608, 3584}};
    tl_cu_q4 w[4][4];
    size_t bytes = 0;
    for (int m = 0; m < 4; m++)
        for (int k = 0; k < 4; k++) w[m][k] = bench_q4(shp[m][0], shp[m][1], 1, 31 + 4 * m + k, k ? NULL : &bytes);
    float *x, *att, *gu, *qkv, *nw;
    CU(cudaMalloc((void **)&x, 3584 * 4));
    CU(cudaMalloc((void **)&att, 3584 * 4));
    CU(cudaMalloc((void **)&gu, 37888 * 4));
    CU(cudaMalloc((void **)&qkv, 4608 * 4));
    CU(cudaMalloc((void **)&nw, 3584 * 4));
    CU(cudaMemset(x, 0x3c, 3584 * 4));
    CU(cudaMemset(att, 0x3c, 3584 * 4));
    CU(cudaMemset(gu, 0x3c, 37888 * 4));
    CU(cudaMemset(nw, 0x3c, 3584 * 4));
    cudaStream_t st;
    CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    /* variants: name, ring cap, tl_cu_gemv_args.dbg probe bits, impl */
    static const struct { const char *name; int ring, dbg, impl, pair; } lv[] = {
        {"ring <= 6, gate/up pairs (forward_decode's)", 6, 0, 0, 1},
        {"ring <= 6, SiLU in down's prologue", 6, 0, 0, 0},
        {"ring <= 6, gate/up pairs, norm weights after the wait", 6, 16, 0, 1},
        {"ring <= 6, SiLU in down's, norm weights after (d7dc005)", 6, 16, 0, 0},
        {"ring <= 6, loop prologues", 6, 8, 0, 1},
        {"ring <= 6, no x prologue (probe)", 6, 2, 0, 1},
        {"ring <= 6, no epilogue (probe)", 6, 4, 0, 1},
        {"ring <= 4", 4, 0, 0, 1},
        {"ring as deep as fits", 0, 0, 0, 1},
        {"ring alone", 0, 0, TL_CU_GEMV_RING, 1},
        {"ring alone, no prologue", 0, 2, TL_CU_GEMV_RING, 1},
        {"math alone", 0, 0, TL_CU_GEMV_MATH, 1},
        {"math alone, no pro/epilogue", 0, 6, TL_CU_GEMV_MATH, 1},
        {"x first off (every stage before x)", 6, 7 << 12, 0, 1},
        {"v4 at one token, x first off (63639e0)", 6, 128 | 7 << 12, 0, 1},
        {"x first 1 stage", 6, 2 << 12, 0, 1},
        {"ring <= 6, gate/up pairs (again)", 6, 0, 0, 1},
        {"ring <= 6, SiLU in down's prologue (again)", 6, 0, 0, 0},
        {"ring <= 6, loop prologues (again)", 6, 8, 0, 1},
    };
    const int nvn = (int)(sizeof lv / sizeof lv[0]);
    for (int v = 0; v < nvn; v++) {
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0), cudaEventCreate(&e1);
        double t[20];
        tl_error e = {{0}};
        for (int i = -4; i < 20; i++) {
            const int k = (i + 8) % 4;
            tl_cu_gemv_args a[4] = {
                {.w = &w[0][k], .x = att, .x_stride = 3584, .resid = x, .y = x, .n_tok = 1, .pdl = 1},
                {.w = &w[1][k], .x = x, .x_stride = 3584, .x_mode = TL_CU_X_RMSNORM, .norm_w = nw, .eps = 1e-6f, .y = gu, .n_tok = 1, .pdl = 1},
                {.w = &w[2][k], .x = gu, .x_stride = 37888, .x_mode = TL_CU_X_SILU, .resid = x, .y = x, .n_tok = 1, .pdl = 1},
                {.w = &w[3][k], .x = x, .x_stride = 3584, .x_mode = TL_CU_X_RMSNORM, .norm_w = nw, .eps = 1e-6f, .y = qkv, .n_tok = 1, .pdl = 1}};
            for (int j = 0; j < 4; j++) a[j].ring = lv[v].ring, a[j].dbg = lv[v].dbg, a[j].impl = lv[v].impl;
            if (lv[v].pair) /* h = SiLU(gate) * up in fp16 from gate/up, read by down */
                a[1].y = NULL, a[1].y_silu16 = (uint16_t *)gu, a[2].x = NULL, a[2].x16 = (const uint16_t *)gu,
                a[2].x_stride = 18944, a[2].x_mode = TL_CU_X_F16;
            CU(cudaMemcpyAsync(x, nw, 3584 * 4, cudaMemcpyDeviceToDevice, st)); /* finite x each time */
            cudaEventRecord(e0, st);
            int r = 0;
            for (int j = 0; j < 4 && !r; j++) r = tl_cu_q4g_gemv(&a[j], st, &e);
            if (r) fprintf(stderr, "%s\n", e.msg), exit(2);
            cudaEventRecord(e1, st);
            CU(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            if (i >= 0) t[i] = ms * 1e-3;
        }
        double tm = median(t, 20), bw = bytes / tm / 1e12;
        printf("layer gemvs (7B o, gate/up, down, q/k/v; %.1f MB, 4 launches) %-36s: %6.1f us  %.2f TB/s (%.0f%% of copy)\n",
               bytes / 1e6, lv[v].name, tm * 1e6, bw, 100 * bw / copy);
        cudaEventDestroy(e0), cudaEventDestroy(e1);
    }
    cudaStreamDestroy(st);
    for (int m = 0; m < 4; m++)
        for (int k = 0; k < 4; k++) bench_q4_free(&w[m][k]);
    cudaFree(x), cudaFree(att), cudaFree(gu), cudaFree(qkv), cudaFree(nw);
}

static size_t tensor_stream_bytes(const tl_tensor *t) {
    if (!t->data) return 0;
    if (t->type == TL_Q4) return (size_t)t->rows * t->cols / 2 + (size_t)t->rows * (t->cols / t->group) * 4;
    return (size_t)t->rows * t->cols * (t->type == TL_F32 ? 4 : 2);
}

/* spec loaded as INT4 group 64 (exit on failure), with its build time printed */
static tl_model *bench_model(const char *spec) {
    tl_error e = {{0}};
    tl_load_opts o = {.quant_bits = 4, .group_size = 64, .quiet = true};
    double t0 = tl_now();
    tl_model *m = tl_model_load(spec, &o, &e);
    if (!m) fprintf(stderr, "%s: %s\n", spec, e.msg), exit(2);
    printf("%s: built in %.1f s\n", spec, tl_now() - t0);
    return m;
}

/* bytes a decode token streams: every layer tensor, lm_head and the final norm; mat_params (if not NULL): the
 * parameters of the 7 matrices of every layer plus lm_head (2 FLOPs each a token) */
static size_t stream_bytes(const tl_model *m, double *mat_params) {
    const tl_config *cf = &m->cfg;
    size_t wbytes = tensor_stream_bytes(&m->w.lm_head) + (size_t)cf->n_embd * 4;
    double mp = (double)m->w.lm_head.rows * m->w.lm_head.cols;
    for (int l = 0; l < cf->n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        const tl_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down, &L->bq, &L->bk, &L->bv,
                                 &L->attn_norm, &L->ffn_norm};
        for (int i = 0; i < 12; i++) wbytes += tensor_stream_bytes(ts[i]);
        for (int i = 0; i < 7; i++) mp += (double)ts[i]->rows * ts[i]->cols;
    }
    if (mat_params) *mat_params = mp;
    return wbytes;
}

typedef struct {
    tl_model *m;
    tl_backend *be;
    tl_kv kv;
    int bs;
    float *logits;
    int sample; /* 1: forward_sample, greedy on the GPU (the engine's path: only the tokens come back), else forward
                 * with every logit row copied back */
} bctx;

/* one forward over n_seq sequences, each adding n_new tokens after n_past; seq s owns blocks s*nbs.. */
static double step(bctx *c, int n_seq, int n_new, int n_past, int nbs) {
    int T = n_seq * n_new;
    int32_t *tok = tl_malloc(T * 4), *pos = tl_malloc(T * 4), *lr = tl_malloc(n_seq * 4), *bt = tl_malloc((size_t)n_seq * nbs * 4);
    tl_batch_seq *q = tl_malloc(n_seq * sizeof *q);
    unsigned long long sd = 99 + n_past;
    for (int s = 0; s < n_seq; s++) {
        for (int i = 0; i < nbs; i++) bt[(size_t)s * nbs + i] = s * nbs + i;
        q[s] = (tl_batch_seq){.tok_start = s * n_new, .n_new = n_new, .n_past = n_past, .block_table = bt + (size_t)s * nbs};
        for (int j = 0; j < n_new; j++) tok[s * n_new + j] = (int32_t)(tl_t_rng(&sd) % 150000), pos[s * n_new + j] = n_past + j;
        lr[s] = s * n_new + n_new - 1;
    }
    tl_batch b = {.n_tok = T, .tokens = tok, .pos = pos, .n_seq = n_seq, .seqs = q, .n_logits = n_seq, .logit_rows = lr};
    tl_error e = {{0}};
    tl_row_sampling *rs = tl_calloc(n_seq, sizeof *rs); /* greedy */
    int32_t *st = tl_malloc(n_seq * 4);
    float *lp = tl_malloc(n_seq * 4);
    for (int s = 0; s < n_seq; s++) rs[s].top_p = 1.f;
    double t0 = tl_now();
    if (c->sample ? c->be->forward_sample(c->be, c->m, &c->kv, &b, rs, st, lp, c->logits, &e)
                  : c->be->forward(c->be, c->m, &c->kv, &b, c->logits, &e))
        fprintf(stderr, "forward: %s\n", e.msg), exit(2);
    double t = tl_now() - t0;
    free(rs), free(st), free(lp);
    free(tok), free(pos), free(lr), free(bt), free(q);
    return t;
}

/* n_steps greedy decode steps of sequence 0 (blocks 0..nbs-1) after n_past tokens, pipelined as the engine runs
 * them: step i + 1 is launched before step i is collected, its token TL_TOKEN_PREV(0) (step i's sample, taken on
 * the device). Returns the wall time a step, s (first launch to last collect over n_steps). The first step's
 * token is fixed; out (n_steps, may be NULL) gets the sampled tokens. */
static double pipe_steps(bctx *c, int n_steps, int n_past, int nbs, int32_t *out) {
    int32_t *bt = tl_malloc((size_t)nbs * 4), tok, pos, lr = 0, st;
    float lp;
    for (int i = 0; i < nbs; i++) bt[i] = i;
    tl_row_sampling rs = {.top_p = 1.f};
    const char *tp = getenv("TL_BENCH_TOP_P"), *tt = getenv("TL_BENCH_TEMP"); /* a sampled row: this top-p, u 0.5,
                                                                            * temperature 0.7 or TL_BENCH_TEMP */
    const char *tk = getenv("TL_BENCH_TOP_K");                               /* and top-k */
    if (tp) rs.temperature = tt ? (float)atof(tt) : 0.7f, rs.top_p = (float)atof(tp), rs.u = 0.5;
    if (tp && tk) rs.top_k = atoi(tk);
    tl_error e = {{0}};
    double t0 = tl_now();
    for (int i = 0; i <= n_steps; i++) {
        if (i < n_steps) {
            tok = i ? TL_TOKEN_PREV(0) : 4242, pos = n_past + i;
            tl_batch_seq q = {.tok_start = 0, .n_new = 1, .n_past = n_past + i, .block_table = bt};
            tl_batch b = {.n_tok = 1, .tokens = &tok, .pos = &pos, .n_seq = 1, .seqs = &q, .n_logits = 1, .logit_rows = &lr};
            if (c->be->launch(c->be, c->m, &c->kv, &b, &rs, c->logits, &e)) fprintf(stderr, "launch: %s\n", e.msg), exit(2);
        }
        if (i > 0) {
            if (c->be->collect(c->be, &st, &lp, &e)) fprintf(stderr, "collect: %s\n", e.msg), exit(2);
            if (out) out[i - 1] = st;
        }
    }
    double t = (tl_now() - t0) / n_steps;
    free(bt);
    return t;
}

/* median of 20 timed launches (after 3 warm-ups) of fn, in us */
typedef int (*launch_fn)(void *ctx, tl_error *e);
static double time_us(launch_fn fn, void *ctx) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    double t[20];
    tl_error e = {{0}};
    for (int i = -3; i < 20; i++) {
        cudaEventRecord(e0, 0);
        if (fn(ctx, &e)) fprintf(stderr, "%s\n", e.msg), exit(2);
        cudaEventRecord(e1, 0);
        CU(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0) t[i] = ms * 1e3;
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return median(t, 20);
}
static int run_attn(void *c, tl_error *e) { return tl_cu_attention(c, 0, e); }
static int run_rope(void *c, tl_error *e) { return tl_cu_rope_kv_write(c, 0, e); }
typedef struct { float *x, *d, *w, *y; int n; } norm_ctx;
static int run_norm(void *c, tl_error *e) {
    norm_ctx *n = c;
    return tl_cu_rmsnorm(n->x, n->d, n->w, n->y, 1, n->n, 1e-6f, 0, e);
}
static int run_silu(void *c, tl_error *e) {
    norm_ctx *n = c;
    return tl_cu_silu_mul(n->x, n->y, 1, n->n, 0, e);
}

/* The non-GEMV kernels of one 7B decode layer, alone (batch 1, ctx 512, KV bf16, block 16): RoPE + KV write,
 * attention with 1..16 context splits (+ merge), RMSNorm (+ residual), SiLU*mul. */
static void small_bench(void) {
    const int nh = 28, nkv = 4, hd = 128, bs = 16, ctx = 513, E = 3584, F = 18944, RW = (nh + 2 * nkv) * hd;
    const int nblk = ctx / bs + 1;
    size_t kvb = (size_t)nblk * nkv * bs * hd * 2;
    void *k, *v;
    float *qkv, *out, *part, *x, *d, *w, *y;
    CU(cudaMalloc(&k, kvb));
    CU(cudaMalloc(&v, kvb));
    CU(cudaMemset(k, 0x3c, kvb)); /* finite bf16 values (random bits would hold NaN/Inf) */
    CU(cudaMemset(v, 0x3c, kvb));
    CU(cudaMalloc((void **)&qkv, RW * 4));
    CU(cudaMemset(qkv, 0x3c, RW * 4));
    CU(cudaMalloc((void **)&out, nh * hd * 4));
    CU(cudaMalloc((void **)&part, (size_t)nh * 16 * (hd + 2) * 4));
    CU(cudaMalloc((void **)&x, (size_t)2 * F * 4));
    CU(cudaMalloc((void **)&d, (size_t)E * 4));
    CU(cudaMalloc((void **)&w, (size_t)E * 4));
    CU(cudaMalloc((void **)&y, (size_t)2 * F * 4));
    CU(cudaMemset(x, 0x3c, (size_t)2 * F * 4));
    CU(cudaMemset(d, 0x3c, (size_t)E * 4));
    CU(cudaMemset(w, 0x3c, (size_t)E * 4));
    int32_t meta[4 + 64], *dm;
    meta[0] = ctx - 1, meta[1] = ctx - 1, meta[2] = ctx, meta[3] = 0; /* pos, slot, ctx_len, bt_off */
    for (int i = 0; i < nblk; i++) meta[4 + i] = i;
    CU(cudaMalloc((void **)&dm, sizeof meta));
    CU(cudaMemcpy(dm, meta, sizeof meta, cudaMemcpyHostToDevice));
    tl_cu_rope_args ra = {.qkv = qkv, .n_tok = 1, .n_head = nh, .n_head_kv = nkv, .head_dim = hd, .pos = dm, .slot = dm + 1,
                          .theta = 1e6f, .neox = 1, .kcache = k, .vcache = v, .kv_dtype = TL_BF16, .block_size = bs};
    printf("rope + kv write (7B, 1 token): %.1f us\n", time_us(run_rope, &ra));
    const int splits[] = {1, 16, 16, 16, 16, 16, 16}, keys[] = {128, 128, 64, 32, 128, 64, 32};
    int *cnt;
    CU(cudaMalloc((void **)&cnt, 64 * 4));
    CU(cudaMemset(cnt, 0, 64 * 4));
    for (int i = 0; i < 7; i++) { /* i >= 4: slices merged inside the attention kernel (one launch) */
        tl_cu_attn_args aa = {.q = qkv, .q_stride = RW, .out = out, .n_tok = 1, .n_head = nh, .n_head_kv = nkv,
                              .head_dim = hd, .scale = 0.088f, .kcache = k, .vcache = v, .kv_dtype = TL_BF16,
                              .block_size = bs, .ctx_len = dm + 2, .bt_off = dm + 3, .bt = dm + 4, .partial = part,
                              .max_split = splits[i], .max_ctx = ctx, .n_sm = 132, .split_keys = keys[i],
                              .counters = i >= 4 ? cnt : NULL};
        double us = time_us(run_attn, &aa);
        double bytes = 2.0 * ctx * nkv * hd * 2;
        printf("attention decode (7B, ctx %d, >= %3d keys a slice -> %2d slices, merge %s): %.1f us, %.2f TB/s of KV\n",
               ctx, keys[i], tl_cu_attention_splits(&aa), i >= 4 ? "in-kernel" : "kernel   ", us, bytes / us / 1e6);
    }
    norm_ctx nc = {.x = x, .d = d, .w = w, .y = y, .n = E};
    printf("rmsnorm + residual (1 x %d): %.1f us\n", E, time_us(run_norm, &nc));
    norm_ctx sc = {.x = x, .y = y, .n = F};
    printf("silu*mul (1 x %d): %.1f us\n", F, time_us(run_silu, &sc));
    cudaFree(k), cudaFree(v), cudaFree(qkv), cudaFree(out), cudaFree(part), cudaFree(x), cudaFree(d), cudaFree(w);
    cudaFree(y), cudaFree(dm), cudaFree(cnt);
}


/* ---- INT4 GEMM (q4_gemm.cu) alone against what matmul_run did before, 7B shapes, n = 32..512 token rows:
 * new = tl_cu_q4t_gemm (x -> fp16 + GEMM (+ split-K reduce)), each configuration and the default pick;
 * deq = x -> bf16, dequantize to bf16 in 128 MiB row chunks + cuBLAS per chunk (no bf16 copies: 72B);
 * copy = x -> bf16 + cuBLAS on a resident bf16 copy (make_bf16_copies: 7B). 4 weight sets rotated so L2 holds
 * none between calls. Effective weight GB/s: the bytes each path must read (INT4 + scales, or bf16). ---- */
typedef struct {
    int which; /* 0 new, 1 deq, 2 copy */
    tl_cu_gemm_args ga;
    tl_cu_q4 *w;   /* [4] */
    uint16_t *wb[4], *xbf, *deq;
    const float *x;
    float *y;
    int n, k;
    cublasHandle_t bl;
} gemm_ctx;
static int run_gemm(void *c_, tl_error *e) {
    gemm_ctx *c = c_;
    const tl_cu_q4 *w = &c->w[c->k++ % 4];
    if (c->which == 0) {
        c->ga.w = w;
        return tl_cu_q4t_gemm(&c->ga, 0, e);
    }
    if (tl_cu_f32_to_bf16(c->x, c->xbf, (size_t)c->n * w->cols, 0, e)) return -1;
    const float one = 1, zero = 0;
    const int64_t chunk = c->which == 1 ? TL_MAX(16, ((int64_t)64 << 20) / w->cols / 16 * 16) : w->rows;
    for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
        const int64_t nr = TL_MIN(chunk, w->rows - r0);
        const uint16_t *A = c->wb[(c->k - 1) % 4] + r0 * w->cols;
        if (c->which == 1) {
            if (tl_cu_q4t_dequant_bf16(w, r0, nr, c->deq, 0, e)) return -1;
            A = c->deq;
        }
        if (cublasGemmEx(c->bl, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, c->n, (int)w->cols, &one, A, CUDA_R_16BF,
                         (int)w->cols, c->xbf, CUDA_R_16BF, (int)w->cols, &zero, c->y + r0, CUDA_R_32F, (int)w->rows,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            return tl_errf(e, "cublasGemmEx failed");
    }
    return 0;
}

static void gemm_bench(double copy, double mm) {
    const int shapes[][2] = {{4608, 3584}, {3584, 3584}, {37888, 3584}, {3584, 18944}};
    const char *sn[4] = {"qkv", "o", "gate_up", "down"};
    const int ns[] = {32, 64, 128, 256, 512};
    const int nmax = 512, kmax = 18944;
    gemm_ctx c = {0};
    CU(cudaMalloc((void **)&c.x, (size_t)nmax * kmax * 4));
    CU(cudaMalloc((void **)&c.y, (size_t)nmax * 37888 * 4));
    CU(cudaMalloc((void **)&c.xbf, (size_t)nmax * kmax * 2));
    CU(cudaMalloc((void **)&c.deq, (size_t)64 << 21));
    CU(cudaMalloc((void **)&c.ga.part, (size_t)64 << 21));
    CU(cudaMemset((void *)c.x, 0x3c, (size_t)nmax * kmax * 4));
    c.ga.xh = c.xbf;
    c.ga.part_floats = (size_t)32 << 20;
    cublasCreate(&c.bl);
    tl_cu_q4 w[4];
    c.w = w;
    double tot[3][5] = {{0}};
    for (int si = 0; si < 4; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1];
        size_t wbytes = 0; /* of one copy */
        for (int k = 0; k < 4; k++) {
            w[k] = bench_q4(rows, cols, 1, 21 + k, k ? NULL : &wbytes);
            CU(cudaMalloc((void **)&c.wb[k], (size_t)rows * cols * 2));
            tl_error e = {{0}};
            if (tl_cu_q4t_dequant_bf16(&w[k], 0, rows, c.wb[k], 0, &e)) fprintf(stderr, "%s\n", e.msg), exit(2);
        }
        for (int ni = 0; ni < 5; ni++) {
            const int n = ns[ni];
            const double fl = 2.0 * rows * cols * n;
            c.n = n, c.ga.n = n, c.ga.x = c.x, c.ga.y = c.y, c.ga.split = 0;
            char line[512];
            int o = snprintf(line, sizeof line, "gemm %-7s %5d x %5d n %3d:", sn[si], rows, cols, n);
            double best = 1e30;
            for (int cfg = 1; cfg <= TL_CU_GEMM_NCFG; cfg++) {
                c.which = 0, c.ga.cfg = cfg;
                double us = time_us(run_gemm, &c);
                best = TL_MIN(best, us);
                o += snprintf(line + o, sizeof line - o, " %s %.1f", tl_cu_q4t_gemm_cfg_name(cfg), us);
            }
            c.which = 0, c.ga.cfg = 0, c.ga.no_rot = 1;
            const double lock = time_us(run_gemm, &c);
            c.ga.no_rot = 0;
            printf("%s us; default without K rotation %.1f us\n", line, lock);
            double t[3];
            for (int v = 0; v < 3; v++) {
                c.which = v, c.ga.cfg = 0;
                t[v] = time_us(run_gemm, &c);
                tot[v][ni] += t[v];
            }
            const double wb4 = (double)wbytes, wb16 = (double)rows * cols * 2;
            printf("gemm %-7s n %3d: new (%s) %.1f us = %.0f TFLOP/s, %.0f GB/s of INT4 = %.0f%% of copy (best config "
                   "%.1f us) | deq+cuBLAS %.1f us | cuBLAS on bf16 copy %.1f us = %.0f TFLOP/s = %.0f%% of cuBLAS %.0f, "
                   "%.0f GB/s | new vs copy %.2fx, vs deq %.2fx\n",
                   sn[si], n, tl_cu_q4t_gemm_cfg_name(tl_cu_q4t_gemm_cfg(n)), t[0], fl / t[0] / 1e6, wb4 / t[0] / 1e3,
                   100 * wb4 / t[0] / 1e6 / copy, best, t[1], t[2], fl / t[2] / 1e6, 100 * fl / t[2] / 1e6 / mm, mm,
                   wb16 / t[2] / 1e3, t[2] / t[0], t[1] / t[0]);
            printf("RESULT gemm_%s_n%d_us new %.1f deq %.1f copy %.1f\n", sn[si], n, t[0], t[1], t[2]);
        }
        /* split-K sweep of the default configuration on the small matrices */
        if (si == 1 || si == 3)
            for (int n = 32; n <= 128; n *= 2) {
                char line[512];
                int o = snprintf(line, sizeof line, "gemm %-7s n %3d split:", sn[si], n);
                for (int sp = 1; sp <= 12; sp += sp < 4 ? 1 : 4) {
                    c.which = 0, c.ga.cfg = 0, c.ga.split = sp, c.n = n, c.ga.n = n;
                    o += snprintf(line + o, sizeof line - o, " %d: %.1f", sp, time_us(run_gemm, &c));
                }
                c.ga.split = 0;
                printf("%s us\n", line);
            }
        for (int k = 0; k < 4; k++) bench_q4_free(&w[k]), cudaFree(c.wb[k]);
    }
    for (int ni = 0; ni < 5; ni++)
        printf("gemm 7B layer (qkv + o + gate_up + down) n %3d: new %.1f us, deq+cuBLAS %.1f us, bf16 copy %.1f us; x 28 "
               "layers: %.2f / %.2f / %.2f ms\n",
               ns[ni], tot[0][ni], tot[1][ni], tot[2][ni], 28e-3 * tot[0][ni], 28e-3 * tot[1][ni], 28e-3 * tot[2][ni]);
    cublasDestroy(c.bl);
    cudaFree((void *)c.x), cudaFree(c.y), cudaFree(c.xbf), cudaFree(c.deq), cudaFree(c.ga.part);
}

/* Batched decode steps (n sequences of one new token at ctx 512) through the backend: the INT4 GEMM
 * (TL_CUDA_Q4GEMM=1) vs the path before it (=0) vs the default, in one process; bf16 copies as the backend
 * decides (7B: made; 72B: none) and, in a second backend (passes 2), TL_CUDA_BF16W=0 (the 72B situation). */
static void gemm_decode(const char *spec, int max_batch, int passes) {
    tl_error e = {{0}};
    tl_model *m = bench_model(spec);
    double t0;
    const int ctx = 512;
    for (int pass = 0; pass < passes; pass++) {
        if (pass == 1) setenv("TL_CUDA_BF16W", "0", 1);
        bctx c = {.m = m, .bs = 16};
        c.be = tl_backend_cuda_new(0.92f, &e);
        t0 = tl_now();
        if (!c.be || c.be->prepare(c.be, m, &e)) fprintf(stderr, "cuda: %s\n", e.msg), exit(2);
        printf("backend ready in %.1f s (bf16 copies %s)\n", tl_now() - t0, pass ? "off" : "auto");
        const tl_config *cf = &m->cfg;
        const int per = (ctx + 64) / c.bs + 1;
        if (c.be->kv_alloc(c.be, &c.kv, cf, c.bs, max_batch * per, TL_BF16, &e)) fprintf(stderr, "%s\n", e.msg), exit(2);
        c.logits = tl_malloc((size_t)max_batch * cf->n_vocab * 4);
        step(&c, TL_MIN(max_batch, 4), ctx, 0, per); /* 4 histories (the others' KV is left as allocated: timing only) */
        const char *mode[3] = {"0", "1", NULL}, *mname[3] = {"old (TL_CUDA_Q4GEMM=0)", "int4 gemm (=1)", "default"};
        for (int n = 32; n <= max_batch; n *= 2) {
            double tm[3];
            for (int v = 0; v < 3; v++) {
                if (mode[v]) setenv("TL_CUDA_Q4GEMM", mode[v], 1);
                else unsetenv("TL_CUDA_Q4GEMM");
                step(&c, n, 1, ctx, per); /* warm */
                double tb[8];
                for (int i = 0; i < 8; i++) tb[i] = step(&c, n, 1, ctx + 1 + i, per);
                tm[v] = median(tb, 8);
            }
            printf("decode batch %3d (%s, ctx %d, bf16 copies %s): %s %.2f ms/step = %.0f tok/s | %s %.2f ms = %.0f "
                   "tok/s | %s %.2f ms = %.0f tok/s | gemm vs old %.2fx\n",
                   n, spec, ctx, pass ? "off" : "auto", mname[0], tm[0] * 1e3, n / tm[0], mname[1], tm[1] * 1e3,
                   n / tm[1], mname[2], tm[2] * 1e3, n / tm[2], tm[0] / tm[1]);
            printf("RESULT decode_b%d_%s_ms old %.3f gemm %.3f default %.3f\n", n, pass ? "nocopy" : "copy", tm[0] * 1e3,
                   tm[1] * 1e3, tm[2] * 1e3);
        }
        unsetenv("TL_CUDA_Q4GEMM");
        c.be->kv_free(c.be, &c.kv);
        c.be->free(c.be);
        free(c.logits);
    }
    unsetenv("TL_CUDA_BF16W");
    tl_model_free(m);
}

/* One decode step traced (TL_CUDA_TRACE=1: every kernel of a layer stamps %globaltimer per block at its start,
 * when its PDL wait returned, when its inputs were in, at its end; cuda_backend.c): per kernel, averaged over
 * layers 1.., in us: wake = its first wait returning after the previous kernel's last block ended; inputs = from
 * there to its last block's inputs in; work = from there to its last block's end; share = its last end minus the
 * previous kernel's (the layer's critical path, summed); early = how long before the previous kernel's end its
 * first block started. */
static int cmp_u64(const void *a, const void *b) {
    const unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}
static void trace_report(const char *spec, bctx *bc, int ctx_dec, int per) {
    setenv("TL_CUDA_TRACE", "1", 1);
    double acc[6][5] = {{0}};
    int cnt[6] = {0};
    const long n = (long)TL_CU_TRACE_ROWS * TL_CU_TRACE_ROW;
    unsigned long long *tr = tl_malloc((size_t)n * 8), tick = ~0ull;
    const int L = bc->m->cfg.n_layer;
    for (int rep = 0; rep < 8; rep++) {
        step(bc, 1, 1, ctx_dec + 8 + rep, per); /* (inside the blocks step() gives each sequence) */
        if (rep < 3) continue; /* graph capture and warm-up */
        if (tl_cuda_trace_read(bc->be, tr, n) < 0) {
            printf("trace: none (not a fused decode step?)\n");
            break;
        }
        unsigned long long prev_end = 0;
        for (int l = 0; l < L && 6 * l + 6 <= TL_CU_TRACE_ROWS; l++)
            for (int k = 0; k < 6; k++) {
                const unsigned long long *r = tr + (size_t)(6 * l + k) * TL_CU_TRACE_ROW;
                unsigned long long S = ~0ull, W = ~0ull, P = 0, E = 0;
                int nb = 0;
                for (int b = 0; b < TL_CU_TRACE_ROW / 4; b++) {
                    if (!r[4 * b]) continue;
                    nb++;
                    if (r[4 * b] < S) S = r[4 * b];
                    if (r[4 * b + 1] && r[4 * b + 1] < W) W = r[4 * b + 1];
                    if (r[4 * b + 2] > P) P = r[4 * b + 2];
                    if (r[4 * b + 3] > E) E = r[4 * b + 3];
                }
                /* not launched (the merge kernel with TL_CUDA_ATT_MERGE=cluster / last): the next kernel is measured
                 * against the one before; the attention stamps its end before such an in-kernel merge, so the
                 * merge's time then shows in o's wake and share */
                if (!nb || W == ~0ull || !E) continue;
                if (l == 5 && rep == 3) { /* the timer's tick: the smallest step between this launch's stamps */
                    unsigned long long v[TL_CU_TRACE_ROW];
                    int m = 0;
                    for (int i = 0; i < TL_CU_TRACE_ROW; i++)
                        if (r[i]) v[m++] = r[i];
                    qsort(v, (size_t)m, 8, cmp_u64);
                    for (int i = 1; i < m; i++)
                        if (v[i] > v[i - 1] && v[i] - v[i - 1] < tick) tick = v[i] - v[i - 1];
                }
                if (l >= 1 && prev_end) {
                    const unsigned long long in = P ? P : W;
                    acc[k][0] += (double)(long long)(W - prev_end), acc[k][1] += (double)(long long)(in - W);
                    acc[k][2] += (double)(long long)(E - in), acc[k][3] += (double)(long long)(E - prev_end);
                    acc[k][4] += (double)(long long)(prev_end - S);
                    cnt[k]++;
                }
                prev_end = E;
            }
    }
    unsetenv("TL_CUDA_TRACE");
    static const char *const kn[6] = {"q/k/v GEMV", "RoPE + attention", "merge", "o GEMV", "gate/up GEMV", "down GEMV"};
    double tot = 0;
    printf("decode step trace (%s, batch 1, ctx ~%d; us, mean over layers 1.. of 5 steps; timer tick %llu ns):\n", spec,
           ctx_dec + 8, tick == ~0ull ? 0ull : tick);
    for (int k = 0; k < 6; k++) {
        if (!cnt[k]) continue;
        const double c = cnt[k] * 1e3;
        printf("  %-17s wake %5.2f  inputs %5.2f  work %5.2f  share %5.2f  started %5.2f before the previous end\n",
               kn[k], acc[k][0] / c, acc[k][1] / c, acc[k][2] / c, acc[k][3] / c, acc[k][4] / c);
        tot += acc[k][3] / c;
    }
    printf("  layer (sum of shares): %.2f us\n", tot);
    free(tr);
}

/* Sets each KEY=VALUE of a space-separated list (other words, e.g. SAMPLE, are the caller's) */
static void set_switches(const char *list) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (eq) *eq = 0, setenv(tok, eq + 1, 1);
    }
}

/* Decode of one model through the backend's forward, variant by variant in one process (the switches are
 * read at every forward): old = q4_mma.cu GEMV + unfused sequence; then the new GEMV unfused, fused
 * without PDL, fused with PDL (the default). Batch 1 at ctx 512 (64 steps, median), and batch 4 / 16. */
static void decode_variants(const char *spec, double copy) {
    tl_error e = {{0}};
    tl_model *m = bench_model(spec);
    bctx c = {.m = m, .bs = 16};
    c.be = tl_backend_cuda_new(0.92f, &e);
    if (!c.be || c.be->prepare(c.be, m, &e)) fprintf(stderr, "cuda: %s\n", e.msg), exit(2);
    const tl_config *cf = &m->cfg;
    const size_t wbytes = stream_bytes(m, NULL);
    const int ctx_dec = 512, per = (ctx_dec + 64) / c.bs + 1;
    if (c.be->kv_alloc(c.be, &c.kv, cf, c.bs, 16 * per, TL_BF16, &e)) fprintf(stderr, "%s\n", e.msg), exit(2);
    c.logits = tl_malloc((size_t)16 * cf->n_vocab * 4);
    bctx *bc = &c;
    const int prof = getenv("TL_BENCH_PROFILE") != NULL; /* under ncu: a few steps of the default only */
    step(bc, prof ? 1 : 16, ctx_dec, 0, per); /* the 512-token histories of the 16 sequences (s owns blocks s*per..) */
    /* each variant: a name and the switches it sets (all others unset; read by the backend at every forward).
     * Later rows repeat the default (drift of the card). The TL_CUDA_DBG_SKIP / TL_CUDA_GEMV_PROBE rows leave
     * parts of the step out or run GEMV probes (wrong results): the step's time without them says what
     * they cost inside the graph. */
    static const char *const keys[] = {"TL_CUDA_GEMV", "TL_CUDA_FUSE", "TL_CUDA_PDL", "TL_CUDA_SPLIT_KEYS",
                                       "TL_CUDA_ATT_MERGE", "TL_CUDA_DBG_SKIP", "TL_CUDA_GEMV_PROBE", "TL_CUDA_RING",
                                       "TL_CUDA_ATT_FUSE", "TL_CUDA_GU_PAIR", "TL_CUDA_QKV_ROOM", "TL_CUDA_GEMV_DBG",
                                       "TL_CUDA_SAMPLE_ONEBLOCK", "TL_CUDA_SAMPLE_GRAPH", "TL_BENCH_TOP_P",
                                       "TL_BENCH_TEMP", "TL_CUDA_SAMPLE_HEAD", "TL_BENCH_TOP_K",
                                       "TL_CUDA_SAMPLE_CHUNKS"};
    const int nkeys = (int)(sizeof keys / sizeof keys[0]);
    static const char *const var[][2] = {
        {"default (gate/up pairs, q/k/v room, 128 keys)", ""},
        {"fp16 prologue in one pass <= 20480 columns (bc2860e)", "TL_CUDA_GEMV_DBG=32"},
        {"ring <= 2", "TL_CUDA_RING=2"},
        {"ring <= 3", "TL_CUDA_RING=3"},
        {"ring <= 4", "TL_CUDA_RING=4"},
        {"ring <= 5", "TL_CUDA_RING=5"},
        {"ring <= 8", "TL_CUDA_RING=8"},
        {"without q/k/v room", "TL_CUDA_QKV_ROOM=0"},
        {"without pairs and room; 64 keys (as d7dc005)", "TL_CUDA_GU_PAIR=0 TL_CUDA_QKV_ROOM=0 TL_CUDA_SPLIT_KEYS=64"},
        {"old (q4_mma GEMV, unfused)", "TL_CUDA_GEMV=mma TL_CUDA_FUSE=0 TL_CUDA_PDL=0"},
        {"deep ring, unfused attn (as session 3)", "TL_CUDA_RING=0 TL_CUDA_ATT_FUSE=nopdl TL_CUDA_SPLIT_KEYS=128"},
        {"ring as deep as fits", "TL_CUDA_RING=0"},
        {"no PDL", "TL_CUDA_PDL=0"},
        {"attn: unfused, PDL, 64 keys", "TL_CUDA_ATT_FUSE=0 TL_CUDA_SPLIT_KEYS=64"},
        {"attn: 64 keys", "TL_CUDA_SPLIT_KEYS=64"},
        {"attn: 256 keys", "TL_CUDA_SPLIT_KEYS=256"},
        {"attn: 64 keys, without q/k/v room", "TL_CUDA_SPLIT_KEYS=64 TL_CUDA_QKV_ROOM=0"},
        {"attn: merged by a cluster", "TL_CUDA_ATT_MERGE=cluster"},
        {"attn: merged by the last slice", "TL_CUDA_ATT_MERGE=last"},
        {"attn: merged by a cluster, without room", "TL_CUDA_ATT_MERGE=cluster TL_CUDA_QKV_ROOM=0"},
        {"attn: merged by a cluster, 256 keys", "TL_CUDA_ATT_MERGE=cluster TL_CUDA_SPLIT_KEYS=256"},
        {"default again", ""},
        {"skip: q/k/v GEMV", "TL_CUDA_DBG_SKIP=1"},
        {"skip: RoPE + attention", "TL_CUDA_DBG_SKIP=2"},
        {"skip: o GEMV", "TL_CUDA_DBG_SKIP=4"},
        {"skip: gate/up GEMV", "TL_CUDA_DBG_SKIP=8"},
        {"skip: down GEMV", "TL_CUDA_DBG_SKIP=16"},
        {"skip: all layers", "TL_CUDA_DBG_SKIP=31"},
        {"skip: all layers, lm_head (host + embedding)", "TL_CUDA_DBG_SKIP=63"},
        {"skip: all layers, lm_head; sampled", "TL_CUDA_DBG_SKIP=63 SAMPLE"},
        {"probe: GEMV ring alone", "TL_CUDA_GEMV_PROBE=ring"},
        {"probe: GEMV math alone", "TL_CUDA_GEMV_PROBE=math"},
        {"probe: every GEMV weight L2-resident", "TL_CUDA_GEMV_DBG=1024"},
        {"default again", ""},
        {"without q/k/v room, again", "TL_CUDA_QKV_ROOM=0"},
        {"as d7dc005, again", "TL_CUDA_GU_PAIR=0 TL_CUDA_QKV_ROOM=0 TL_CUDA_SPLIT_KEYS=64"},
        {"fp16 prologue <= 20480 columns, again", "TL_CUDA_GEMV_DBG=32"},
        {"ring <= 2, again", "TL_CUDA_RING=2"},
        {"ring <= 3, again", "TL_CUDA_RING=3"},
        {"ring <= 4, again", "TL_CUDA_RING=4"},
        {"ring <= 5, again", "TL_CUDA_RING=5"},
        {"attn: merged by a cluster, again", "TL_CUDA_ATT_MERGE=cluster"},
        {"attn: merged by the last slice, again", "TL_CUDA_ATT_MERGE=last"},
        {"default, greedy sampled on the GPU", "SAMPLE"},
        {"deep ring, unfused attn, again", "TL_CUDA_RING=0 TL_CUDA_ATT_FUSE=nopdl TL_CUDA_SPLIT_KEYS=128"},
        {"default again", ""},
        {"default, greedy sampled on the GPU, again", "SAMPLE"},
        {"default, pipelined as the engine (launch / collect)", "PIPE"},
    };
    /* TL_BENCH_SET=exp: a short list for the experiment at hand (one device call) */
    static const char *const exp_var[][2] = {
        {"default (v5, x first 2, ring <= 5)", ""},
        {"default, pipelined as the engine (launch / collect)", "PIPE"},
        {"pipelined, temp 0.02 + top-p 0.8 (peaked rows)", "TL_BENCH_TOP_P=0.8 TL_BENCH_TEMP=0.02 PIPE"},
        {"  the same, one block a sampled row", "TL_BENCH_TOP_P=0.8 TL_BENCH_TEMP=0.02 TL_CUDA_SAMPLE_CHUNKS=0 PIPE"},
        {"pipelined, temp 0.005 + top-p 0.8", "TL_BENCH_TOP_P=0.8 TL_BENCH_TEMP=0.005 PIPE"},
        {"  the same, one block a sampled row", "TL_BENCH_TOP_P=0.8 TL_BENCH_TEMP=0.005 TL_CUDA_SAMPLE_CHUNKS=0 PIPE"},
        {"pipelined, temp 0.7 + top-k 40", "TL_BENCH_TOP_P=1 TL_BENCH_TOP_K=40 PIPE"},
        {"  the same, one block a sampled row", "TL_BENCH_TOP_P=1 TL_BENCH_TOP_K=40 TL_CUDA_SAMPLE_CHUNKS=0 PIPE"},
        {"pipelined, temp 0.7 alone (id order)", "TL_BENCH_TOP_P=1 PIPE"},
        {"  the same, one block a sampled row", "TL_BENCH_TOP_P=1 TL_CUDA_SAMPLE_CHUNKS=0 PIPE"},
        {"pipelined, temp 0.7 + top-p 0.8 (flat: whole-row search)", "TL_BENCH_TOP_P=0.8 PIPE"},
        {"  the same, one block a sampled row", "TL_BENCH_TOP_P=0.8 TL_CUDA_SAMPLE_CHUNKS=0 PIPE"},
        {"default again", ""},
        {"default, pipelined, again", "PIPE"},
    };
    const char *set = getenv("TL_BENCH_SET");
    const int use_exp = set && !strcmp(set, "exp");
    const char *const(*vars)[2] = use_exp ? exp_var : var;
    const int nvar = use_exp ? (int)(sizeof exp_var / sizeof exp_var[0]) : (int)(sizeof var / sizeof var[0]);
    size_t kvb = (size_t)(ctx_dec + 32) * cf->n_layer * cf->n_head_kv * cf->head_dim * 2 * 2;
    for (int vi = 0; vi < (prof ? 1 : nvar); vi++) {
        for (int k = 0; k < nkeys && !prof; k++) unsetenv(keys[k]); /* (under ncu: the environment's switches) */
        bc->sample = strstr(vars[vi][1], "SAMPLE") != NULL;
        set_switches(vars[vi][1]);
        double t[64];
        const int nstep = prof ? 2 : 64;
        double tm;
        if (strstr(vars[vi][1], "PIPE")) { /* the engine's pipelined steps: wall time a step over 64 */
            if (!bc->be->launch) printf("decode batch 1: the backend has no launch / collect\n");
            pipe_steps(bc, 3, ctx_dec, per, NULL);
            tm = bc->be->launch ? pipe_steps(bc, 64, ctx_dec, per, NULL) : 1;
        } else {
            for (int i = -(prof ? 0 : 3); i < nstep; i++) {
                double s = step(bc, 1, 1, ctx_dec + TL_MAX(i, 0), per);
                if (i >= 0) t[i] = s;
            }
            tm = median(t, nstep);
        }
        double bw = (wbytes + kvb) / tm / 1e12;
        printf("decode batch 1 (%s, ctx %d) %-42s: %.3f ms/token, %.1f tok/s, %.2f TB/s = %.1f%% of copy %.2f TB/s\n",
               spec, ctx_dec, vars[vi][0], tm * 1e3, 1 / tm, bw, 100 * bw / copy, copy);
        printf("RESULT decode_b1_v%d_ms %.4f\n", vi, tm * 1e3);
        if (!prof && !vars[vi][1][0]) { /* the default: its graph replayed back to back (no host between steps) */
            const double rm = tl_cuda_graph_replay_ms(bc->be, 64), rbw = (wbytes + kvb) / (rm * 1e-3) / 1e12;
            if (rm <= 0) printf("decode batch 1: no captured graph to replay (TL_CUDA_GRAPH=0?)\n");
            else printf("decode batch 1 (%s, ctx %d) %-42s: %.3f ms/token, %.2f TB/s = %.1f%% of copy (the step's GPU time)\n",
                   spec, ctx_dec, "  its graph replayed back to back", rm, rbw, 100 * rbw / copy);
        }
        if (!prof && (vi == 0 || vi == 2))
            for (int n = 4; n <= 16; n *= 4) {
                double tb[8];
                for (int i = 0; i < 8; i++) tb[i] = step(bc, n, 1, ctx_dec + i, per);
                double tbm = median(tb, 8);
                printf("decode batch %2d (ctx %d) %-42s: %.3f ms/step, %.0f tok/s\n", n, ctx_dec, vars[vi][0], tbm * 1e3,
                       n / tbm);
            }
    }
    for (int k = 0; k < nkeys; k++) unsetenv(keys[k]);
    bc->sample = 0;
    trace_report(spec, bc, ctx_dec, per);
    const char *t2 = getenv("TL_BENCH_TRACE2"); /* "KEY=VALUE ...": a second trace with those switches set */
    if (t2) {
        set_switches(t2);
        printf("trace with %s:\n", t2);
        trace_report(spec, bc, ctx_dec, per);
        for (int k = 0; k < nkeys; k++) unsetenv(keys[k]);
    }
    c.be->kv_free(c.be, &c.kv);
    c.be->free(c.be);
    free(c.logits);
    tl_model_free(m);
}

static void model_bench(const char *spec, double copy, double mm) {
    tl_error e = {{0}};
    tl_model *m = bench_model(spec);
    bctx c = {.m = m, .bs = 16};
    c.be = tl_backend_cuda_new(0.92f, &e);
    if (!c.be || c.be->prepare(c.be, m, &e)) fprintf(stderr, "cuda: %s\n", e.msg), exit(2);
    const tl_config *cf = &m->cfg;
    double mat_params;
    const size_t wbytes = stream_bytes(m, &mat_params);
    size_t budget = c.be->kv_default_budget(c.be, m);
    int nblk = tl_kv_blocks_for_budget(cf, c.bs, TL_BF16, budget);
    int max_seq = 256, ctx_dec = 512;
    int nbs = (4096 + 64) / c.bs + 1; /* blocks per sequence: enough for the 4096 prefill */
    if (nblk > max_seq * ((ctx_dec + 64) / c.bs + 1)) nblk = TL_MAX(max_seq * ((ctx_dec + 64) / c.bs + 1), nbs);
    if (c.be->kv_alloc(c.be, &c.kv, cf, c.bs, nblk, TL_BF16, &e)) fprintf(stderr, "%s\n", e.msg), exit(2);
    c.logits = tl_malloc((size_t)max_seq * cf->n_vocab * 4);
    printf("%s int4: %.2f GB streamed per decode token (weights), %.2f G matmul params\n", spec, wbytes / 1e9, mat_params / 1e9);

    /* TL_BENCH_ONLY=prefill: the prefill rows alone (a short device run) */
    const char *only = getenv("TL_BENCH_ONLY");
    const int decode = !(only && !strcmp(only, "prefill"));
    /* decode batch 1 after a 512-token prompt */
    step(&c, 1, ctx_dec, 0, nbs);
    double t[64];
    for (int i = -3; i < 64 && decode; i++) {
        double s = step(&c, 1, 1, ctx_dec + TL_MAX(i, 0), nbs);
        if (i >= 0) t[i] = s;
    }
    double tm = decode ? median(t, 64) : 1;
    size_t kvb = (size_t)(ctx_dec + 32) * cf->n_layer * cf->n_head_kv * cf->head_dim * 2 * 2;
    double bw = (wbytes + kvb) / tm / 1e12;
    if (decode) {
        printf("decode batch 1 (%s, ctx %d), logits copied back: %.2f ms/token, %.1f tok/s, %.2f TB/s = %.0f%% of copy %.2f TB/s (target 75%%)\n",
               spec, ctx_dec, tm * 1e3, 1 / tm, bw, 100 * bw / copy, copy);
        printf("RESULT decode_b1_tok_s %.1f\nRESULT decode_b1_pct_copy %.1f\n", 1 / tm, 100 * bw / copy);
        c.sample = 1; /* the engine's path: greedy on the GPU, the token comes back */
        for (int i = -3; i < 64; i++) {
            double s = step(&c, 1, 1, ctx_dec + 64 + TL_MAX(i, 0), nbs);
            if (i >= 0) t[i] = s;
        }
        c.sample = 0;
        const double ts = median(t, 64), bws = (wbytes + kvb) / ts / 1e12;
        printf("decode batch 1 (%s, ctx %d), greedy sampled on the GPU: %.2f ms/token, %.1f tok/s, %.2f TB/s = %.0f%% of copy (target 75%%)\n",
               spec, ctx_dec, ts * 1e3, 1 / ts, bws, 100 * bws / copy);
        printf("RESULT decode_b1_sampled_tok_s %.1f\nRESULT decode_b1_sampled_pct_copy %.1f\n", 1 / ts, 100 * bws / copy);
        if (c.be->launch) { /* the engine's path: steps pipelined (launch / collect), the token fed back on the device */
            pipe_steps(&c, 3, ctx_dec + 160, nbs, NULL);
            const double tp = pipe_steps(&c, 64, ctx_dec + 160, nbs, NULL), bwp = (wbytes + kvb) / tp / 1e12;
            printf("decode batch 1 (%s, ctx %d), pipelined as the engine: %.2f ms/token, %.1f tok/s, %.2f TB/s = %.0f%% of copy (target 75%%)\n",
                   spec, ctx_dec, tp * 1e3, 1 / tp, bwp, 100 * bwp / copy);
            printf("RESULT decode_b1_pipelined_tok_s %.1f\nRESULT decode_b1_pipelined_pct_copy %.1f\n", 1 / tp, 100 * bwp / copy);
        }
    }

    /* prefill of one L-token prompt (fresh positions each time), L = 1k, 2k, 4k, three ways: as now (tensor-core
     * prefill attention, bf16 activations into cuBLAS), with fp32 activations (TL_CUDA_PREFILL_BF16=0), and
     * with attn.cu's kernel for every row too (TL_CUDA_ATTN=old: the forward before either). FLOPs: 2 * matmul
     * params (no lm_head: one logit row) * L + causal attention 4 * layers * heads * head_dim * L(L+1)/2 */
    double tpm = 0, fl = 0;
    for (int L = 1024; L <= 4096; L *= 2) {
        double af = 4.0 * cf->n_layer * cf->n_head * cf->head_dim * ((double)L * (L + 1) / 2);
        double f = 2.0 * L * (mat_params - (double)m->w.lm_head.rows * m->w.lm_head.cols) + af, tv[3];
        for (int v = 0; v < 3; v++) {
            if (v >= 1) setenv("TL_CUDA_PREFILL_BF16", "0", 1);
            if (v == 2) setenv("TL_CUDA_ATTN", "old", 1);
            double tq[3];
            step(&c, 1, L, 0, nbs); /* warm (first call at this size grows the arena) */
            for (int i = 0; i < 3; i++) tq[i] = step(&c, 1, L, 0, nbs);
            unsetenv("TL_CUDA_ATTN");
            unsetenv("TL_CUDA_PREFILL_BF16");
            tv[v] = median(tq, 3);
        }
        printf("prefill %d tokens (%s): %.1f ms, %.0f tok/s, %.0f TFLOP/s = %.0f%% of cuBLAS %.0f TFLOP/s (target 60%%); "
               "fp32 activations: %.1f ms = %.0f%%; attn.cu attention + fp32: %.1f ms = %.0f%%\n",
               L, spec, tv[0] * 1e3, L / tv[0], f / tv[0] / 1e12, 100 * f / tv[0] / 1e12 / mm, mm, tv[1] * 1e3,
               100 * f / tv[1] / 1e12 / mm, tv[2] * 1e3, 100 * f / tv[2] / 1e12 / mm);
        if (L == 4096) tpm = tv[0], fl = f;
    }
    printf("RESULT prefill4096_ms %.1f\nRESULT prefill4096_pct_mm %.1f\n", tpm * 1e3, 100 * fl / tpm / 1e12 / mm);

    /* batched decode: n_seq sequences at context ctx_dec each (one forward = n_seq new tokens) */
    const int ns[] = {4, 16, 64, 256};
    for (int k = 0; k < 4 && decode; k++) {
        int n = ns[k];
        int per = (ctx_dec + 64) / c.bs + 1;
        if ((size_t)n * per > (size_t)c.kv.n_blocks) break;
        for (int s0 = 0; s0 < 1; s0++) step(&c, n, 1, ctx_dec, per); /* warm */
        double tb[8];
        for (int i = 0; i < 8; i++) tb[i] = step(&c, n, 1, ctx_dec + 1 + i, per);
        double tbm = median(tb, 8);
        printf("decode batch %3d (ctx %d): %.2f ms/step, %.0f tok/s\n", n, ctx_dec, tbm * 1e3, n / tbm);
        printf("RESULT decode_b%d_tok_s %.0f\n", n, n / tbm);
    }
    c.be->kv_free(c.be, &c.kv);
    c.be->free(c.be);
    free(c.logits);
    tl_model_free(m);
}

/* Offline throughput through the continuous-batching engine (what `tinyllm bench` would run): n_req
 * requests, prompt and output lengths uniform in [lo, hi], random token ids, ignore_eos. */
static int count_cb(const tl_token_event *ev, void *user) {
    if (ev->token >= 0) (*(int64_t *)user)++;
    return 0;
}
static void engine_bench(const char *spec, int n_req, int lo, int hi) {
    tl_error e = {{0}};
    tl_load_opts o = {.quant_bits = 4, .group_size = 64, .quiet = true};
    tl_model *m = tl_model_load(spec, &o, &e);
    if (!m) fprintf(stderr, "%s: %s\n", spec, e.msg), exit(2);
    tl_backend *be = tl_backend_cuda_new(0.9f, &e);
    if (!be || be->prepare(be, m, &e)) fprintf(stderr, "cuda: %s\n", e.msg), exit(2);
    tl_engine_opts eo;
    tl_engine_opts_default(&eo);
    eo.kv_dtype = TL_BF16;
    /* 512 running sequences: 7,905 vs 6,786 output tok/s at 256 (H200, bench/RESULTS.md); peak KV 23k blocks */
    eo.max_seqs = getenv("TL_ENGINE_MAX_SEQS") ? atoi(getenv("TL_ENGINE_MAX_SEQS")) : 512;
    eo.max_batch_tokens = getenv("TL_ENGINE_BATCH_TOKENS") ? atoi(getenv("TL_ENGINE_BATCH_TOKENS")) : 4096;
    printf("engine: max_seqs %d, max_batch_tokens %d, sampling on the %s, bf16 weight copies %s\n", eo.max_seqs,
           eo.max_batch_tokens, getenv("TL_ENGINE_HOST_SAMPLE") && !strcmp(getenv("TL_ENGINE_HOST_SAMPLE"), "1") ? "host" : "GPU",
           getenv("TL_CUDA_BF16W") && !strcmp(getenv("TL_CUDA_BF16W"), "0") ? "off" : "auto");
    tl_engine *en = tl_engine_new(m, be, &eo, &e);
    if (!en) fprintf(stderr, "engine: %s\n", e.msg), exit(2);
    unsigned long long sd = 2024;
    int64_t generated = 0, want = 0, prompt_toks = 0;
    int32_t *prompt = tl_malloc((size_t)hi * 4);
    double t0 = tl_now();
    for (int r = 0; r < n_req; r++) {
        int np = lo + (int)(tl_t_rng(&sd) % (unsigned)(hi - lo + 1)), ng = lo + (int)(tl_t_rng(&sd) % (unsigned)(hi - lo + 1));
        for (int i = 0; i < np; i++) prompt[i] = (int32_t)(tl_t_rng(&sd) % 150000);
        tl_req_params p = {.max_tokens = ng, .ignore_eos = true};
        tl_sampling_default(&p.s);
        if (tl_engine_add(en, prompt, np, &p, count_cb, &generated, &e) < 0) fprintf(stderr, "add: %s\n", e.msg), exit(2);
        want += ng, prompt_toks += np;
    }
    double last = t0, limit = getenv("TL_ENGINE_SECONDS") ? atof(getenv("TL_ENGINE_SECONDS")) : 200;
    while (tl_engine_step(en) > 0) { /* progress every 10 s; stop at the time limit (partial numbers) */
        double now = tl_now();
        if (now - last > 10) {
            printf("  engine: %.0f s, %lld tokens generated (%.0f tok/s so far)\n", now - t0, (long long)generated,
                   generated / (now - t0));
            last = now;
        }
        if (now - t0 > limit) {
            printf("  engine: stopped at the %.0f s limit, %lld of %lld tokens generated\n", limit, (long long)generated,
                   (long long)want);
            break;
        }
    }
    double dt = tl_now() - t0;
    tl_engine_stats st;
    tl_engine_stats_get(en, &st);
    printf("engine %s int4: %d requests, lengths %d-%d: %lld prompt + %lld generated tokens (wanted %lld) in %.1f s: "
           "%.0f output tok/s, %.0f total tok/s; %lld steps, %lld preempted (target 10000 output tok/s on H100)\n",
           spec, n_req, lo, hi, (long long)prompt_toks, (long long)generated, (long long)want, dt, generated / dt,
           (generated + prompt_toks) / dt, (long long)st.steps, (long long)st.n_preempted);
    printf("engine step (host wall, per step): schedule %.2f ms, batch %.2f ms, forward %.2f ms (incl. GPU), "
           "sample + events %.2f ms\n",
           1e3 * st.t_schedule / st.steps, 1e3 * st.t_batch / st.steps, 1e3 * st.t_forward / st.steps,
           1e3 * st.t_post / st.steps);
    printf("RESULT engine_out_tok_s %.0f\n", generated / dt);
    free(prompt);
    tl_engine_free(en);
    be->free(be);
    tl_model_free(m);
}

int main(int argc, char **argv) {
    (void)tl_t_pass, (void)tl_t_fail;
    const char *spec = argc > 1 ? argv[1] : "dummy:qwen2-7b";
    const char *commit = argc > 2 ? argv[2] : "?";
    struct cudaDeviceProp p;
    CU(cudaGetDeviceProperties(&p, 0));
    size_t fr, tot;
    CU(cudaMemGetInfo(&fr, &tot));
    printf("device: %s, %d SMs, %.1f GiB; commit %s; host may be shared (timings of the GPU only)\n", p.name,
           p.multiProcessorCount, tot / 1073741824.0, commit);
    if (getenv("TL_BENCH_PROFILE")) { /* under ncu: the decode steps alone (see scripts/gpu.sh decode) */
        decode_variants(spec, 4.26);
        return 0;
    }
    double copy = copy_bw(), mm = gemm_rate();
    printf("copy bandwidth (D2D, read+write): %.2f TB/s\ncuBLAS bf16 8192^3: %.0f TFLOP/s\n", copy, mm);
    printf("RESULT copy_TBps %.3f\nRESULT cublas_bf16_TFLOPs %.1f\n", copy, mm);
    const char *only = getenv("TL_BENCH_ONLY");
    if (argc > 3 && !strcmp(argv[3], "decode")) { /* GEMV per shape, non-GEMV kernels, decode variants */
        if (strstr(spec, "7b")) {
            layer_bench(copy);
            small_bench();
        }
        decode_variants(spec, copy);
        return 0;
    }
    if (argc > 3 && !strcmp(argv[3], "gemm")) { /* INT4 GEMM alone (7B shapes), then batched decode steps */
        if (strstr(spec, "-7b")) gemm_bench(copy, mm);
        gemm_decode(spec, argc > 4 ? atoi(argv[4]) : 256, strstr(spec, "72b") ? 1 : 2);
        return 0;
    }
    if (argc > 3 && !strcmp(argv[3], "engine")) { /* the engine alone (the GEMV table is in `bench`) */
        engine_bench(spec, argc > 4 ? atoi(argv[4]) : 512, 128, 1024);
        return 0;
    }
    if ((!strcmp(spec, "gemv") || strstr(spec, "7b")) && !(only && !strcmp(only, "prefill"))) gemv_bench(copy);
    if (strcmp(spec, "gemv")) model_bench(spec, copy, mm);
    return 0;
}

/* test_cuda_sample.c (GPU only): the device sampler (backend/cuda/sample.cu) against the CPU sampler
 * (engine/sampler.c) on random logits with the same uniform draws, and the engine with device sampling
 * against the CPU engine and against host sampling on the same GPU logits.
 *   - greedy: exact; logprob of the chosen token within 1e-4 of the fp64 log_softmax
 *   - sampled (temperature, top-k, top-p, min-p, mixed per row): the same token except at a float boundary
 *     (expf may differ by an ulp, fp64 sums are added in another order): at most 1 mismatch in 500 rows
 *   - rows that need more than the candidate head come back as -1 exactly where cu_sample.h says they may
 *   - two launches give identical bits (no float atomics) */
#include <cuda_runtime_api.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cuda/cu_sample.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/session.h"
#include "gpu/cu_check.h"
#include "tl_test.h"

static unsigned long long seed = 7;

/* row kinds: logits shape (0 random*amp, 1 few distinct values: ties, 2 flat) and parameters */
typedef struct {
    float t;
    int k;
    float p, minp;
    int shape;
    float amp;
} rowcase;
static const rowcase cases[] = {
    {0, 0, 1, 0, 0, 8},        {0, 0, 1, 0, 1, 8},       {1.0f, 0, 1, 0, 0, 4},    {0.7f, 1, 1, 0, 0, 4},
    {0.8f, 40, 1, 0, 0, 6},    {1.0f, 4096, 1, 0, 0, 3}, {1.0f, 0, 0.9f, 0, 0, 8}, {1.0f, 0, 1e-6f, 0, 0, 4},
    {1.0f, 0, 1, 0.1f, 0, 4},  {0.9f, 50, 0.8f, 0.05f, 0, 6}, {1e-4f, 0, 1, 0, 0, 4}, {100.f, 0, 1, 0, 0, 4},
    {100.f, 20, 0.5f, 0, 0, 4}, {1.0f, 3, 1, 0, 1, 8},    {1.0f, 0, 0.95f, 0, 1, 8}, {1.0f, 0, 0.999f, 0, 2, 0.01f},
    {1.0f, 5000, 1, 0, 0, 3},  {0.5f, 0, 0.7f, 0.2f, 0, 10}, {0, 0, 1, 0, 2, 0.f},
};
#define NCASE ((int)(sizeof cases / sizeof *cases))

static void fill_row(float *l, int V, const rowcase *c) {
    for (int i = 0; i < V; i++) {
        float x = tl_t_randf(&seed);
        if (c->shape == 0) l[i] = x * c->amp + (tl_t_rng(&seed) % 997 == 0 ? 6.f : 0.f);
        else if (c->shape == 1) l[i] = floorf(x * 4.f) * c->amp * 0.25f; /* 8 distinct values: many ties */
        else l[i] = x * c->amp;                                           /* nearly flat */
    }
}

static void test_kernel(int V, int R) {
    float *lg = tl_malloc((size_t)R * V * 4);
    tl_cu_samp *p = tl_calloc((size_t)R, sizeof *p);
    uint64_t *rng0 = tl_calloc((size_t)R, sizeof *rng0);
    for (int r = 0; r < R; r++) {
        const rowcase *c = &cases[r % NCASE];
        fill_row(lg + (size_t)r * V, V, c);
        rng0[r] = tl_t_rng(&seed);
        uint64_t st = rng0[r];
        p[r] = (tl_cu_samp){.temperature = c->t, .top_k = c->k, .top_p = c->p, .min_p = c->minp,
                            .u = c->t > 0 ? tl_rng_uniform(&st) : 0, .skip = r % 53 == 52};
    }
    float *dl;
    tl_cu_samp *dp;
    tl_cu_samp_out *dout, *out = tl_malloc((size_t)R * sizeof *out), *out2 = tl_malloc((size_t)R * sizeof *out2);
    CU(cudaMalloc((void **)&dl, (size_t)R * V * 4));
    CU(cudaMalloc((void **)&dp, (size_t)R * sizeof *dp));
    CU(cudaMalloc((void **)&dout, (size_t)R * sizeof *dout));
    CU(cudaMemcpy(dl, lg, (size_t)R * V * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dp, p, (size_t)R * sizeof *dp, cudaMemcpyHostToDevice));
    tl_error e = {{0}};
    for (int pass = 0; pass < 2; pass++) {
        CU(cudaMemset(dout, 0xff, (size_t)R * sizeof *dout));
        CHECK(tl_cu_sample(dl, R, V, dp, dout, 0, &e) == 0, "%s", e.msg);
        CU(cudaDeviceSynchronize());
        CU(cudaMemcpy(pass ? out2 : out, dout, (size_t)R * sizeof *dout, cudaMemcpyDeviceToHost));
    }
    CHECK(!memcmp(out, out2, (size_t)R * sizeof *out), "V %d: two launches differ", V);
    tl_sampler sp;
    tl_sampler_init(&sp, V);
    int greedy_bad = 0, mism = 0, lp_bad = 0, defer_bad = 0, n_def = 0, n_samp = 0, skip_bad = 0;
    double worst_lp = 0;
    for (int r = 0; r < R; r++) {
        const float *l = lg + (size_t)r * V;
        const rowcase *c = &cases[r % NCASE];
        if (p[r].skip) {
            skip_bad += out[r].token != -1;
            continue;
        }
        if (out[r].token < 0) {
            n_def++;
            defer_bad += !tl_cu_sample_may_defer(&p[r], V);
            continue;
        }
        if (out[r].token >= V) {
            greedy_bad++;
            continue;
        }
        tl_sampling s;
        tl_sampling_default(&s);
        s.temperature = c->t, s.top_k = c->k, s.top_p = c->p, s.min_p = c->minp;
        uint64_t st = rng0[r];
        int32_t ct = tl_sampler_sample(&sp, &s, l, NULL, 0, 0, &st, NULL);
        if (c->t > 0) {
            n_samp++;
            if (ct != out[r].token) {
                mism++;
                printf("  V %d row %d (case %d): cpu %d, gpu %d (p %.9g vs %.9g)\n", V, r, r % NCASE, ct,
                       out[r].token, expf((l[ct] - l[out[r].token]) / c->t), 1.0);
            }
        } else greedy_bad += ct != out[r].token;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, l[i]);
        for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
        double ref = l[out[r].token] - (mx + log(sum)), d = fabs(ref - out[r].logprob);
        worst_lp = fmax(worst_lp, d);
        lp_bad += !(d <= 1e-4 + 1e-6 * fabs(ref));
    }
    printf("  sample V %6d: %d rows, %d sampled, %d deferred to the host, %d sampled mismatches, logprob err %.2e\n",
           V, R, n_samp, n_def, mism, worst_lp);
    CHECK(greedy_bad == 0, "V %d: %d greedy rows differ", V, greedy_bad);
    CHECK(skip_bad == 0, "V %d: skipped rows not -1", V);
    CHECK(defer_bad == 0, "V %d: %d rows deferred that may not be", V, defer_bad);
    CHECK(mism * 500 <= n_samp || mism <= 1, "V %d: %d of %d sampled rows differ", V, mism, n_samp);
    CHECK(lp_bad == 0, "V %d: %d logprobs off (worst %.2e)", V, lp_bad, worst_lp);
    if (V > TL_CU_SAMPLE_CAP) CHECK(n_def > 0, "V %d: the flat top-p row should be deferred", V);
    tl_sampler_free(&sp);
    cudaFree(dl), cudaFree(dp), cudaFree(dout);
    free(lg), free(p), free(rng0), free(out), free(out2);
}

/* ---- engine: device sampling vs host sampling (same GPU logits) and vs the CPU engine ---- */
typedef struct {
    int32_t tok[64];
    float lp[64];
    int n;
} collected;
static int collect_cb(const tl_token_event *ev, void *user) {
    collected *c = user;
    if (ev->token >= 0 && c->n < 64) c->lp[c->n] = ev->logprob, c->tok[c->n++] = ev->token;
    return 0;
}

#define NREQ 6
static void run_engine(tl_model *m, tl_backend *be, bool host_sample, const int32_t *toks, int nt, collected *out) {
    setenv("TL_ENGINE_HOST_SAMPLE", host_sample ? "1" : "0", 1);
    tl_error e = {{0}};
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_seqs = 4; /* 6 requests: two wait, and rows of both kinds share steps */
    o.kv_mem = (size_t)64 << 20;
    tl_engine *en = tl_engine_new(m, be, &o, &e);
    CHECK(en != NULL, "%s", e.msg);
    if (!en) return;
    memset(out, 0, NREQ * sizeof *out);
    for (int r = 0; r < NREQ; r++) {
        tl_req_params p = {.max_tokens = 10 + r};
        tl_sampling_default(&p.s);
        if (r == 1) p.s.temperature = 0.8f, p.s.top_k = 20, p.s.seed = 7;
        if (r == 2) p.s.temperature = 1.0f, p.s.top_p = 0.9f, p.s.min_p = 0.02f, p.s.seed = 9;
        if (r == 3) p.s.repetition_penalty = 1.3f;                 /* host row */
        if (r == 4) p.s.n_logprobs = 3, p.s.temperature = 0.7f, p.s.seed = 3; /* host row */
        p.ignore_eos = true;
        int np = 5 + 3 * r < nt ? 5 + 3 * r : nt;
        CHECK(tl_engine_add(en, toks + r % 3, np - r % 3, &p, collect_cb, &out[r], &e) > 0, "%s", e.msg);
    }
    tl_engine_run_until_idle(en);
    tl_engine_free(en);
    unsetenv("TL_ENGINE_HOST_SAMPLE");
}

static int rank_of(const float *l, int V, int tok) {
    int r = 0;
    for (int i = 0; i < V; i++) r += l[i] > l[tok];
    return r;
}

static void test_engine(const char *dir) {
    tl_error e = {{0}};
    tl_load_opts lo = {.quiet = true, .quant_bits = 4};
    tl_model *m = tl_model_load(dir, &lo, &e);
    CHECK(m != NULL, "%s: %s", dir, e.msg);
    if (!m) return;
    tl_backend *cpu = tl_backend_cpu_new(2), *gpu = tl_backend_cuda_new(0.5f, &e);
    CHECK(gpu != NULL && gpu->forward_sample != NULL, "%s", e.msg);
    int32_t toks[32];
    unsigned long long s2 = 11;
    for (int i = 0; i < 32; i++) toks[i] = (int32_t)(tl_t_rng(&s2) % (unsigned)m->cfg.n_vocab);
    collected dev[NREQ], host[NREQ], ref[NREQ];
    run_engine(m, gpu, false, toks, 32, dev);
    run_engine(m, gpu, true, toks, 32, host);
    run_engine(m, cpu, false, toks, 32, ref);
    for (int r = 0; r < NREQ; r++) {
        CHECK(dev[r].n == 10 + r && host[r].n == 10 + r, "req %d: %d / %d tokens", r, dev[r].n, host[r].n);
        int same = dev[r].n == host[r].n && !memcmp(dev[r].tok, host[r].tok, (size_t)dev[r].n * 4);
        CHECK(same, "%s req %d: device sampling differs from host sampling on the same GPU logits", dir, r);
        if (r == 0) /* greedy, device: logprobs are reported and are log-probabilities */
            for (int i = 0; i < dev[r].n; i++) CHECK(dev[r].lp[i] <= 1e-6f && dev[r].lp[i] > -50.f, "lp %g", dev[r].lp[i]);
        if (r == 4)
            for (int i = 0; i < dev[r].n; i++) CHECK(dev[r].lp[i] == host[r].lp[i], "host-row logprob differs");
    }
    /* greedy requests (0, 3: penalties on the host sampler too) against the CPU engine: equal, or at the first
     * difference the GPU's token is inside the CPU's top-5 (INT4 GEMV rounding) */
    const int greedy[2] = {0, 3};
    for (int gi = 0; gi < 2; gi++) {
        int r = greedy[gi], d = 0;
        while (d < dev[r].n && d < ref[r].n && dev[r].tok[d] == ref[r].tok[d]) d++;
        if (d < dev[r].n && d < ref[r].n) {
            int np = (5 + 3 * r < 32 ? 5 + 3 * r : 32) - r % 3;
            int32_t seq[64];
            memcpy(seq, toks + r % 3, (size_t)np * 4);
            memcpy(seq + np, ref[r].tok, (size_t)d * 4);
            tl_session *s = tl_session_new(m, cpu, 256, &e);
            CHECK(s && tl_session_eval(s, seq, np + d, false, &e) == 0, "%s", e.msg);
            if (s) {
                int rk = rank_of(tl_session_logits(s, -1), m->cfg.n_vocab, dev[r].tok[d]);
                CHECK(r == 3 || rk < 5, "%s req %d: step %d: gpu token rank %d on the cpu", dir, r, d, rk);
                printf("  %s req %d: greedy parts from the CPU engine at step %d (rank %d)\n", dir, r, d, rk);
                tl_session_free(s);
            }
        } else {
            printf("  %s req %d: greedy equal to the CPU engine (%d tokens)\n", dir, r, dev[r].n);
        }
    }
    cpu->free(cpu);
    gpu->free(gpu);
    tl_model_free(m);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    setenv("TL_Q4_KERNEL", "old", 0); /* CPU engine reference with fp32 activations (as test_cuda_model.c) */
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 0;
    }
    test_kernel(1000, 2 * NCASE + 7);
    test_kernel(5000, 3 * NCASE);
    test_kernel(152064, 520);
    test_engine("tests/data/hf/qwen2-tied-gqa2-hd64");
    test_engine("tests/data/hf/qwen2-gqa7-hd128-f16");
    TL_TEST_END();
}

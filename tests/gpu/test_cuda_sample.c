/* test_cuda_sample.c (GPU only): the device sampler (backend/cuda/sample.cu) against the CPU sampler
 * (engine/sampler.c) on random logits with the same uniform draws, and the engine with device sampling
 * against the CPU engine and against host sampling on the same GPU logits.
 *   - greedy: exact; logprob of the chosen token within 1e-4 of the fp64 log_softmax
 *   - sampled (temperature, top-k, top-p, min-p, mixed per row): the same token except at a float boundary
 *     (expf may differ by an ulp, fp64 sums are added in another order): at most 1 mismatch in 500 rows
 *   - rows that need more than the candidate head come back as -1 exactly where cu_sample.h says they may
 *   - two launches give identical bits (no float atomics)
 * And the backend's launch / collect (steps pipelined with TL_TOKEN_PREV tokens, two in flight) against
 * forward_sample: the same tokens and logprobs bit for bit; their errors. */
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

static int cmp_desc_f(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void test_kernel(int V, int R) {
    float *lg = tl_malloc((size_t)R * V * 4);
    tl_cu_samp *p = tl_calloc((size_t)R, sizeof *p);
    uint64_t *rng0 = tl_calloc((size_t)R, sizeof *rng0);
    for (int r = 0; r < R; r++) {
        const rowcase *c = &cases[r % NCASE];
        fill_row(lg + (size_t)r * V, V, c);
        if (V <= 100) /* masked tokens (-inf), a chunk (of 4) holding fewer than n candidates */
            for (int i = 3; i < V; i += 7) lg[(size_t)r * V + i] = -INFINITY;
        rng0[r] = tl_t_rng(&seed);
        uint64_t st = rng0[r];
        p[r] = (tl_cu_samp){.temperature = c->t, .top_k = c->k, .top_p = c->p, .min_p = c->minp,
                            .u = c->t > 0 ? tl_rng_uniform(&st) : 0, .skip = r % 53 == 52,
                            .n_top = r % 3 == 0 ? 1 + r % TL_CU_TOPN : 0};
    }
    tl_cu_top *dtop, *top = tl_malloc((size_t)R * sizeof *top), *top2 = tl_malloc((size_t)R * sizeof *top2);
    tl_cu_top *top1 = tl_malloc((size_t)R * sizeof *top1); /* (pass 1: one block a sampled row, the same top-n) */
    CU(cudaMalloc((void **)&dtop, (size_t)R * sizeof *dtop));
    float *dl;
    tl_cu_samp *dp;
    tl_cu_samp_out *dout, *out = tl_malloc((size_t)R * sizeof *out), *out2 = tl_malloc((size_t)R * sizeof *out2);
    CU(cudaMalloc((void **)&dl, (size_t)R * V * 4));
    CU(cudaMalloc((void **)&dp, (size_t)R * sizeof *dp));
    CU(cudaMalloc((void **)&dout, (size_t)R * sizeof *dout));
    CU(cudaMemcpy(dl, lg, (size_t)R * V * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dp, p, (size_t)R * sizeof *dp, cudaMemcpyHostToDevice));
    tl_error e = {{0}};
    void *scratch;
    CU(cudaMalloc(&scratch, tl_cu_sample_scratch_bytes()));
    CU(cudaMemset(scratch, 0, tl_cu_sample_scratch_bytes()));
    /* passes: 0 one block a row; 1 the statistics over many blocks, one block a sampled row; 2, 3 every row
     * over many blocks (the default), twice */
    tl_cu_samp_out *outs[4] = {tl_malloc((size_t)R * sizeof *out), tl_malloc((size_t)R * sizeof *out), out, out2};
    for (int pass = 0; pass < 4; pass++) { /* (the top-n logprobs with the scratch: passes 1-3) */
        CU(cudaMemset(dout, 0xff, (size_t)R * sizeof *dout));
        CU(cudaMemset(dtop, 0xff, (size_t)R * sizeof *dtop));
        CHECK(tl_cu_sample(dl, R, V, dp, dout, pass ? scratch : NULL, pass >= 2, pass ? dtop : NULL, 0, &e) == 0, "%s",
              e.msg);
        CU(cudaDeviceSynchronize());
        CU(cudaMemcpy(outs[pass], dout, (size_t)R * sizeof *dout, cudaMemcpyDeviceToHost));
        if (pass >= 1) CU(cudaMemcpy(pass == 2 ? top : top2, dtop, (size_t)R * sizeof *dtop, cudaMemcpyDeviceToHost));
        if (pass == 1) memcpy(top1, top2, (size_t)R * sizeof *top1);
    }
    CHECK(!memcmp(out, out2, (size_t)R * sizeof *out), "V %d: two launches differ", V);
    { /* top-n logprobs: sampler.c's fill_logprobs on the same logits, the same ids in order, logprobs to rounding;
       * two launches bit-equal */
        tl_sampler sp0;
        tl_sampler_init(&sp0, V);
        int id_bad = 0, n_rows = 0, n_bad = 0;
        double lp_err = 0;
        for (int r = 0; r < R; r++) {
            if (p[r].skip || !p[r].n_top) continue;
            n_rows++;
            const int n = TL_MIN(p[r].n_top, V);
            CHECK(top[r].n == top2[r].n && !memcmp(top[r].id, top2[r].id, (size_t)n * 4) &&
                      !memcmp(top[r].lp, top2[r].lp, (size_t)n * 4) && top1[r].n == top[r].n &&
                      !memcmp(top1[r].id, top[r].id, (size_t)n * 4) && !memcmp(top1[r].lp, top[r].lp, (size_t)n * 4),
                  "V %d row %d: three launches' top-n differ", V, r);
            tl_sampling s;
            tl_sampling_default(&s);
            s.n_logprobs = n;
            tl_token_event ev;
            memset(&ev, 0, sizeof ev);
            uint64_t st0 = 1;
            tl_sampler_sample(&sp0, &s, lg + (size_t)r * V, NULL, 0, 0, &st0, &ev);
            n_bad += top[r].n != ev.n_top;
            for (int k = 0; k < ev.n_top && k < top[r].n; k++) {
                id_bad += top[r].id[k] != ev.top_ids[k];
                lp_err = fmax(lp_err, fabs((double)top[r].lp[k] - ev.top_logprobs[k]));
            }
        }
        printf("  top-n V %6d: %d rows, %d counts and %d ids differ from sampler.c, logprob err %.2e\n", V, n_rows, n_bad,
               id_bad, lp_err);
        CHECK(n_rows > 0 && n_bad == 0 && id_bad == 0 && lp_err <= 1e-4, "V %d: top-n logprobs: %d counts, %d ids off, "
              "err %.2e", V, n_bad, id_bad, lp_err);
        tl_sampler_free(&sp0);
        cudaFree(dtop), free(top), free(top1), free(top2);
    }
    { /* the statistics over many blocks change no one-block draw: the same tokens, logprobs to rounding */
        int tok_diff = 0;
        double lp_diff = 0;
        for (int r = 0; r < R; r++) {
            tok_diff += outs[1][r].token != outs[0][r].token;
            lp_diff = fmax(lp_diff, fabs((double)outs[1][r].logprob - outs[0][r].logprob));
        }
        CHECK(tok_diff == 0 && lp_diff <= 1e-5, "V %d R %d: many-block statistics against one block: %d tokens differ, "
              "logprob by %g", V, R, tok_diff, lp_diff);
    }
    for (int pass = 0; pass < 2; pass++) { /* the single-block draws: as the default's, but for boundary cases */
        int tok_diff = 0;
        double lp_diff = 0;
        for (int r = 0; r < R; r++) {
            tok_diff += outs[pass][r].token != out[r].token;
            if (outs[pass][r].token == out[r].token)
                lp_diff = fmax(lp_diff, fabs((double)out[r].logprob - outs[pass][r].logprob));
        }
        printf("  sample V %6d: one-block %s against the default: %d of %d tokens differ, logprob by %.2e\n", V,
               pass ? "draws" : "rows", tok_diff, R, lp_diff);
        CHECK(lp_diff <= 1e-5, "V %d R %d: one-block pass %d against the default: logprob by %g", V, R, pass, lp_diff);
        CHECK(tok_diff * 500 <= R || tok_diff <= 1, "V %d R %d: one-block pass %d against the default: %d tokens differ",
              V, R, pass, tok_diff);
    }
    free(outs[0]), free(outs[1]);
    CU(cudaFree(scratch));
    tl_sampler sp;
    tl_sampler_init(&sp, V);
    int greedy_bad = 0, mism = 0, lp_bad = 0, defer_bad = 0, n_def = 0, n_samp = 0, skip_bad = 0;
    int n_full = 0; /* top-p rows whose kept set is larger than the candidate head (sampled by mass searches) */
    int flat_diff = 0, flat_bad = 0;
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
            bool full = false, member = false;
            if (c->k == 0 && c->p > 0 && c->p < 1 && V > TL_CU_SAMPLE_HEAD_P) { /* the head's mass, as the kernel tests */
                double mxl = -INFINITY, tot = 0;
                for (int i = 0; i < V; i++) mxl = fmax(mxl, l[i]);
                float *pp = tl_malloc((size_t)V * 4);
                for (int i = 0; i < V; i++) pp[i] = expf((l[i] - (float)mxl) * (1.0f / c->t)), tot += pp[i];
                double head = 0; /* the head's most likely tokens' mass against top_p of all */
                qsort(pp, (size_t)V, sizeof *pp, cmp_desc_f);
                for (int i = 0; i < TL_CU_SAMPLE_HEAD_P; i++) head += pp[i];
                full = head < (double)c->p * tot;
                n_full += full;
                double cum = 0; /* the top-p kept set's smallest p: the GPU's token must be at least that (a few ulps) */
                int keep = 0;
                while (keep < V && (keep == 0 || cum < (double)c->p * tot)) cum += pp[keep++];
                member = expf((l[out[r].token] - (float)mxl) * (1.0f / c->t)) >= pp[keep - 1] * (1.0f - 4e-7f);
                free(pp);
            }
            if (ct != out[r].token && full && c->shape == 2) {
                /* a nearly flat row past the head: its p values lie within ulps of each other, so the expf of the
                 * two sides orders them differently and the draw lands on another, equally likely token; checked:
                 * the GPU's token is in the kept set */
                flat_diff++;
                flat_bad += !member;
            } else if (ct != out[r].token) {
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
    printf("  sample V %6d: %d rows, %d sampled (%d top-p past the head), %d deferred to the host, %d sampled mismatches "
           "(+%d flat rows past the head, other tokens of the kept set), logprob err %.2e\n",
           V, R, n_samp, n_full, n_def, mism, flat_diff, worst_lp);
    CHECK(greedy_bad == 0, "V %d: %d greedy rows differ", V, greedy_bad);
    CHECK(skip_bad == 0, "V %d: skipped rows not -1", V);
    CHECK(defer_bad == 0, "V %d: %d rows deferred that may not be", V, defer_bad);
    CHECK(mism * 500 <= n_samp || mism <= 1, "V %d: %d of %d sampled rows differ", V, mism, n_samp);
    CHECK(lp_bad == 0, "V %d: %d logprobs off (worst %.2e)", V, lp_bad, worst_lp);
    if (V > 5000) CHECK(n_def > 0, "V %d: the top_k 5000 row should be deferred", V);
    CHECK(flat_bad == 0, "V %d: %d of %d differing flat rows past the head drew outside the kept set", V, flat_bad,
          flat_diff);
    CHECK(n_full > 0 || V <= TL_CU_SAMPLE_HEAD_P, "V %d: no top-p row went past the candidate head", V);
    tl_sampler_free(&sp);
    cudaFree(dl), cudaFree(dp), cudaFree(dout);
    free(lg), free(p), free(rng0), free(out), free(out2);
}

/* ---- penalties: tl_cu_penalize + tl_cu_sample against sampler.c on the raw logits and the whole history ----
 * R rows of V logits, histories of 0..400 tokens (half drawn from the row's 40 largest logits, so the penalties
 * move the argmax), a prompt part of random length, the last token given as the row's batch token; per row one
 * of 8 penalty / sampling settings. Greedy rows must give sampler.c's token exactly, sampled rows at most one
 * boundary mismatch in 500; at least a tenth of the greedy rows must change token under the penalties. Every other
 * row also asks for 5 top logprobs, which are of the raw logits (cu_sample.h's four steps): its top-n and the drawn
 * token's logprob against fill_logprobs' (the same ids, values to rounding), a tenth of them at least for a token
 * whose logit the penalties rewrote (its raw value from penalize_kernel's saves). */
static void test_penalize(int V, int R) {
    static const struct { float rep, pres, freq, t; int k; float p; } pc[] = {
        {1.3f, 0, 0, 0, 0, 1},       {1, 0.8f, 0.4f, 0, 0, 1},   {0.8f, 0, -0.5f, 0, 0, 1}, {1.05f, 0, 0, 0.7f, 20, 0.8f},
        {2.0f, 1.5f, 1.0f, 0, 0, 1}, {1, 0, 1.2f, 1.0f, 0, 1},   {1.2f, 0.3f, 0.3f, 0.9f, 0, 0.95f}, {1, 0, 0, 0, 0, 1},
    };
    const int NPC = (int)(sizeof pc / sizeof *pc), HMAX = 400;
    float *lg = tl_malloc((size_t)R * V * 4);
    tl_cu_samp *p = tl_calloc((size_t)R, sizeof *p);
    int32_t *hist = tl_malloc((size_t)R * HMAX * 4), *pen = tl_malloc((size_t)R * HMAX * 2 * 4);
    int32_t *last = tl_malloc((size_t)R * 4), *rows = tl_malloc((size_t)R * 4);
    int *nh = tl_malloc((size_t)R * sizeof *nh), *npr = tl_malloc((size_t)R * sizeof *npr);
    uint64_t *rng0 = tl_calloc((size_t)R, sizeof *rng0);
    tl_sampler sp;
    tl_sampler_init(&sp, V);
    int *top = tl_malloc(40 * sizeof *top);
    size_t off = 0;
    for (int r = 0; r < R; r++) {
        float *l = lg + (size_t)r * V;
        for (int i = 0; i < V; i++) l[i] = tl_t_randf(&seed) * 6.f - (i % 3 == 0 ? 2.f : 0.f); /* both signs */
        for (int j = 0; j < 40; j++) { /* the 40 largest, roughly: a scan per pick is fine at test sizes */
            int best = -1;
            for (int i = 0; i < V; i++) {
                bool used = false;
                for (int q = 0; q < j && !used; q++) used = top[q] == i;
                if (!used && (best < 0 || l[i] > l[best])) best = i;
            }
            top[j] = best;
        }
        int32_t *h = hist + (size_t)r * HMAX;
        nh[r] = 1 + (int)(tl_t_rng(&seed) % HMAX);
        npr[r] = (int)(tl_t_rng(&seed) % (unsigned)(nh[r] + 1));
        for (int i = 0; i < nh[r]; i++)
            h[i] = tl_t_rng(&seed) % 2 ? top[tl_t_rng(&seed) % 40] : (int32_t)(tl_t_rng(&seed) % (unsigned)V);
        const int c = r % NPC;
        tl_sampling s;
        tl_sampling_default(&s);
        s.repetition_penalty = pc[c].rep, s.presence_penalty = pc[c].pres, s.frequency_penalty = pc[c].freq;
        const int n = tl_sampler_pen_list(&sp, &s, h, nh[r] - 1, npr[r], pen + 2 * off);
        rng0[r] = tl_t_rng(&seed);
        uint64_t st = rng0[r];
        p[r] = (tl_cu_samp){.temperature = pc[c].t, .top_k = pc[c].k, .top_p = pc[c].p,
                            .u = pc[c].t > 0 ? tl_rng_uniform(&st) : 0, .rep = pc[c].rep, .pres = pc[c].pres,
                            .freq = pc[c].freq, .pen_off = (int)off, .pen_n = n, .last_gen = nh[r] - 1 >= npr[r],
                            .n_top = (r / NPC) % 2 ? 0 : 5}; /* (every setting, with and without) */
        off += (size_t)n;
        last[r] = h[nh[r] - 1];
        rows[r] = R - 1 - r; /* the batch token of row r (reversed: rows[] is followed) */
    }
    int32_t *tokv = tl_malloc((size_t)R * 4);
    for (int r = 0; r < R; r++) tokv[rows[r]] = last[r];
    float *dl;
    tl_cu_samp *dp;
    tl_cu_samp_out *dout, *out = tl_malloc((size_t)R * sizeof *out);
    int32_t *dpen, *dtok, *drows;
    void *scratch;
    float *draw;
    tl_cu_lraw *dlr;
    tl_cu_top *dtop, *top_out = tl_malloc((size_t)R * sizeof *top_out);
    CU(cudaMalloc((void **)&dl, (size_t)R * V * 4));
    CU(cudaMalloc((void **)&dp, (size_t)R * sizeof *dp));
    CU(cudaMalloc((void **)&dout, (size_t)R * sizeof *dout));
    CU(cudaMalloc((void **)&dpen, (off ? off : 1) * 8));
    CU(cudaMalloc((void **)&dtok, (size_t)R * 4));
    CU(cudaMalloc((void **)&drows, (size_t)R * 4));
    CU(cudaMalloc(&scratch, tl_cu_sample_scratch_bytes()));
    CU(cudaMemset(scratch, 0, tl_cu_sample_scratch_bytes()));
    CU(cudaMalloc((void **)&draw, (off ? off : 1) * 4));
    CU(cudaMalloc((void **)&dlr, (size_t)R * sizeof *dlr));
    CU(cudaMalloc((void **)&dtop, (size_t)R * sizeof *dtop));
    CU(cudaMemset(draw, 0xff, (off ? off : 1) * 4)); /* NaN: a raw value never saved would show */
    CU(cudaMemset(dlr, 0xff, (size_t)R * sizeof *dlr));
    CU(cudaMemcpy(dl, lg, (size_t)R * V * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dp, p, (size_t)R * sizeof *dp, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dpen, pen, off * 8, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dtok, tokv, (size_t)R * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(drows, rows, (size_t)R * 4, cudaMemcpyHostToDevice));
    tl_error e = {{0}};
    CHECK(tl_cu_sample_top_raw(dl, R, V, dp, scratch, dtop, dlr, 0, &e) == 0, "%s", e.msg);
    CHECK(tl_cu_penalize(dl, R, V, dp, dpen, dtok, drows, draw, dlr, 0, &e) == 0, "%s", e.msg);
    CHECK(tl_cu_sample(dl, R, V, dp, dout, scratch, 1, NULL, 0, &e) == 0, "%s", e.msg);
    CHECK(tl_cu_logprob_raw(dl, R, V, dp, dpen, dtok, drows, draw, dlr, dout, 0, &e) == 0, "%s", e.msg);
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(out, dout, (size_t)R * sizeof *dout, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(top_out, dtop, (size_t)R * sizeof *dtop, cudaMemcpyDeviceToHost));
    int greedy_bad = 0, mism = 0, n_greedy = 0, n_samp = 0, moved = 0, n_lp = 0, lp_bad = 0, lp_saved = 0;
    for (int r = 0; r < R; r++) {
        const float *l = lg + (size_t)r * V;
        const int c = r % NPC;
        tl_sampling s;
        tl_sampling_default(&s);
        s.temperature = pc[c].t, s.top_k = pc[c].k, s.top_p = pc[c].p;
        s.repetition_penalty = pc[c].rep, s.presence_penalty = pc[c].pres, s.frequency_penalty = pc[c].freq;
        s.n_logprobs = p[r].n_top;
        uint64_t st = rng0[r];
        tl_token_event ev = {0};
        const int32_t ct = tl_sampler_sample(&sp, &s, l, hist + (size_t)r * HMAX, nh[r], npr[r], &st, &ev);
        if (p[r].n_top && ct == out[r].token) { /* raw logprobs: fill_logprobs' */
            n_lp++;
            const tl_cu_top *t = &top_out[r];
            int ok = t->n == ev.n_top && fabsf(out[r].logprob - ev.logprob) <= 2e-5f;
            for (int k = 0; k < t->n && ok; k++)
                ok = t->id[k] == ev.top_ids[k] && fabsf(t->lp[k] - ev.top_logprobs[k]) <= 2e-5f;
            lp_bad += !ok;
            if (!ok && lp_bad <= 3)
                printf("  row %d: token %d logprob %g / host %g, top %d / %d\n", r, ct, out[r].logprob, ev.logprob, t->n,
                       ev.n_top);
            bool rewritten = ct == last[r]; /* (the last token is always rewritten when it has a penalty) */
            for (int j = 0; j < p[r].pen_n && !rewritten; j++) rewritten = pen[2 * (p[r].pen_off + j)] == ct;
            lp_saved += rewritten;
        }
        if (pc[c].t > 0) {
            n_samp++;
            mism += ct != out[r].token;
        } else {
            n_greedy++;
            greedy_bad += ct != out[r].token;
            int am = 0;
            for (int i = 1; i < V; i++) am = l[i] > l[am] ? i : am;
            moved += c != NPC - 1 && ct != am;
        }
    }
    printf("  penalties V %6d: %d rows (%d greedy, %d moved off the raw argmax; %d sampled), %d greedy and %d sampled "
           "mismatches\n", V, R, n_greedy, moved, n_samp, greedy_bad, mism);
    CHECK(greedy_bad == 0, "V %d: %d penalized greedy rows differ from sampler.c", V, greedy_bad);
    CHECK(mism * 500 <= n_samp || mism <= 1, "V %d: %d of %d penalized sampled rows differ", V, mism, n_samp);
    CHECK(moved * 10 >= n_greedy, "V %d: the penalties moved only %d of %d greedy rows", V, moved, n_greedy);
    printf("  penalties V %6d: %d rows with top-5 raw logprobs (%d drew a rewritten logit), %d differ from "
           "fill_logprobs\n", V, n_lp, lp_saved, lp_bad);
    CHECK(lp_bad == 0, "V %d: %d rows' raw logprobs differ from sampler.c's", V, lp_bad);
    CHECK(n_lp * 3 >= R && lp_saved * 10 >= n_lp, "V %d: %d rows with logprobs, %d drew a rewritten logit", V, n_lp,
          lp_saved);
    tl_sampler_free(&sp);
    cudaFree(dl), cudaFree(dp), cudaFree(dout), cudaFree(dpen), cudaFree(dtok), cudaFree(drows), cudaFree(scratch);
    cudaFree(draw), cudaFree(dlr), cudaFree(dtop);
    free(lg), free(p), free(hist), free(pen), free(last), free(rows), free(nh), free(npr), free(rng0), free(top);
    free(tokv), free(out), free(top_out);
}

/* ---- engine: device sampling vs host sampling (same GPU logits) and vs the CPU engine ---- */
typedef struct {
    int32_t tok[64], top_id[64][3];
    float lp[64], top_lp[64][3];
    int n, n_top[64];
} collected;
static int collect_cb(const tl_token_event *ev, void *user) {
    collected *c = user;
    if (ev->token < 0 || c->n >= 64) return 0;
    c->n_top[c->n] = ev->n_top;
    for (int k = 0; k < ev->n_top && k < 3; k++) c->top_id[c->n][k] = ev->top_ids[k], c->top_lp[c->n][k] = ev->top_logprobs[k];
    c->lp[c->n] = ev->logprob, c->tok[c->n++] = ev->token;
    return 0;
}

#define NREQ 11
/* host_sample 1: every row on the host; 2: penalties on the host (TL_ENGINE_HOST_PENALTIES=1), the rest on the
 * device (request 10, top-n logprobs with penalties, on the host too); 0: the device samples all (penalties by
 * tl_cu_penalize, top-n by sample_top.cu, request 10's of the raw logits: cu_sample.h's four steps). max_seqs 4: 11 requests, seven wait, rows of every kind share steps, one step at a time (TL_ENGINE_ASYNC=0: pipelined steps are
 * scheduled otherwise, and another batch shape rounds the logits otherwise); max_seqs 1: pipelined (the same
 * batches: one sequence each), the penalized rows' last tokens resolved on the device. */
static void run_engine(tl_model *m, tl_backend *be, int host_sample, int max_seqs, const int32_t *toks, int nt,
                       collected *out) {
    setenv("TL_ENGINE_HOST_SAMPLE", host_sample == 1 ? "1" : "0", 1);
    setenv("TL_ENGINE_HOST_PENALTIES", host_sample == 2 ? "1" : "0", 1);
    setenv("TL_ENGINE_ASYNC", max_seqs > 1 ? "0" : "1", 1);
    tl_error e = {{0}};
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_seqs = max_seqs;
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
        if (r == 3) p.s.repetition_penalty = 1.3f;                 /* penalized rows: 3, 6, 7, 8 */
        if (r == 4) p.s.n_logprobs = 3, p.s.temperature = 0.7f, p.s.seed = 3; /* top-n logprobs on the device */
        if (r == 6) p.s.presence_penalty = 0.8f, p.s.frequency_penalty = 0.5f;
        if (r == 7) /* Qwen2-Instruct's generation_config.json */
            p.s.repetition_penalty = 1.05f, p.s.temperature = 0.7f, p.s.top_p = 0.8f, p.s.top_k = 20, p.s.seed = 5;
        if (r == 8)
            p.s.repetition_penalty = 0.9f, p.s.frequency_penalty = -0.4f, p.s.temperature = 1.0f, p.s.top_p = 0.95f,
            p.s.seed = 8;
        if (r == 9) /* top_k > TL_CU_SAMPLE_CAP (with V = 152K: the whole row to the host, penalized once there) */
            p.s.repetition_penalty = 1.2f, p.s.temperature = 0.9f, p.s.top_k = 5000, p.s.seed = 4;
        if (r == 10) /* penalties with top-n logprobs: raw logprobs */
            p.s.repetition_penalty = 1.2f, p.s.temperature = 0.8f, p.s.seed = 6, p.s.n_logprobs = 2;
        p.ignore_eos = true;
        int np = 5 + 3 * r < nt ? 5 + 3 * r : nt;
        CHECK(tl_engine_add(en, toks + r % 3, np - r % 3, &p, collect_cb, &out[r], &e) > 0, "%s", e.msg);
    }
    tl_engine_run_until_idle(en);
    tl_engine_stats es;
    tl_engine_stats_get(en, &es);
    /* every row on the device (0; request 9's top_k > 4096 rows the backend defers itself, not counted), or
     * the penalized ones on the host (2: requests 3, 6-10) */
    if (host_sample != 1)
        CHECK(host_sample ? es.host_rows > 0 : es.host_rows == 0, "mode %d: %lld rows sent to the host sampler",
              host_sample, (long long)es.host_rows);
    tl_engine_free(en);
    unsetenv("TL_ENGINE_HOST_SAMPLE");
    unsetenv("TL_ENGINE_HOST_PENALTIES");
    unsetenv("TL_ENGINE_ASYNC");
}

static int rank_of(const float *l, int V, int tok) {
    int r = 0;
    for (int i = 0; i < V; i++) r += l[i] > l[tok];
    return r;
}

/* Pipelined with several penalized rows a step, their last tokens resolved on the device: 4 requests of equal
 * prompt length and max_tokens, so every step has the same rows pipelined or not (the first prefills all four,
 * every later one decodes all four), against host sampling on the same logits: the same tokens. */
static void test_pen_pipelined(tl_model *m, tl_backend *gpu, const int32_t *toks, const char *dir) {
    collected out[2][4];
    for (int k = 0; k < 2; k++) {
        setenv("TL_ENGINE_HOST_SAMPLE", k ? "1" : "0", 1);
        tl_error e = {{0}};
        tl_engine_opts o;
        tl_engine_opts_default(&o);
        o.max_seqs = 4;
        o.kv_mem = (size_t)64 << 20;
        tl_engine *en = tl_engine_new(m, gpu, &o, &e);
        CHECK(en != NULL, "%s", e.msg);
        if (!en) return;
        memset(out[k], 0, sizeof out[k]);
        for (int r = 0; r < 4; r++) {
            tl_req_params p = {.max_tokens = 24, .ignore_eos = true};
            tl_sampling_default(&p.s);
            if (r == 0) p.s.repetition_penalty = 1.3f;
            if (r == 1) p.s.presence_penalty = 0.8f, p.s.frequency_penalty = 0.5f;
            if (r == 2) p.s.repetition_penalty = 1.05f, p.s.temperature = 0.7f, p.s.top_p = 0.8f, p.s.top_k = 20, p.s.seed = 5;
            if (r == 3) p.s.repetition_penalty = 0.9f, p.s.frequency_penalty = -0.4f, p.s.temperature = 1.0f, p.s.seed = 8;
            CHECK(tl_engine_add(en, toks + 3 * r, 12, &p, collect_cb, &out[k][r], &e) > 0, "%s", e.msg);
        }
        tl_engine_run_until_idle(en);
        tl_engine_free(en);
    }
    unsetenv("TL_ENGINE_HOST_SAMPLE");
    for (int r = 0; r < 4; r++)
        CHECK(out[0][r].n == 24 && out[1][r].n == 24 && !memcmp(out[0][r].tok, out[1][r].tok, 24 * 4),
              "%s req %d: pipelined penalized rows (4 a step) differ from host sampling", dir, r);
}

/* cpu_ref 0: no CPU engine reference (dummy models: too slow on the CPU for a test) */
static void test_engine(const char *dir, int cpu_ref) {
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
    static collected dev[NREQ], host[NREQ], hpen[NREQ], ref[NREQ], dev1[NREQ], host1[NREQ];
    run_engine(m, gpu, 0, 4, toks, 32, dev);
    run_engine(m, gpu, 1, 4, toks, 32, host);
    run_engine(m, gpu, 2, 4, toks, 32, hpen);
    run_engine(m, gpu, 0, 1, toks, 32, dev1);
    run_engine(m, gpu, 1, 1, toks, 32, host1);
    if (cpu_ref) run_engine(m, cpu, 0, 4, toks, 32, ref);
    test_pen_pipelined(m, gpu, toks, dir);
    for (int r = 0; r < NREQ; r++) {
        CHECK(dev[r].n == 10 + r && host[r].n == 10 + r, "req %d: %d / %d tokens", r, dev[r].n, host[r].n);
        int same = dev[r].n == host[r].n && !memcmp(dev[r].tok, host[r].tok, (size_t)dev[r].n * 4);
        CHECK(same, "%s req %d: device sampling differs from host sampling on the same GPU logits", dir, r);
        same = hpen[r].n == host[r].n && !memcmp(hpen[r].tok, host[r].tok, (size_t)hpen[r].n * 4);
        CHECK(same, "%s req %d: with penalties on the host, device sampling differs from host sampling", dir, r);
        same = dev1[r].n == 10 + r && dev1[r].n == host1[r].n && !memcmp(dev1[r].tok, host1[r].tok, (size_t)dev1[r].n * 4);
        CHECK(same, "%s req %d: pipelined alone, device sampling differs from host sampling", dir, r);
        if (r == 0) /* greedy, device: logprobs are reported and are log-probabilities */
            for (int i = 0; i < dev[r].n; i++) CHECK(dev[r].lp[i] <= 1e-6f && dev[r].lp[i] > -50.f, "lp %g", dev[r].lp[i]);
        for (int pass = 0; pass < 2 && (r == 4 || r == 10); pass++) {
            /* top-n logprobs (device, one step at a time and pipelined alone; r 10 with penalties: of the raw
             * logits) against sampler.c's: the same ids, logprobs to rounding */
            const collected *d = pass ? &dev1[r] : &dev[r], *h = pass ? &host1[r] : &host[r];
            for (int i = 0; i < d->n && i < h->n; i++) {
                int ok = d->n_top[i] == (r == 4 ? 3 : 2) && d->n_top[i] == h->n_top[i] && fabsf(d->lp[i] - h->lp[i]) <= 2e-5f;
                for (int k = 0; k < d->n_top[i] && k < 3; k++)
                    ok &= d->top_id[i][k] == h->top_id[i][k] && fabsf(d->top_lp[i][k] - h->top_lp[i][k]) <= 2e-5f;
                CHECK(ok, "%s req %d token %d (%s): logprobs differ from the host's (%d / %d alternatives, lp %g / %g)",
                      dir, r, i, pass ? "pipelined" : "one step at a time", d->n_top[i], h->n_top[i], d->lp[i], h->lp[i]);
            }
        }
    }
    /* greedy requests (0, 3: penalties on the host sampler too) against the CPU engine: equal, or at the first
     * difference the GPU's token is inside the CPU's top-5 (INT4 GEMV rounding) */
    const int greedy[2] = {0, 3};
    for (int gi = 0; gi < 2 && cpu_ref; gi++) {
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

/* ---- launch / collect: steps pipelined with TL_TOKEN_PREV tokens against forward_sample ---- */
#define LC_STEPS 24
#define LC_SEQ 3
static const int lc_plen[LC_SEQ] = {5, 11, 40};

typedef struct {
    int32_t tok[LC_STEPS][LC_SEQ]; /* by logit row */
    float lp[LC_STEPS][LC_SEQ];
    int n[LC_STEPS];
    int row_of[LC_SEQ]; /* each sequence's row in the last step, -1: none */
} lc_result;

typedef struct {
    int32_t tok[64], pos[64], lr[LC_SEQ], bt[LC_SEQ][16];
    tl_batch_seq q[LC_SEQ];
    tl_row_sampling rs[LC_SEQ];
    tl_batch b;
} lc_batch;

/* Step t of the schedule into B (every array rebuilt). Sequence s owns blocks 16 s .. 16 s + 15 and starts with
 * its prompt (prompt + 64 s): seqs 0 and 1 at step 0 (16 tokens: a CUDA-graph step where the model allows one),
 * seq 2 at step 1 with the decodes of 0 and 1 (42 tokens: forward_body, a > 16-token prefill chunk); then every
 * live sequence decodes one token a step (seq 1 stops after step 15), in the order 2, 0, 1 on odd steps so that
 * a row of a step is not the same sequence's row of the step before. A decode's token: last[s] (the synchronous
 * run: the token sampled for s the step before) or, last NULL, TL_TOKEN_PREV of s's row in the step before.
 * past[s] (tokens in the cache) and row_of[s] (in: s's row in the step before; out: in this step, -1 for none)
 * are updated.
 * Seq 1 samples (temperature 0.8, top-k 20, a fixed draw a step), the others are greedy. */
static void lc_build(lc_batch *B, int t, const int32_t *prompt, int past[LC_SEQ], const int32_t *last,
                     int row_of[LC_SEQ]) {
    static const int order[2][LC_SEQ] = {{0, 1, 2}, {2, 0, 1}};
    int n = 0, ns = 0, prev_row[LC_SEQ];
    memcpy(prev_row, row_of, sizeof prev_row);
    for (int s = 0; s < LC_SEQ; s++) row_of[s] = -1;
    for (int k = 0; k < LC_SEQ; k++) {
        const int s = order[t % 2][k];
        if ((s == 1 && t > 15) || (s == 2 && t < 1)) continue;
        for (int i = 0; i < 16; i++) B->bt[s][i] = 16 * s + i;
        const int nn = past[s] ? 1 : lc_plen[s];
        for (int i = 0; i < nn; i++) {
            B->tok[n + i] = past[s] ? (last ? last[s] : TL_TOKEN_PREV(prev_row[s])) : prompt[64 * s + i];
            B->pos[n + i] = past[s] + i;
        }
        B->q[ns] = (tl_batch_seq){.tok_start = n, .n_new = nn, .n_past = past[s], .block_table = B->bt[s]};
        B->lr[ns] = n + nn - 1;
        B->rs[ns] = (tl_row_sampling){.temperature = s == 1 ? 0.8f : 0.f, .top_k = s == 1 ? 20 : 0, .top_p = 1.f,
                                      .u = s == 1 ? fmod(0.137 + 0.618034 * t, 1.0) : 0.0};
        row_of[s] = ns++;
        past[s] += nn, n += nn;
    }
    B->b = (tl_batch){.n_tok = n, .tokens = B->tok, .pos = B->pos, .n_seq = ns, .seqs = B->q, .n_logits = ns,
                      .logit_rows = B->lr};
}

/* The schedule run with forward_sample (pipelined 0), or with launch / collect, step t + 1 launched before step
 * t is collected (two steps in flight); B is scribbled over after each launch (launch copies what it needs). */
static void lc_run(tl_backend *gpu, tl_model *m, tl_kv *kv, const int32_t *prompt, int pipelined, lc_result *res) {
    tl_error e = {{0}};
    int past[LC_SEQ] = {0}, row_of[LC_SEQ] = {-1, -1, -1};
    int32_t last[LC_SEQ] = {0};
    lc_batch B;
    float *logits = tl_malloc((size_t)LC_SEQ * m->cfg.n_vocab * 4); /* (no host rows: unused) */
    memset(res, 0, sizeof *res);
    for (int t = 0; t < LC_STEPS; t++) {
        lc_build(&B, t, prompt, past, pipelined ? NULL : last, row_of);
        res->n[t] = B.b.n_logits;
        if (!pipelined) {
            CHECK(gpu->forward_sample(gpu, m, kv, &B.b, B.rs, res->tok[t], res->lp[t], logits, &e) == 0, "step %d: %s",
                  t, e.msg);
            for (int s = 0; s < LC_SEQ; s++)
                if (row_of[s] >= 0) last[s] = res->tok[t][row_of[s]];
            continue;
        }
        CHECK(gpu->launch(gpu, m, kv, &B.b, B.rs, logits, &e) == 0, "launch %d: %s", t, e.msg);
        memset(&B, 0xa5, sizeof B);
        if (t) CHECK(gpu->collect(gpu, res->tok[t - 1], res->lp[t - 1], &e) == 0, "collect %d: %s", t - 1, e.msg);
    }
    if (pipelined)
        CHECK(gpu->collect(gpu, res->tok[LC_STEPS - 1], res->lp[LC_STEPS - 1], &e) == 0, "collect: %s", e.msg);
    memcpy(res->row_of, row_of, sizeof row_of);
    free(logits);
}

/* one decode of seq 0 at position pos (blocks 0..15) with token tok, greedy, or its row left to the host */
static void lc_decode(lc_batch *B, int32_t tok, int pos, int host) {
    for (int i = 0; i < 16; i++) B->bt[0][i] = i;
    B->tok[0] = tok, B->pos[0] = pos, B->lr[0] = 0;
    B->q[0] = (tl_batch_seq){.tok_start = 0, .n_new = 1, .n_past = pos, .block_table = B->bt[0]};
    B->rs[0] = (tl_row_sampling){.top_p = 1.f, .host = host};
    B->b = (tl_batch){.n_tok = 1, .tokens = B->tok, .pos = B->pos, .n_seq = 1, .seqs = B->q, .n_logits = 1,
                      .logit_rows = B->lr};
}

/* launch / collect with TL_TOKEN_PREV tokens give forward_sample's tokens and logprobs bit for bit (graph and
 * forward_body steps, one mixing decodes with a prefill chunk, two steps in flight); and the errors: a
 * TL_TOKEN_PREV with no step before, out of range, or of a host row; a third launch; collect with nothing
 * launched; forward / forward_sample while steps are launched; each -1 with a message, the backend usable after. */
static void test_launch_collect(const char *dir) {
    tl_error e = {{0}};
    tl_load_opts lo = {.quiet = true, .quant_bits = 4};
    tl_model *m = tl_model_load(dir, &lo, &e);
    CHECK(m != NULL, "%s: %s", dir, e.msg);
    if (!m) return;
    tl_backend *gpu = tl_backend_cuda_new(0.5f, &e);
    tl_kv kv;
    const int ok = gpu && gpu->launch && gpu->collect && gpu->row_on_device &&
                   gpu->kv_alloc(gpu, &kv, &m->cfg, 16, 16 * LC_SEQ, TL_BF16, &e) == 0;
    CHECK(ok, "%s: %s", dir, e.msg);
    if (!ok) {
        if (gpu) gpu->free(gpu);
        tl_model_free(m);
        return;
    }
    const int V = m->cfg.n_vocab;
    int32_t prompt[64 * LC_SEQ], tok[4], tok2[4];
    float lp[4], lp2[4], *logits = tl_malloc((size_t)4 * V * 4);
    unsigned long long sd = 23;
    for (int i = 0; i < 64 * LC_SEQ; i++) prompt[i] = (int32_t)(tl_t_rng(&sd) % (unsigned)TL_MIN(V, 150000));
    lc_batch B;
    /* no step launched yet */
    lc_decode(&B, TL_TOKEN_PREV(0), 0, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == -1 && strstr(e.msg, "TL_TOKEN_PREV"), "%s", e.msg);
    CHECK(gpu->collect(gpu, tok, lp, &e) == -1 && strstr(e.msg, "collect"), "%s", e.msg);

    lc_result *sync = tl_malloc(sizeof *sync), *pipe = tl_malloc(sizeof *pipe);
    lc_run(gpu, m, &kv, prompt, 0, sync);
    lc_run(gpu, m, &kv, prompt, 1, pipe);
    int same = 1, in_range = 1;
    for (int t = 0; t < LC_STEPS; t++) {
        same &= sync->n[t] == pipe->n[t] && !memcmp(sync->tok[t], pipe->tok[t], (size_t)sync->n[t] * 4) &&
                !memcmp(sync->lp[t], pipe->lp[t], (size_t)sync->n[t] * 4);
        for (int i = 0; i < sync->n[t]; i++) in_range &= sync->tok[t][i] >= 0 && sync->tok[t][i] < V;
    }
    CHECK(in_range, "%s: forward_sample tokens out of range", dir);
    CHECK(same, "%s: launch / collect with TL_TOKEN_PREV differs from forward_sample", dir);

    /* the last step had rows for seqs 0 and 2; seq 0 has its prompt and LC_STEPS - 1 tokens in the cache */
    const int r0 = TL_MAX(pipe->row_of[0], 0), pos0 = lc_plen[0] + LC_STEPS - 1;
    CHECK(pipe->n[LC_STEPS - 1] == 2 && pipe->row_of[0] >= 0 && pipe->row_of[1] < 0, "%s: schedule", dir);
    const int32_t last0 = pipe->tok[LC_STEPS - 1][r0];
    lc_decode(&B, TL_TOKEN_PREV(2), pos0, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == -1 && strstr(e.msg, "out of range"), "%s", e.msg);
    /* still usable: TL_TOKEN_PREV(r0) (seq 0's token) equals forward_sample on that token (same KV slot rewritten),
     * with a refused launch (out of range of that 1-row step) while it is in flight */
    lc_decode(&B, TL_TOKEN_PREV(r0), pos0, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == 0, "%s", e.msg);
    lc_decode(&B, TL_TOKEN_PREV(1), pos0 + 1, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == -1 && strstr(e.msg, "out of range"), "%s", e.msg);
    CHECK(gpu->collect(gpu, tok, lp, &e) == 0, "%s", e.msg);
    lc_decode(&B, last0, pos0, 0);
    CHECK(gpu->forward_sample(gpu, m, &kv, &B.b, B.rs, tok2, lp2, logits, &e) == 0, "%s", e.msg);
    CHECK(tok[0] == tok2[0] && lp[0] == lp2[0], "%s: after an error: %d (%g) vs %d (%g)", dir, tok[0], lp[0], tok2[0],
          lp2[0]);
    /* a third launch; forward and forward_sample while steps are launched; collect with nothing launched */
    lc_decode(&B, tok2[0], pos0 + 1, 0);
    for (int k = 0; k < 2; k++) CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == 0, "%s", e.msg);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == -1 && strstr(e.msg, "collect"), "%s", e.msg);
    CHECK(gpu->forward(gpu, m, &kv, &B.b, logits, &e) == -1 && strstr(e.msg, "collected"), "%s", e.msg);
    CHECK(gpu->forward_sample(gpu, m, &kv, &B.b, B.rs, tok, lp, logits, &e) == -1 && strstr(e.msg, "collected"), "%s",
          e.msg);
    tok[0] = tok[1] = -7;
    CHECK(gpu->collect(gpu, tok, lp, &e) == 0 && gpu->collect(gpu, tok + 1, lp + 1, &e) == 0, "%s", e.msg);
    CHECK(tok[0] == tok[1] && tok[0] >= 0 && lp[0] == lp[1], "%s: a step launched twice: %d, %d", dir, tok[0],
          tok[1]);
    CHECK(gpu->collect(gpu, tok, lp, &e) == -1 && strstr(e.msg, "collect"), "%s", e.msg);
    /* a row left to the host: token -1, its logits copied; TL_TOKEN_PREV of it refused */
    lc_decode(&B, tok2[0], pos0 + 1, 1);
    logits[0] = NAN;
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == 0 && gpu->collect(gpu, tok, lp, &e) == 0, "%s", e.msg);
    CHECK(tok[0] == -1 && isfinite(logits[0]), "%s: host row: token %d, logit %g", dir, tok[0], logits[0]);
    CHECK(!gpu->row_on_device(gpu, &B.rs[0], V), "row_on_device of a host row");
    lc_decode(&B, TL_TOKEN_PREV(0), pos0 + 2, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == -1 && strstr(e.msg, "host"), "%s", e.msg);
    CHECK(gpu->row_on_device(gpu, &B.rs[0], V), "row_on_device of a greedy row");
    lc_decode(&B, tok2[0], pos0 + 1, 0);
    CHECK(gpu->launch(gpu, m, &kv, &B.b, B.rs, logits, &e) == 0 && gpu->collect(gpu, tok2 + 1, lp2 + 1, &e) == 0,
          "%s", e.msg);
    CHECK(tok2[1] == tok[1] && lp2[1] == lp[1], "%s: after the errors: %d vs %d", dir, tok2[1], tok[1]);
    printf("  %s: launch / collect, %d steps pipelined with TL_TOKEN_PREV: tokens and logprobs %s forward_sample's; "
           "errors checked\n", dir, LC_STEPS, same ? "equal to" : "DIFFER from");
    free(sync), free(pipe), free(logits);
    gpu->kv_free(gpu, &kv);
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
    test_kernel(100, 2 * NCASE);
    test_kernel(1000, 2 * NCASE + 7);
    test_kernel(5000, 3 * NCASE);
    test_kernel(152064, 520);
    test_penalize(1000, 400);
    test_penalize(152064, 120);
    test_engine("tests/data/hf/qwen2-tied-gqa2-hd64", 1);
    test_engine("tests/data/hf/qwen2-gqa7-hd128-f16", 1);
    test_engine("dummy:qwen2-0.5b", 0); /* decode steps as CUDA graphs, the penalties inside them */
    test_launch_collect("tests/data/hf/qwen2-tied-gqa2-hd64");
    test_launch_collect("tests/data/hf/qwen2-gqa7-hd128-f16");
    test_launch_collect("dummy:qwen2-0.5b"); /* every matrix tiled INT4: the decode steps as CUDA graphs */
    TL_TEST_END();
}

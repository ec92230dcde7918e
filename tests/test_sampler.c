/* test_sampler.c: the sampler against hand-computed expectations (penalties, greedy ties, top-k/p,
 * min-p, temperature, seeds, logprobs). */
#include <math.h>

#include "engine/sampler.h"
#include "tl_test.h"

static tl_sampler sp3;

static int32_t pick(const tl_sampling *s, const float *l, const int32_t *hist, int n_hist, int n_prompt, uint64_t seed) {
    uint64_t r = seed;
    return tl_sampler_sample(&sp3, s, l, hist, n_hist, n_prompt, &r, NULL);
}

/* Empirical frequencies of 3 tokens over n draws from one RNG stream. */
static void freqs(const tl_sampling *s, const float *l, int n, double f[3]) {
    uint64_t r = 12345;
    int c[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) c[tl_sampler_sample(&sp3, s, l, NULL, 0, 0, &r, NULL)]++;
    for (int i = 0; i < 3; i++) f[i] = (double)c[i] / n;
}

int main(void) {
    tl_sampler_init(&sp3, 3);
    tl_sampling s;
    tl_sampling_default(&s);

    /* greedy, first maximum on ties */
    float l1[3] = {1, 3, 3};
    CHECK(pick(&s, l1, NULL, 0, 0, 1) == 1);

    /* repetition penalty (HF): positive logits divided, negative multiplied, prompt counts too */
    float l2[3] = {2, 1.5f, 0};
    int32_t h0[1] = {0};
    s.repetition_penalty = 2;
    CHECK(pick(&s, l2, h0, 1, 1, 1) == 1, "2/2 = 1 < 1.5");
    float l3[3] = {-1, -1.5f, -9};
    CHECK(pick(&s, l3, h0, 1, 1, 1) == 1, "-1*2 = -2 < -1.5");
    int32_t h00[3] = {0, 0, 0};
    s.repetition_penalty = 1.2f;
    CHECK(pick(&s, l2, h00, 3, 3, 1) == 0, "applied once per distinct token: 2/1.2 = 1.67 > 1.5");
    tl_sampling_default(&s);

    /* presence / frequency (OpenAI): generated tokens only */
    float l4[3] = {3, 2.5f, 0};
    int32_t g[3] = {0, 0, 0}; /* prompt [0], generated [0, 0] */
    s.frequency_penalty = 0.5f;
    CHECK(pick(&s, l4, g, 3, 1, 1) == 1, "3 - 2*0.5 = 2 < 2.5");
    s.frequency_penalty = 0.2f;
    CHECK(pick(&s, l4, g, 3, 1, 1) == 0, "3 - 0.4 = 2.6 > 2.5");
    s.frequency_penalty = 0;
    s.presence_penalty = 0.6f;
    CHECK(pick(&s, l4, g, 3, 1, 1) == 1, "3 - 0.6 = 2.4 < 2.5");
    CHECK(pick(&s, l4, g, 1, 1, 1) == 0, "prompt tokens carry no presence penalty");
    s.presence_penalty = 0.4f;
    CHECK(pick(&s, l4, g, 3, 1, 1) == 0, "3 - 0.4 = 2.6 > 2.5");
    CHECK(pick(&s, l4, g, 3, 1, 1) == 0, "counts are reset between calls");
    tl_sampling_default(&s);

    /* temperature sampling: probabilities 0.5, 0.3, 0.2 */
    float lp[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    double f[3];
    s.temperature = 1;
    freqs(&s, lp, 40000, f);
    CHECK(fabs(f[0] - 0.5) < 0.015 && fabs(f[1] - 0.3) < 0.015 && fabs(f[2] - 0.2) < 0.015, "%.3f %.3f %.3f", f[0],
          f[1], f[2]);
    s.temperature = 0.5f; /* p^2 normalized: .25/.38 .09/.38 .04/.38 */
    freqs(&s, lp, 40000, f);
    CHECK(fabs(f[0] - 0.6579) < 0.015 && fabs(f[1] - 0.2368) < 0.015 && fabs(f[2] - 0.1053) < 0.015, "%.3f %.3f %.3f",
          f[0], f[1], f[2]);
    s.temperature = 1;
    /* top-k 2: 0.5/0.8, 0.3/0.8 */
    s.top_k = 2;
    freqs(&s, lp, 40000, f);
    CHECK(f[2] == 0 && fabs(f[0] - 0.625) < 0.015, "%.3f %.3f %.3f", f[0], f[1], f[2]);
    s.top_k = 1;
    freqs(&s, lp, 2000, f);
    CHECK(f[0] == 1.0, "top_k 1 is greedy");
    s.top_k = 0;
    /* top-p: 0.75 keeps {0.5, 0.3}; 0.45 keeps {0.5} */
    s.top_p = 0.75f;
    freqs(&s, lp, 40000, f);
    CHECK(f[2] == 0 && fabs(f[0] - 0.625) < 0.015, "%.3f %.3f %.3f", f[0], f[1], f[2]);
    s.top_p = 0.45f;
    freqs(&s, lp, 2000, f);
    CHECK(f[0] == 1.0);
    s.top_p = 1;
    /* min-p: 0.5 keeps p >= 0.25 -> {0.5, 0.3}; 0.7 keeps {0.5} */
    s.min_p = 0.5f;
    freqs(&s, lp, 40000, f);
    CHECK(f[2] == 0 && fabs(f[0] - 0.625) < 0.015, "%.3f %.3f %.3f", f[0], f[1], f[2]);
    s.min_p = 0.7f;
    freqs(&s, lp, 2000, f);
    CHECK(f[0] == 1.0);
    s.min_p = 0;

    /* seeds: same seed, same stream; different seeds differ */
    {
        tl_sampler spv;
        enum { NV = 3000 };
        tl_sampler_init(&spv, NV);
        float lv[NV];
        for (int i = 0; i < NV; i++) lv[i] = (float)sin(i * 0.37) * 2;
        s.temperature = 1.3f;
        s.top_p = 0.9f;
        int32_t a[64], b[64], c[64];
        uint64_t ra = 7, rb = 7, rc = 8;
        int same_ab = 1, diff_ac = 0;
        for (int i = 0; i < 64; i++) {
            a[i] = tl_sampler_sample(&spv, &s, lv, a, i, 0, &ra, NULL);
            b[i] = tl_sampler_sample(&spv, &s, lv, b, i, 0, &rb, NULL);
            c[i] = tl_sampler_sample(&spv, &s, lv, c, i, 0, &rc, NULL);
            same_ab &= a[i] == b[i];
            diff_ac += a[i] != c[i];
        }
        CHECK(same_ab, "same seed, same tokens");
        CHECK(diff_ac > 10, "different seeds should differ (%d)", diff_ac);
        /* top-p over a large vocabulary: the 1024-candidate shortcut must keep the exact set.
         * Flat logits: every token equally likely; top_p q keeps the 3000*q lowest ids (ties by id). */
        float flat[NV];
        for (int i = 0; i < NV; i++) flat[i] = 0.25f;
        const float qs[2] = {0.25f, 0.5f}; /* 750 (inside the 1024 head) and 1500 (full sort) */
        for (int k = 0; k < 2; k++) {
            s.top_p = qs[k];
            uint64_t r = 3;
            int mx = 0;
            for (int i = 0; i < 20000; i++) {
                int t = tl_sampler_sample(&spv, &s, flat, NULL, 0, 0, &r, NULL);
                mx = t > mx ? t : mx;
            }
            CHECK(mx == (int)(NV * qs[k]) - 1, "top_p %.2f of %d equal tokens: max id %d", qs[k], NV, mx);
        }
        tl_sampler_free(&spv);
        tl_sampling_default(&s);
    }

    /* logprobs: unmodified distribution even with penalties and temperature */
    float ll[3] = {1, 2, 3};
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0)); /* 3.4076059644443806 */
    tl_token_event ev;
    memset(&ev, 0, sizeof ev);
    s.n_logprobs = 2;
    s.repetition_penalty = 5;
    uint64_t r = 1;
    int32_t hist2[1] = {2};
    int32_t t = tl_sampler_sample(&sp3, &s, ll, hist2, 1, 1, &r, &ev);
    CHECK(t == 1, "penalized 3/5 = 0.6 < 2");
    CHECK(fabs(ev.logprob - (2 - lse)) < 1e-5, "%f", ev.logprob);
    CHECK(ev.n_top == 2 && ev.top_ids[0] == 2 && ev.top_ids[1] == 1);
    CHECK(fabs(ev.top_logprobs[0] - (3 - lse)) < 1e-5 && fabs(ev.top_logprobs[1] - (2 - lse)) < 1e-5);
    tl_sampler_free(&sp3);
    TL_TEST_END();
}

/* test_int4_quality.c: INT4 vs full precision, next-token distributions, measured on the four
 * HF-reference checkpoints (tests/data/hf, random-init Qwen2/Llama of several shapes) and on
 * dummy:tiny (Qwen2 vocabulary), for G = 32, 64, 128. Per model: a random token text of
 * N_POS positions is scored by the full-precision model and by the same model quantized with
 * tl_model_quantize (prefill chunks of 64 tokens; Q4 products use int8 activations at every
 * n_tok); top-1 agreement of the argmax and mean KL(P_full || P_int4). The first N_DEC positions
 * are also decoded one token at a time by the INT4 model and compared with its own prefill
 * logits: the same per-token int8 activations on both paths, so they must agree (to attention's
 * summation order).
 * Thresholds: measured values (docs/QUANT.md) with a margin; a regression past them fails. */
#include "model/session.h"
#include "quant/int4.h"
#include "tl_test.h"

#include <unistd.h>

#define N_POS 256
#define CHUNK 64
#define N_DEC 48

static const char *models[] = {"tests/data/hf/qwen2-tied-gqa2-hd64", "tests/data/hf/qwen2-untied-gqa1-hd64-bf16",
                               "tests/data/hf/qwen2-gqa7-hd128-f16", "tests/data/hf/llama-gqa2-sharded",
                               "dummy:tiny"};
#define N_MODELS 5

static double kl_div(const float *a, const float *b, int n, double *pa, double *pb) {
    double ma = a[0], mb = b[0], sa = 0, sb = 0, kl = 0;
    for (int i = 1; i < n; i++) ma = a[i] > ma ? a[i] : ma, mb = b[i] > mb ? b[i] : mb;
    for (int i = 0; i < n; i++) sa += (pa[i] = exp((double)a[i] - ma)), sb += (pb[i] = exp((double)b[i] - mb));
    for (int i = 0; i < n; i++) {
        double p = pa[i] / sa, q = pb[i] / sb;
        if (p > 0) kl += p * (log(p) - log(q > 1e-300 ? q : 1e-300));
    }
    return kl;
}
static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

typedef struct {
    int agree, n;
    double kl;
} stat;

/* tl_q4_save_hf round trip: the written folder loads back to the same logits (bit for bit). */
static void check_save(tl_backend *be, const char *src, int group) {
    tl_error e = {{0}};
    tl_load_opts o = {.quiet = true};
    tl_model *m = tl_model_load(src, &o, &e);
    CHECK(m && tl_model_quantize(m, group, false, &e) == 0, "%s", e.msg);
    if (!m) return;
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/tl_test_int4_save_%d", (int)getpid());
    CHECK(tl_q4_save_hf(m, src, dir, &e) == 0, "%s", e.msg);
    CHECK(tl_q4_save_hf(m, src, dir, &e) == -1 && strstr(e.msg, "exists"), "second write must refuse: %s", e.msg);
    tl_model *r = tl_model_load(dir, &o, &e);
    CHECK(r != NULL, "reload %s: %s", dir, e.msg);
    if (r) {
        CHECK(r->w.layers[0].w_up.type == TL_Q4 && r->w.layers[0].w_up.group == group);
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = (int32_t)(i * 37 % m->cfg.n_vocab);
        tl_session *a = tl_session_new(m, be, 17, &e), *b = tl_session_new(r, be, 17, &e);
        TL_ASSERT(a && b && tl_session_eval(a, ids, 16, false, &e) == 0 && tl_session_eval(b, ids, 16, false, &e) == 0);
        CHECK(!memcmp(tl_session_logits(a, -1), tl_session_logits(b, -1), sizeof(float) * (size_t)m->cfg.n_vocab),
              "reloaded INT4 folder gives different logits");
        tl_session_free(a), tl_session_free(b);
        tl_model_free(r);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    tl_model_free(m);
}

int main(void) {
    tl_error e = {{0}};
    tl_backend *be = tl_backend_cpu_new(2);
    check_save(be, "tests/data/hf/qwen2-gqa7-hd128-f16", 32);
    check_save(be, "tests/data/hf/qwen2-untied-gqa1-hd64-bf16", 64);
    const int groups[3] = {32, 64, 128};
    stat tot[3] = {{0}}, dec[3] = {{0}};
    for (int mi = 0; mi < N_MODELS; mi++) {
        tl_load_opts o = {.quiet = true, .dummy_dtype = TL_BF16};
        tl_model *mf = tl_model_load(models[mi], &o, &e);
        CHECK(mf != NULL, "%s: %s", models[mi], e.msg);
        if (!mf) continue;
        int V = mf->cfg.n_vocab;
        int32_t ids[N_POS];
        unsigned long long rng = 99 + (unsigned long long)mi;
        for (int i = 0; i < N_POS; i++) ids[i] = (int32_t)(tl_t_rng(&rng) % (unsigned)V);
        float *lf = malloc(sizeof(float) * (size_t)CHUNK * V), *lq = malloc(sizeof(float) * (size_t)CHUNK * V);
        double *pa = malloc(sizeof(double) * V), *pb = malloc(sizeof(double) * V);
        for (int gi = 0; gi < 3; gi++) {
            if (mf->cfg.n_embd % groups[gi]) continue; /* dummy:tiny is 64 wide: nothing to quantize at G=128 */
            tl_model *mq = tl_model_load(models[mi], &o, &e);
            CHECK(mq && tl_model_quantize(mq, groups[gi], false, &e) == 0, "%s G=%d: %s", models[mi], groups[gi], e.msg);
            if (!mq) continue;
            CHECK(mq->w.layers[0].wq.type == TL_Q4 && mq->w.tok_embd.type == TL_Q4);
            tl_session *sf = tl_session_new(mf, be, N_POS + 1, &e), *sq = tl_session_new(mq, be, N_POS + 1, &e);
            tl_session *sd = tl_session_new(mq, be, N_DEC + 1, &e);
            TL_ASSERT(sf && sq && sd);
            stat s = {0}, d = {0};
            for (int c0 = 0; c0 < N_POS; c0 += CHUNK) {
                TL_ASSERT(tl_session_eval(sf, ids + c0, CHUNK, true, &e) == 0);
                TL_ASSERT(tl_session_eval(sq, ids + c0, CHUNK, true, &e) == 0);
                for (int i = 0; i < CHUNK; i++) {
                    memcpy(lf + (size_t)i * V, tl_session_logits(sf, i), sizeof(float) * V);
                    memcpy(lq + (size_t)i * V, tl_session_logits(sq, i), sizeof(float) * V);
                }
                for (int i = 0; i < CHUNK; i++) {
                    const float *a = lf + (size_t)i * V, *b = lq + (size_t)i * V;
                    s.agree += argmax(a, V) == argmax(b, V);
                    s.kl += kl_div(a, b, V, pa, pb);
                    s.n++;
                    int p = c0 + i;
                    if (p < N_DEC) { /* int8-activation decode vs the INT4 model's own prefill */
                        TL_ASSERT(tl_session_eval(sd, ids + p, 1, false, &e) == 0);
                        const float *dl = tl_session_logits(sd, -1);
                        d.agree += argmax(dl, V) == argmax(b, V);
                        d.kl += kl_div(b, dl, V, pa, pb);
                        d.n++;
                    }
                }
            }
            printf("%-44s G=%-3d top-1 %.4f  KL mean %.6f | decode(i8) vs prefill: top-1 %.4f KL %.2e\n", models[mi],
                   groups[gi], (double)s.agree / s.n, s.kl / s.n, (double)d.agree / d.n, d.kl / d.n);
            tot[gi].agree += s.agree, tot[gi].n += s.n, tot[gi].kl += s.kl;
            dec[gi].agree += d.agree, dec[gi].n += d.n, dec[gi].kl += d.kl;
            tl_session_free(sf), tl_session_free(sq), tl_session_free(sd);
            tl_model_free(mq);
        }
        free(lf), free(lq), free(pa), free(pb);
        tl_model_free(mf);
    }
    /* thresholds: min top-1, max mean KL (int4 vs full); decode path: min top-1, max KL */
    /* measured 2026-11-26 (AVX2, 2 threads, 256 positions per model), prefill on fp32 panels:
     * G=32 top-1 0.590 KL 0.0354; G=64 0.542, 0.0451; G=128 0.462, 0.0709; int8 decode vs that
     * prefill: top-1 >= 0.92, KL <= 1.3e-3. Since prefill also runs int8 activations (h-cpu4):
     * G=32 0.580, 0.0360; G=64 0.538, 0.0457; G=128 0.462, 0.0718; decode vs prefill: top-1 1.0,
     * KL 0 (measured exactly 0; the bound leaves room for attention's summation order).
     * Random-init models have flat next-token distributions, so top-1 is noisy; KL is the signal. */
    const double min_top1[3] = {0.52, 0.49, 0.41}, max_kl[3] = {0.045, 0.057, 0.09}, dec_top1 = 0.97, dec_kl = 1e-4;
    for (int gi = 0; gi < 3; gi++) {
        double t1 = (double)tot[gi].agree / tot[gi].n, kl = tot[gi].kl / tot[gi].n;
        double d1 = (double)dec[gi].agree / dec[gi].n, dk = dec[gi].kl / dec[gi].n;
        printf("ALL G=%-3d: %d positions: top-1 %.4f KL mean %.6f | decode(i8): %d positions top-1 %.4f KL %.2e\n",
               groups[gi], tot[gi].n, t1, kl, dec[gi].n, d1, dk);
        CHECK(t1 >= min_top1[gi], "G=%d top-1 %.4f < %.3f", groups[gi], t1, min_top1[gi]);
        CHECK(kl <= max_kl[gi], "G=%d KL %.6f > %.5f", groups[gi], kl, max_kl[gi]);
        CHECK(d1 >= dec_top1 && dk <= dec_kl, "G=%d decode path top-1 %.4f KL %.2e", groups[gi], d1, dk);
    }
    be->free(be);
    TL_TEST_END();
}

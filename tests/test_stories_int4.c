/* test_stories_int4.c: INT4 quality on a real trained model. stories260K is loaded in F32 and
 * with --quant int4 (group 64 and 32; its ffn_down, 172 wide, stays F32); a 256-token text is
 * sampled from the F32 model (temperature 1, fixed seed), and both models score it: top-1
 * agreement of the next-token argmax and KL(P_f32 || P_int4) per position. Thresholds are the
 * measured values (docs/GGUF.md) with a margin. */
#include "model/session.h"
#include "tl_test.h"

#define MODEL "assets/stories260K/stories260K.gguf"
#define N_TEXT 256

static void softmax(const float *x, double *p, int n) {
    double mx = x[0], s = 0;
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += (p[i] = exp((double)x[i] - mx));
    for (int i = 0; i < n; i++) p[i] /= s;
}
static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Samples N_TEXT tokens after BOS from m at temperature 1. */
static void sample_text(tl_model *m, tl_backend *be, int32_t *ids) {
    tl_error e = {{0}};
    tl_session *s = tl_session_new(m, be, N_TEXT + 2, &e);
    TL_ASSERT(s);
    int V = m->cfg.n_vocab;
    double *p = malloc(sizeof(double) * (size_t)V);
    unsigned long long rng = 2024;
    ids[0] = m->cfg.bos_id;
    for (int i = 0; i < N_TEXT; i++) {
        TL_ASSERT(tl_session_eval(s, ids + i, 1, false, &e) == 0);
        softmax(tl_session_logits(s, -1), p, V);
        double u = (double)(tl_t_rng(&rng) >> 11) / 9007199254740992.0, c = 0;
        int t = V - 1;
        for (int k = 0; k < V; k++)
            if ((c += p[k]) > u) {
                t = k;
                break;
            }
        ids[i + 1] = t;
    }
    free(p);
    tl_session_free(s);
}

/* All-position logits of ids[0..n) into out [n, V]. */
static void score(tl_model *m, tl_backend *be, const int32_t *ids, int n, float *out) {
    tl_error e = {{0}};
    tl_session *s = tl_session_new(m, be, n + 1, &e);
    TL_ASSERT(s && tl_session_eval(s, ids, n, true, &e) == 0);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * m->cfg.n_vocab, tl_session_logits(s, i), sizeof(float) * (size_t)m->cfg.n_vocab);
    tl_session_free(s);
}

int main(void) {
    tl_error e = {{0}};
    tl_model *mf = tl_model_load(tl_shared(MODEL), NULL, &e);
    CHECK(mf != NULL, "%s", e.msg);
    if (!mf) TL_TEST_END();
    tl_backend *be = tl_backend_cpu_new(1);
    int V = mf->cfg.n_vocab, n = N_TEXT + 1;
    int32_t ids[N_TEXT + 1];
    sample_text(mf, be, ids);
    float *lf = malloc(sizeof(float) * (size_t)n * V), *lq = malloc(sizeof(float) * (size_t)n * V);
    double *pf = malloc(sizeof(double) * V), *pq = malloc(sizeof(double) * V);
    score(mf, be, ids, n, lf);
    /* group, min top-1 agreement, max mean KL (nats). Measured (scalar and AVX2 matmul, 2026-11-26):
     * group 64: top-1 0.833, KL mean 0.109 (max 0.60); group 32: top-1 0.809, KL mean 0.106 (max 3.8).
     * A 64-wide model is hard on 4 bits (weights' rel RMS error 7-10%); group 32 has the smaller
     * weight error in every tensor, its lower top-1 here is within the noise of 257 positions. */
    const struct { int group; double min_top1, max_kl; } cfgs[] = {{64, 0.78, 0.15}, {32, 0.76, 0.15}};
    for (int c = 0; c < 2; c++) {
        tl_load_opts o = {.quant_bits = 4, .group_size = cfgs[c].group, .quiet = true};
        tl_model *mq = tl_model_load(tl_shared(MODEL), &o, &e);
        CHECK(mq != NULL, "%s", e.msg);
        if (!mq) continue;
        CHECK(mq->w.layers[0].wq.type == TL_Q4 && mq->w.tok_embd.type == TL_Q4 && mq->w.layers[0].wq.group == cfgs[c].group);
        score(mq, be, ids, n, lq);
        int agree = 0;
        double kl_sum = 0, kl_max = 0;
        for (int i = 0; i < n; i++) {
            const float *a = lf + (size_t)i * V, *b = lq + (size_t)i * V;
            agree += argmax(a, V) == argmax(b, V);
            softmax(a, pf, V), softmax(b, pq, V);
            double kl = 0;
            for (int k = 0; k < V; k++)
                if (pf[k] > 0) kl += pf[k] * (log(pf[k]) - log(pq[k] > 1e-300 ? pq[k] : 1e-300));
            kl_sum += kl;
            kl_max = kl > kl_max ? kl : kl_max;
        }
        double top1 = (double)agree / n, kl_mean = kl_sum / n;
        printf("int4 group %d: top-1 agreement %.4f (%d/%d), KL mean %.5f max %.5f nats over %d positions\n",
               cfgs[c].group, top1, agree, n, kl_mean, kl_max, n);
        CHECK(top1 >= cfgs[c].min_top1, "group %d: top-1 agreement %.4f < %.2f", cfgs[c].group, top1, cfgs[c].min_top1);
        CHECK(kl_mean <= cfgs[c].max_kl, "group %d: mean KL %.5f > %.3f", cfgs[c].group, kl_mean, cfgs[c].max_kl);
        tl_model_free(mq);
    }
    free(lf), free(lq), free(pf), free(pq);
    be->free(be);
    tl_model_free(mf);
    TL_TEST_END();
}

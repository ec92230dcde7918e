/* sampler.c: penalties, temperature, top-k / top-p / min-p, seeded draws, logprobs (see sampler.h). */
#include <math.h>

#include "engine/sampler.h"

void tl_sampling_default(tl_sampling *s) {
    memset(s, 0, sizeof *s);
    s->temperature = 0.0f;
    s->top_p = 1.0f;
    s->repetition_penalty = 1.0f;
}

void tl_sampler_init(tl_sampler *sp, int n_vocab) {
    memset(sp, 0, sizeof *sp);
    sp->n_vocab = n_vocab;
    sp->work = tl_malloc((size_t)n_vocab * sizeof *sp->work);
    sp->probs = tl_malloc((size_t)n_vocab * sizeof *sp->probs);
    sp->cand = tl_malloc((size_t)n_vocab * sizeof *sp->cand);
    sp->count = tl_calloc((size_t)n_vocab, sizeof *sp->count);
    sp->mark = tl_calloc((size_t)n_vocab, sizeof *sp->mark);
}

void tl_sampler_free(tl_sampler *sp) {
    free(sp->work);
    free(sp->probs);
    free(sp->cand);
    free(sp->count);
    free(sp->mark);
    memset(sp, 0, sizeof *sp);
}

uint64_t tl_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double tl_rng_uniform(uint64_t *state) { return (double)(tl_rng_next(state) >> 11) * (1.0 / 9007199254740992.0); }

/* Candidate order: higher probability first, lower id first on ties (deterministic). */
static int cand_before(const tl_cand *a, const tl_cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }
static int cand_cmp(const void *x, const void *y) {
    const tl_cand *a = x, *b = y;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Moves the k first candidates (in cand order) to c[0..k), unordered (quickselect). */
static void select_top(tl_cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        tl_cand piv = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &piv)) i++;
            while (cand_before(&piv, &c[j])) j--;
            if (i <= j) {
                tl_cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static void apply_penalties(tl_sampler *sp, const tl_sampling *s, const int32_t *hist, int n_hist, int n_prompt) {
    float *w = sp->work;
    int nv = sp->n_vocab;
    if (s->repetition_penalty != 1.0f && s->repetition_penalty > 0.0f) {
        uint32_t st = ++sp->stamp;
        if (st == 0) { /* wrapped: clear the marks once every 2^32 calls */
            memset(sp->mark, 0, (size_t)nv * sizeof *sp->mark);
            st = sp->stamp = 1;
        }
        for (int i = 0; i < n_hist; i++) {
            int t = hist[i];
            if (t < 0 || t >= nv || sp->mark[t] == st) continue;
            sp->mark[t] = st;
            w[t] = w[t] > 0 ? w[t] / s->repetition_penalty : w[t] * s->repetition_penalty;
        }
    }
    if (s->presence_penalty != 0.0f || s->frequency_penalty != 0.0f) {
        for (int i = n_prompt; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < nv) sp->count[hist[i]]++;
        for (int i = n_prompt; i < n_hist; i++) {
            int t = hist[i];
            if (t < 0 || t >= nv || sp->count[t] == 0) continue;
            w[t] -= (float)sp->count[t] * s->frequency_penalty + s->presence_penalty;
            sp->count[t] = 0; /* applied once per distinct token; leaves count all-zero */
        }
    }
}

int tl_sampler_pen_list(tl_sampler *sp, const tl_sampling *s, const int32_t *hist, int n_hist, int n_prompt,
                        int32_t *out) {
    const int nv = sp->n_vocab;
    const bool rep = s->repetition_penalty != 1.0f && s->repetition_penalty > 0.0f;
    const int from = rep ? 0 : TL_MAX(0, TL_MIN(n_prompt, n_hist));
    for (int i = TL_MAX(n_prompt, 0); i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < nv) sp->count[hist[i]]++;
    uint32_t st = ++sp->stamp;
    if (st == 0) { /* wrapped: as apply_penalties */
        memset(sp->mark, 0, (size_t)nv * sizeof *sp->mark);
        st = sp->stamp = 1;
    }
    int n = 0;
    for (int i = from; i < n_hist; i++) {
        const int t = hist[i];
        if (t < 0 || t >= nv || sp->mark[t] == st) continue;
        sp->mark[t] = st;
        out[2 * n] = t;
        out[2 * n + 1] = sp->count[t];
        n++;
    }
    for (int i = TL_MAX(n_prompt, 0); i < n_hist; i++) /* leaves count all-zero */
        if (hist[i] >= 0 && hist[i] < nv) sp->count[hist[i]] = 0;
    return n;
}

static void fill_logprobs(const tl_sampling *s, const float *logits, int nv, int32_t tok, tl_token_event *ev) {
    float mx = -INFINITY;
    for (int i = 0; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < nv; i++) sum += expf(logits[i] - mx); /* fp32 terms, fp64 sum */
    double lse = mx + log(sum);
    ev->logprob = (float)(logits[tok] - lse);
    int n = TL_MIN(TL_MIN(s->n_logprobs, TL_MAX_LOGPROBS), nv);
    ev->n_top = n > 0 ? n : 0;
    if (n <= 0) return;
    int have = 0; /* insertion into a sorted list of n: logit desc, id asc */
    for (int i = 0; i < nv; i++) {
        float v = logits[i];
        if (have == n && !(v > ev->top_logprobs[n - 1])) continue;
        int j = have < n ? have++ : n - 1;
        while (j > 0 && v > ev->top_logprobs[j - 1]) {
            ev->top_logprobs[j] = ev->top_logprobs[j - 1];
            ev->top_ids[j] = ev->top_ids[j - 1];
            j--;
        }
        ev->top_logprobs[j] = v;
        ev->top_ids[j] = i;
    }
    for (int j = 0; j < n; j++) ev->top_logprobs[j] = (float)(ev->top_logprobs[j] - lse);
}

int32_t tl_sampler_sample(tl_sampler *sp, const tl_sampling *s, const float *logits, const int32_t *hist, int n_hist,
                          int n_prompt, uint64_t *rng, tl_token_event *ev) {
    int nv = sp->n_vocab;
    bool penalties = (s->repetition_penalty != 1.0f && s->repetition_penalty > 0.0f) || s->presence_penalty != 0.0f ||
                     s->frequency_penalty != 0.0f;
    const float *w = logits; /* read only below; penalties work on a copy */
    if (penalties) {
        memcpy(sp->work, logits, (size_t)nv * sizeof *sp->work);
        apply_penalties(sp, s, hist, n_hist, n_prompt);
        w = sp->work;
    }
    int32_t tok = 0;
    if (!(s->temperature > 0.0f)) { /* greedy: first maximum */
        for (int i = 1; i < nv; i++)
            if (w[i] > w[tok]) tok = i;
    } else {
        float inv_t = 1.0f / s->temperature, mx = -INFINITY;
        for (int i = 0; i < nv; i++) mx = w[i] > mx ? w[i] : mx;
        tl_cand *c = sp->cand;
        double total = 0;
        for (int i = 0; i < nv; i++) {
            c[i].p = expf((w[i] - mx) * inv_t);
            c[i].id = i;
            total += c[i].p;
        }
        int n = nv;
        bool top_p = s->top_p > 0.0f && s->top_p < 1.0f;
        if (s->top_k > 0 && s->top_k < n) { /* top-k: keep the k most likely */
            select_top(c, n, s->top_k);
            n = s->top_k;
            qsort(c, (size_t)n, sizeof *c, cand_cmp);
            total = 0;
            for (int i = 0; i < n; i++) total += c[i].p;
        } else if (top_p) { /* sort only as much as needed: the kept set is a prefix of the sorted order */
            int m = TL_MIN(n, 1024);
            if (m < n) {
                select_top(c, n, m);
                double head = 0;
                for (int i = 0; i < m; i++) head += c[i].p;
                if (head < (double)s->top_p * total) m = n; /* the head is not enough: sort everything */
            }
            qsort(c, (size_t)m, sizeof *c, cand_cmp);
            n = m;
        }
        if (top_p) { /* keep token i while the mass before it is below top_p */
            double cum = 0, lim = (double)s->top_p * total;
            int keep = 0;
            while (keep < n && (keep == 0 || cum < lim)) cum += c[keep++].p;
            n = keep;
        }
        if (s->min_p > 0.0f) { /* keep p >= min_p * p_max; p_max is exp(0) = 1 before normalization */
            float thr = s->min_p * 1.0f;
            int keep = 0;
            for (int i = 0; i < n; i++)
                if (c[i].p >= thr) c[keep++] = c[i];
            n = keep > 0 ? keep : 1; /* never empty: the maximum has p == 1 >= thr when min_p <= 1 */
        }
        double kept = 0;
        for (int i = 0; i < n; i++) kept += c[i].p;
        double u = tl_rng_uniform(rng) * kept, cum = 0;
        tok = c[n - 1].id;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (u < cum) {
                tok = c[i].id;
                break;
            }
        }
    }
    if (ev && s->n_logprobs > 0) fill_logprobs(s, logits, nv, tok, ev);
    return tok;
}

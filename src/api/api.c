/* api.c: the public API (include/tinyllm.h) over model + backend + session + sampler + detok. */
#include "tinyllm.h"

#include "backend/backend.h"
#include "engine/sampler.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

struct tinyllm {
    tl_model *m;
    tl_backend *be;
    tl_session *s;
    tl_sampler sp;
    int32_t *hist;   /* tokens held in the session's KV cache, [cap] */
    int n_hist, cap;
    tl_error err;
};

void tinyllm_params_default(tinyllm_params *p) {
    memset(p, 0, sizeof *p);
    p->backend = "auto";
}

tinyllm *tinyllm_load(const tinyllm_params *p, char *err, size_t errlen) {
    tl_error e = {{0}};
    tl_load_opts lo = {.quant_bits = p->quant_bits, .group_size = p->group_size, .tokenizer_path = p->tokenizer,
                       .quiet = false};
    tinyllm *t = tl_calloc(1, sizeof *t);
    t->m = tl_model_load(p->model, &lo, &e);
    if (!t->m) goto fail;
    t->be = tl_backend_new(p->backend ? p->backend : "auto", p->n_threads, p->gpu_mem_util > 0 ? p->gpu_mem_util : 0.9f, &e);
    if (!t->be || t->be->prepare(t->be, t->m, &e)) goto fail;
    t->cap = p->n_ctx > 0 ? p->n_ctx : 4096;
    if (t->cap > t->m->cfg.n_ctx) t->cap = t->m->cfg.n_ctx;
    t->s = tl_session_new(t->m, t->be, t->cap, &e);
    if (!t->s) goto fail;
    t->hist = tl_malloc((size_t)t->cap * sizeof(int32_t));
    tl_sampler_init(&t->sp, t->m->cfg.n_vocab);
    return t;
fail:
    if (err && errlen) snprintf(err, errlen, "%s", e.msg);
    if (t->be) t->be->free(t->be);
    tl_model_free(t->m);
    free(t);
    return NULL;
}

void tinyllm_free(tinyllm *t) {
    if (!t) return;
    tl_sampler_free(&t->sp);
    tl_session_free(t->s);
    t->be->free(t->be);
    tl_model_free(t->m);
    free(t->hist);
    free(t);
}

const char *tinyllm_model_name(const tinyllm *t) { return t->m->name; }
int tinyllm_has_tokenizer(const tinyllm *t) { return t->m->tok != NULL; }
int tinyllm_n_vocab(const tinyllm *t) { return t->m->cfg.n_vocab; }
const char *tinyllm_last_error(const tinyllm *t) { return t->err.msg; }

char *tinyllm_chat_prompt(tinyllm *t, const char *const *roles, const char *const *contents, int n) {
    if (!t->m->tok) return NULL;
    tl_chat_msg *msgs = tl_calloc((size_t)n + 1, sizeof *msgs);
    for (int i = 0; i < n; i++) msgs[i] = (tl_chat_msg){roles[i], contents[i]};
    char *s = tl_chat_render(t->m->tok, msgs, n, true);
    free(msgs);
    return s;
}

int tinyllm_tokenize(tinyllm *t, const char *text, int chat, int32_t **ids) {
    if (!t->m->tok) return tl_errf(&t->err, "this model has no tokenizer (pass --tokenizer, or token ids)");
    char *prompt = NULL;
    if (chat) {
        const char *role = "user";
        prompt = tinyllm_chat_prompt(t, &role, &text, 1);
    }
    const char *src = prompt ? prompt : text;
    int32_t *raw = NULL;
    int n = tl_tokenizer_encode(t->m->tok, src, strlen(src), true, &raw, &t->err);
    free(prompt);
    if (n < 0) return -1;
    if (!chat && tl_tokenizer_add_bos(t->m->tok) && tl_tokenizer_bos(t->m->tok) >= 0) {
        *ids = tl_malloc(((size_t)n + 1) * sizeof(int32_t));
        (*ids)[0] = tl_tokenizer_bos(t->m->tok);
        memcpy(*ids + 1, raw, (size_t)n * sizeof(int32_t));
        free(raw);
        return n + 1;
    }
    *ids = raw;
    return n;
}

void tinyllm_sampling_default(tinyllm_sampling *s) {
    memset(s, 0, sizeof *s);
    s->top_p = 1;
    s->repetition_penalty = 1;
    s->max_tokens = 256;
}

int tinyllm_generate(tinyllm *t, const int32_t *prompt, int n_prompt, const tinyllm_sampling *s, tinyllm_token_fn fn,
                     void *user, tinyllm_stats *stats) {
    tinyllm_stats st = {.n_prompt = n_prompt};
    const tl_config *c = &t->m->cfg;
    if (n_prompt <= 0) return tl_errf(&t->err, "empty prompt");
    if (n_prompt >= t->cap)
        return tl_errf(&t->err, "prompt of %d tokens does not fit the context of %d tokens", n_prompt, t->cap);
    /* reuse the KV cache of the longest common prefix (keep at least one token to evaluate) */
    int keep = 0;
    while (keep < t->n_hist && keep < n_prompt - 1 && t->hist[keep] == prompt[keep]) keep++;
    st.n_reused = keep;
    tl_session_reset(t->s);
    if (keep) tl_session_eval_reuse(t->s, keep);
    memcpy(t->hist, prompt, (size_t)n_prompt * sizeof(int32_t));
    t->n_hist = n_prompt;
    tl_sampling sp;
    tl_sampling_default(&sp);
    sp.temperature = s->temperature;
    sp.top_k = s->top_k;
    sp.top_p = s->top_p;
    sp.min_p = s->min_p;
    sp.repetition_penalty = s->repetition_penalty;
    sp.presence_penalty = s->presence_penalty;
    sp.frequency_penalty = s->frequency_penalty;
    sp.seed = s->seed;
    uint64_t rng = s->seed;
    double t0 = tl_now();
    if (tl_session_eval(t->s, prompt + keep, n_prompt - keep, false, &t->err)) return -1;
    st.prefill_s = tl_now() - t0;
    tl_detok *dt = t->m->tok ? tl_detok_new(t->m->tok, true) : NULL;
    double t1 = tl_now();
    int n = 0;
    for (;;) {
        int32_t tok = tl_sampler_sample(&t->sp, &sp, tl_session_logits(t->s, -1), t->hist, t->n_hist, n_prompt, &rng, NULL);
        bool eos = false;
        for (int i = 0; i < c->n_eos; i++) eos |= c->eos_ids[i] == tok;
        if (eos && !s->ignore_eos) break;
        n++;
        size_t len = 0;
        const char *text = dt ? tl_detok_push(dt, tok, &len) : "";
        int stop = fn ? fn(tok, text, len, user) : 0;
        if (stop || n >= s->max_tokens || t->n_hist + 1 >= t->cap) break;
        t->hist[t->n_hist++] = tok;
        if (tl_session_eval(t->s, &tok, 1, false, &t->err)) {
            n = -1;
            break;
        }
    }
    if (dt) {
        size_t len = 0;
        const char *rest = tl_detok_flush(dt, &len);
        if (len && fn) fn(-1, rest, len, user);
        tl_detok_free(dt);
    }
    st.decode_s = tl_now() - t1;
    st.n_generated = n < 0 ? 0 : n;
    if (stats) *stats = st;
    return n;
}

/* api.c: the public API (include/tinyllm.h) over model + backend + engine + detok. Generation runs through the
 * same engine as `tinyllm serve` (one sequence): device sampling and pipelined steps on a GPU (7B INT4 on an
 * H100: 334 tok/s with the session loop that copied the logits back and sampled on the host, ~500 through the
 * engine), and the prefix cache keeps a conversation's earlier turns (what the session's common prefix did). */
#include "tinyllm.h"

#include "backend/backend.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

struct tinyllm {
    tl_model *m;
    tl_backend *be;
    tl_engine *en;
    int cap; /* tokens of KV the engine holds (n_ctx) */
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
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_seqs = 1;
    o.kv_dtype = !strcmp(t->be->name, "cuda") ? TL_BF16 : TL_F32; /* as serve and bench */
    o.kv_mem = (size_t)(TL_CDIV(t->cap, o.block_size) + 1) * tl_kv_block_bytes(&t->m->cfg, o.block_size, o.kv_dtype);
    t->en = tl_engine_new(t->m, t->be, &o, &e);
    if (!t->en) goto fail;
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
    tl_engine_free(t->en);
    t->be->free(t->be);
    tl_model_free(t->m);
    free(t);
}

const char *tinyllm_model_name(const tinyllm *t) { return t->m->name; }
int tinyllm_has_tokenizer(const tinyllm *t) { return t->m->tok != NULL; }
int tinyllm_n_vocab(const tinyllm *t) { return t->m->cfg.n_vocab; }
int tinyllm_n_ctx(const tinyllm *t) { return t->cap; }

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

/* One generation's state for the engine's token callback. */
typedef struct gen_ctx {
    tinyllm *t;
    const tinyllm_sampling *s;
    tinyllm_token_fn fn;
    void *user;
    tl_detok *dt;
    int n, n_cached;
    double t0, t_first;
    tl_finish fin;
    char msg[512];
} gen_ctx;

static int on_event(const tl_token_event *ev, void *user) {
    gen_ctx *g = user;
    if (ev->finish != TL_FINISH_NONE) {
        g->fin = ev->finish;
        g->n_cached = ev->n_cached;
        if (ev->error) snprintf(g->msg, sizeof g->msg, "%s", ev->error);
    }
    if (ev->token < 0) return 0;
    const tl_config *c = &g->t->m->cfg;
    if (!g->s->ignore_eos)
        for (int i = 0; i < c->n_eos; i++)
            if (ev->token == c->eos_ids[i]) return 0; /* the end: not part of the text */
    if (g->n++ == 0) g->t_first = tl_now();
    size_t len = 0;
    const char *text = g->dt ? tl_detok_push(g->dt, ev->token, &len) : "";
    return g->fn ? g->fn(ev->token, text, len, g->user) : 0;
}

int tinyllm_generate(tinyllm *t, const int32_t *prompt, int n_prompt, const tinyllm_sampling *s, tinyllm_token_fn fn,
                     void *user, tinyllm_stats *stats) {
    if (n_prompt <= 0) return tl_errf(&t->err, "empty prompt");
    if (n_prompt >= t->cap)
        return tl_errf(&t->err, "prompt of %d tokens does not fit the context of %d tokens", n_prompt, t->cap);
    tl_req_params rp;
    memset(&rp, 0, sizeof rp);
    tl_sampling_default(&rp.s);
    /* (0 or negative top_k / top_p / repetition_penalty: off, as the sampler took them before the engine's checks) */
    rp.s.temperature = s->temperature;
    rp.s.top_k = s->top_k > 0 ? s->top_k : 0;
    rp.s.top_p = s->top_p > 0 ? s->top_p : 1.0f;
    rp.s.min_p = s->min_p;
    rp.s.repetition_penalty = s->repetition_penalty > 0 ? s->repetition_penalty : 1.0f;
    rp.s.presence_penalty = s->presence_penalty;
    rp.s.frequency_penalty = s->frequency_penalty;
    rp.s.seed = s->seed;
    rp.max_tokens = TL_MIN(s->max_tokens > 0 ? s->max_tokens : 256, t->cap - n_prompt); /* the context reserved */
    rp.ignore_eos = s->ignore_eos != 0;
    gen_ctx g = {.t = t, .s = s, .fn = fn, .user = user, .t0 = tl_now()};
    g.dt = t->m->tok ? tl_detok_new(t->m->tok, true) : NULL;
    if (tl_engine_add(t->en, prompt, n_prompt, &rp, on_event, &g, &t->err) < 0) {
        if (g.dt) tl_detok_free(g.dt);
        return -1;
    }
    tl_engine_run_until_idle(t->en);
    const double t_end = tl_now();
    if (g.dt) {
        size_t len = 0;
        const char *rest = tl_detok_flush(g.dt, &len);
        if (len && fn) fn(-1, rest, len, user);
        tl_detok_free(g.dt);
    }
    if (stats) {
        const double tf = g.n ? g.t_first : t_end;
        *stats = (tinyllm_stats){.n_prompt = n_prompt, .n_reused = g.n_cached, .n_generated = g.n,
                                 .prefill_s = tf - g.t0, .decode_s = t_end - tf};
    }
    if (g.fin == TL_FINISH_ERROR) return tl_errf(&t->err, "%s", g.msg[0] ? g.msg : "generation failed");
    return g.n;
}

const char *tinyllm_last_error(const tinyllm *t) { return t->err.msg; }

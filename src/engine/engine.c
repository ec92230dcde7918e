/* engine.c: engine creation, request intake, cancellation, the background stepping thread and stats.
 * The step itself (schedule, forward, sample) is in sched.c. */
#include <math.h>

#include "engine/engine_int.h"

void tl_engine_opts_default(tl_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_batch_tokens = 2048;
    o->max_seqs = 64;
    o->prefill_chunk = 0;
    o->block_size = 16;
    o->kv_dtype = TL_F32;
}

tl_engine *tl_engine_new(tl_model *m, tl_backend *be, const tl_engine_opts *opts, tl_error *e) {
    tl_engine_opts o;
    if (opts) o = *opts;
    else tl_engine_opts_default(&o);
    if (o.max_batch_tokens <= 0) o.max_batch_tokens = 2048;
    if (o.max_seqs <= 0) o.max_seqs = 64;
    if (o.block_size <= 0) o.block_size = 16;
    if (o.prefill_chunk <= 0 || o.prefill_chunk > o.max_batch_tokens) o.prefill_chunk = o.max_batch_tokens;
    if (o.max_seqs > o.max_batch_tokens) o.max_seqs = o.max_batch_tokens; /* one decode token each */
    const tl_config *c = &m->cfg;
    if (c->n_vocab <= 0 || c->n_ctx <= 1) {
        tl_errf(e, "engine: model config has n_vocab %d, n_ctx %d", c->n_vocab, c->n_ctx);
        return NULL;
    }
    if (be->prepare && be->prepare(be, m, e)) return NULL;
    size_t budget = o.kv_mem ? o.kv_mem : be->kv_default_budget(be, m);
    int n_blocks = tl_kv_blocks_for_budget(c, o.block_size, o.kv_dtype, budget);
    if (n_blocks < 1) {
        tl_errf(e, "engine: KV budget of %zu bytes holds no block (one block of %d tokens takes %zu bytes)", budget,
                o.block_size, tl_kv_block_bytes(c, o.block_size, o.kv_dtype));
        return NULL;
    }
    tl_engine *en = tl_calloc(1, sizeof *en);
    en->m = m;
    en->be = be;
    en->o = o;
    en->n_vocab = c->n_vocab;
    en->n_ctx = c->n_ctx;
    en->bs = o.block_size;
    en->max_blocks_per_seq = TL_CDIV(c->n_ctx, o.block_size);
    if (be->kv_alloc(be, &en->kv, c, o.block_size, n_blocks, o.kv_dtype, e)) {
        free(en);
        return NULL;
    }
    en->bm = tl_bm_new(n_blocks, o.block_size, !o.no_prefix_cache);
    tl_sampler_init(&en->sp, c->n_vocab);
    en->running = tl_calloc((size_t)o.max_seqs, sizeof *en->running);
    en->b_tokens = tl_malloc((size_t)o.max_batch_tokens * sizeof(int32_t));
    en->b_pos = tl_malloc((size_t)o.max_batch_tokens * sizeof(int32_t));
    en->b_rows = tl_malloc((size_t)o.max_batch_tokens * sizeof(int32_t));
    en->b_seqs = tl_calloc((size_t)o.max_seqs, sizeof *en->b_seqs);
    en->logits = tl_malloc((size_t)o.max_seqs * c->n_vocab * sizeof(float));
    en->b_rs = tl_calloc((size_t)o.max_seqs, sizeof *en->b_rs);
    en->b_pen_off = tl_calloc((size_t)o.max_seqs, sizeof *en->b_pen_off);
    for (int i = 0; i < 2; i++) {
        tl_step *st = &en->stp[i];
        st->owner = tl_calloc((size_t)o.max_seqs, sizeof *st->owner);
        st->upto = tl_calloc((size_t)o.max_seqs, sizeof *st->upto);
        st->row = tl_calloc((size_t)o.max_seqs, sizeof *st->row);
        st->rng = tl_calloc((size_t)o.max_seqs, sizeof *st->rng);
        st->tok = tl_calloc((size_t)o.max_seqs, sizeof *st->tok);
        st->lp = tl_calloc((size_t)o.max_seqs, sizeof *st->lp);
    }
    const char *hs = getenv("TL_ENGINE_HOST_SAMPLE"), *as = getenv("TL_ENGINE_ASYNC");
    en->device_sample = be->forward_sample != NULL && !(hs && !strcmp(hs, "1"));
    const char *hp = getenv("TL_ENGINE_HOST_PENALTIES");
    en->dev_pen = en->device_sample && be->penalties && !(hp && !strcmp(hp, "1"));
    const char *hl = getenv("TL_ENGINE_HOST_LOGPROBS");
    en->dev_top = en->device_sample && be->collected_top && !(hl && !strcmp(hl, "1"));
    en->dev_pen_top = en->dev_pen && en->dev_top && be->penalties_top;
    en->pipelined = en->device_sample && be->launch && be->collect && be->row_on_device && !(as && !strcmp(as, "0"));
    pthread_mutex_init(&en->mu, NULL);
    pthread_cond_init(&en->cv, NULL);
    en->next_id = 1;
    en->st.kv_blocks_total = en->st.kv_blocks_free = n_blocks;
    tl_info("engine: KV pool %d blocks x %d tokens = %d tokens (%.1f MiB %s); max %d seqs, %d tokens/step, "
            "prefill chunk %d, prefix cache %s",
            n_blocks, o.block_size, n_blocks * o.block_size, (double)en->kv.bytes / (1 << 20),
            tl_dtype_name(o.kv_dtype), o.max_seqs, o.max_batch_tokens, o.prefill_chunk,
            o.no_prefix_cache ? "off" : "on");
    return en;
}

void tl_seq_free(tl_seq *s) {
    if (!s) return;
    free(s->tokens);
    free(s->stop_ids);
    tl_bm_seq_free(&s->bt);
    free(s);
}

void tl_engine_free(tl_engine *en) {
    if (!en) return;
    if (en->thread_on) tl_engine_stop(en);
    tl_engine_drain(en); /* a step in flight holds sequences and writes the KV pool */
    for (tl_seq *s = en->in_head, *n; s; s = n) {
        n = s->next;
        tl_seq_free(s);
    }
    for (int i = 0; i < en->n_running; i++) tl_seq_free(en->running[i]);
    for (int i = 0; i < en->waiting.n; i++) tl_seq_free(tl_deque_get(&en->waiting, i));
    free(en->waiting.a);
    en->be->kv_free(en->be, &en->kv);
    tl_bm_free(en->bm);
    tl_sampler_free(&en->sp);
    free(en->running);
    free(en->b_tokens);
    free(en->b_pos);
    free(en->b_rows);
    free(en->b_seqs);
    free(en->logits);
    free(en->b_rs);
    free(en->b_pen_off);
    free(en->b_pen);
    for (int i = 0; i < 2; i++) {
        tl_step *st = &en->stp[i];
        free(st->owner), free(st->upto), free(st->row), free(st->rng), free(st->tok), free(st->lp);
    }
    free(en->cancel_ids);
    free(en->cancel_local);
    pthread_mutex_destroy(&en->mu);
    pthread_cond_destroy(&en->cv);
    free(en);
}

static int check_sampling(const tl_sampling *s, tl_error *e) {
    if (!(s->temperature >= 0) || isinf(s->temperature))
        return tl_errf(e, "temperature must be a finite number >= 0 (got %g)", s->temperature);
    if (!(s->top_p > 0 && s->top_p <= 1)) return tl_errf(e, "top_p must be in (0, 1] (got %g)", s->top_p);
    if (!(s->min_p >= 0 && s->min_p <= 1)) return tl_errf(e, "min_p must be in [0, 1] (got %g)", s->min_p);
    if (s->top_k < 0) return tl_errf(e, "top_k must be >= 0 (got %d)", s->top_k);
    if (!(s->repetition_penalty > 0) || isinf(s->repetition_penalty))
        return tl_errf(e, "repetition_penalty must be > 0 (got %g)", s->repetition_penalty);
    if (!isfinite(s->presence_penalty) || !isfinite(s->frequency_penalty))
        return tl_errf(e, "presence/frequency penalties must be finite");
    if (s->n_logprobs < 0 || s->n_logprobs > TL_MAX_LOGPROBS)
        return tl_errf(e, "logprobs must be in [0, %d] (got %d)", TL_MAX_LOGPROBS, s->n_logprobs);
    return 0;
}

int64_t tl_engine_add(tl_engine *en, const int32_t *prompt, int n_prompt, const tl_req_params *p, tl_token_cb cb,
                      void *user, tl_error *e) {
    if (!prompt || n_prompt <= 0) return tl_errf(e, "prompt is empty");
    if (n_prompt >= en->n_ctx)
        return tl_errf(e, "prompt of %d tokens is too long for the context of %d tokens", n_prompt, en->n_ctx);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= en->n_vocab)
            return tl_errf(e, "prompt token %d at index %d is outside the vocabulary [0, %d)", prompt[i], i,
                           en->n_vocab);
    tl_req_params def;
    if (!p) {
        memset(&def, 0, sizeof def);
        tl_sampling_default(&def.s);
        p = &def;
    }
    if (check_sampling(&p->s, e)) return -1;
    if (p->n_stop_ids < 0 || (p->n_stop_ids > 0 && !p->stop_ids)) return tl_errf(e, "bad stop token list");
    tl_seq *s = tl_calloc(1, sizeof *s);
    s->p = *p;
    if (p->n_stop_ids > 0) {
        s->stop_ids = tl_malloc((size_t)p->n_stop_ids * sizeof(int32_t));
        memcpy(s->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof(int32_t));
    }
    s->p.stop_ids = s->stop_ids;
    s->cb = cb;
    s->user = user;
    int max_total = p->max_tokens > 0 ? TL_MIN((int64_t)n_prompt + p->max_tokens, en->n_ctx) : en->n_ctx;
    s->cap = max_total + 1;
    s->tokens = tl_malloc((size_t)s->cap * sizeof(int32_t));
    memcpy(s->tokens, prompt, (size_t)n_prompt * sizeof(int32_t));
    s->n_tokens = s->n_prompt = n_prompt;
    tl_bm_seq_init(&s->bt, en->max_blocks_per_seq);
    s->rng = p->s.seed;
    s->t_add = tl_now();
    pthread_mutex_lock(&en->mu);
    if (en->stop_req) {
        pthread_mutex_unlock(&en->mu);
        tl_seq_free(s);
        return tl_errf(e, "engine is stopping");
    }
    if (en->o.max_queue > 0 && en->st.n_waiting + en->n_incoming >= en->o.max_queue) {
        int nw = en->st.n_waiting + en->n_incoming;
        pthread_mutex_unlock(&en->mu);
        tl_seq_free(s);
        return tl_errf(e, "queue full (%d requests waiting, limit %d)", nw, en->o.max_queue);
    }
    s->id = en->next_id++;
    if (en->in_tail) en->in_tail->next = s;
    else en->in_head = s;
    en->in_tail = s;
    en->n_incoming++;
    en->n_live++;
    int64_t id = s->id;
    pthread_cond_signal(&en->cv);
    pthread_mutex_unlock(&en->mu);
    return id;
}

void tl_engine_cancel(tl_engine *en, int64_t id) {
    pthread_mutex_lock(&en->mu);
    if (en->n_cancel == en->cap_cancel) {
        en->cap_cancel = en->cap_cancel ? 2 * en->cap_cancel : 16;
        en->cancel_ids = tl_realloc(en->cancel_ids, (size_t)en->cap_cancel * sizeof *en->cancel_ids);
    }
    en->cancel_ids[en->n_cancel++] = id;
    pthread_cond_signal(&en->cv);
    pthread_mutex_unlock(&en->mu);
}

int tl_engine_step(tl_engine *en) { return tl_engine_step_locked_out(en); }

void tl_engine_run_until_idle(tl_engine *en) {
    while (tl_engine_step(en) > 0) {
    }
}

static void *step_thread(void *arg) {
    tl_engine *en = arg;
    for (;;) {
        pthread_mutex_lock(&en->mu);
        while (!en->stop_req && en->n_live == 0 && en->n_cancel == 0) pthread_cond_wait(&en->cv, &en->mu);
        bool stop = en->stop_req;
        pthread_mutex_unlock(&en->mu);
        if (stop) break;
        tl_engine_step(en);
    }
    return NULL;
}

int tl_engine_start(tl_engine *en, tl_error *e) {
    if (en->thread_on) return tl_errf(e, "engine thread already running");
    en->stop_req = false;
    if (pthread_create(&en->th, NULL, step_thread, en)) return tl_errf(e, "engine: cannot start the stepping thread");
    en->thread_on = true;
    return 0;
}

void tl_engine_stop(tl_engine *en) {
    pthread_mutex_lock(&en->mu);
    en->stop_req = true;
    pthread_cond_broadcast(&en->cv);
    pthread_mutex_unlock(&en->mu);
    if (en->thread_on) pthread_join(en->th, NULL);
    en->thread_on = false;
    tl_engine_drain(en);
    /* cancel what remains (on this thread, now the only one stepping) */
    pthread_mutex_lock(&en->mu);
    tl_seq *in = en->in_head;
    en->in_head = en->in_tail = NULL;
    en->n_incoming = 0;
    pthread_mutex_unlock(&en->mu);
    for (tl_seq *s = in, *n; s; s = n) {
        n = s->next;
        tl_deque_push_back(&en->waiting, s);
    }
    while (en->n_running > 0) tl_engine_finish(en, en->running[--en->n_running], TL_FINISH_CANCELLED, NULL);
    for (tl_seq *s; (s = tl_deque_pop_front(&en->waiting));) tl_engine_finish(en, s, TL_FINISH_CANCELLED, NULL);
    tl_engine_publish(en);
    pthread_mutex_lock(&en->mu);
    en->stop_req = false; /* the engine may be stepped or started again */
    pthread_mutex_unlock(&en->mu);
}

void tl_engine_stats_get(tl_engine *en, tl_engine_stats *s) {
    pthread_mutex_lock(&en->mu);
    *s = en->st;
    s->n_waiting += en->n_incoming;
    pthread_mutex_unlock(&en->mu);
}

const tl_model *tl_engine_model(const tl_engine *en) { return en->m; }

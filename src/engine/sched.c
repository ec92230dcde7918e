/* sched.c: one engine step.
 *   1. intake: requests added and cancels asked for since the last step (under mu, briefly)
 *   2. schedule within max_batch_tokens / max_seqs: running decodes (oldest first), then running
 *      prefills, then admissions from the waiting queue (prefix-cache hit first, then a chunk of at
 *      most prefill_chunk tokens). When blocks run out, the newest running sequence not yet scheduled
 *      this step is preempted (blocks released, back to the front of the queue, recomputed later).
 *   3. one forward over the flat batch; logits only for sequences whose last token was computed
 *   4. per sequence: register newly full blocks in the prefix cache, sample, emit, finish.
 * A sequence is tokens[0..n_tokens) (prompt then generated); K/V exist for positions < n_computed.
 * Each step computes tokens[n_computed .. n_computed + k); when that reaches n_tokens the next token
 * is sampled. Prefill, decode and recompute after preemption are the same operation.
 *
 * Pipelined (a backend with launch / collect, backend.h): step t + 1 is scheduled and launched before step t
 * is collected, so the device never waits for the host between steps. A row of step t that the backend
 * surely samples on the device leaves a placeholder TL_TOKEN_PREV(row) at the end of its sequence (n_pending),
 * which step t + 1 may take as its input token (the backend resolves it on the device); collecting step t
 * replaces it by the token, then emits and finishes as above. Hence: n_computed counts the launched steps'
 * tokens; a sequence whose pending token will surely be its last (max_tokens, context) is not scheduled again;
 * one that finishes while a later step holds it is retired when that step is collected (its extra token is
 * dropped); only confirmed tokens enter the prefix cache; no sequence is preempted while a step is in flight
 * (the step is collected first when the pool is short). Steps with rows sampled on the host (penalties or top-n
 * logprobs on a backend without them, both together without be->penalties_top, rows the device may not sample)
 * are collected right after their launch. */
#include "engine/engine_int.h"

/* ---- waiting deque (ring buffer, amortized growth) ---- */
static void deque_grow(tl_seq_deque *d) {
    int cap = d->cap ? 2 * d->cap : 64;
    tl_seq **a = tl_malloc((size_t)cap * sizeof *a);
    for (int i = 0; i < d->n; i++) a[i] = d->a[(d->head + i) % d->cap];
    free(d->a);
    d->a = a;
    d->cap = cap;
    d->head = 0;
}

void tl_deque_push_back(tl_seq_deque *d, tl_seq *s) {
    if (d->n == d->cap) deque_grow(d);
    d->a[(d->head + d->n++) % d->cap] = s;
}

void tl_deque_push_front(tl_seq_deque *d, tl_seq *s) {
    if (d->n == d->cap) deque_grow(d);
    d->head = (d->head + d->cap - 1) % d->cap;
    d->a[d->head] = s;
    d->n++;
}

tl_seq *tl_deque_pop_front(tl_seq_deque *d) {
    if (d->n == 0) return NULL;
    tl_seq *s = d->a[d->head];
    d->head = (d->head + 1) % d->cap;
    d->n--;
    return s;
}

tl_seq *tl_deque_get(const tl_seq_deque *d, int i) { return d->a[(d->head + i) % d->cap]; }

void tl_deque_remove(tl_seq_deque *d, int i) {
    for (int j = i; j + 1 < d->n; j++) d->a[(d->head + j) % d->cap] = d->a[(d->head + j + 1) % d->cap];
    d->n--;
}

/* ---- events and finishing ---- */
static int emit(tl_seq *s, tl_token_event *ev, int32_t tok, tl_finish fin, const char *err) {
    ev->req_id = s->id;
    ev->token = tok;
    ev->finish = fin;
    ev->n_prompt = s->n_prompt;
    ev->n_generated = s->n_generated;
    ev->n_cached = s->n_cached;
    ev->t_first_token = s->t_first;
    ev->error = err;
    return s->cb ? s->cb(ev, s->user) : 0;
}

static void retire(tl_engine *en, tl_seq *s) {
    tl_bm_deallocate(en->bm, &s->bt);
    tl_seq_free(s);
    pthread_mutex_lock(&en->mu);
    en->n_live--;
    pthread_mutex_unlock(&en->mu);
}

void tl_engine_finish(tl_engine *en, tl_seq *s, tl_finish why, const char *msg) {
    tl_token_event ev;
    memset(&ev, 0, sizeof ev);
    emit(s, &ev, -1, why, msg);
    if (s->inflight) s->done = s->zombie = true; /* a launched step holds it: retired when that step is collected */
    else retire(en, s);
}

static void running_remove(tl_engine *en, int i) {
    memmove(en->running + i, en->running + i + 1, (size_t)(en->n_running - i - 1) * sizeof *en->running);
    en->n_running--;
}

static void preempt(tl_engine *en, int i) {
    tl_seq *s = en->running[i];
    running_remove(en, i);
    tl_bm_deallocate(en->bm, &s->bt);
    s->n_computed = 0;
    s->sched_n = 0;
    tl_deque_push_front(&en->waiting, s);
    en->n_preempted++;
}

static void fail_too_big(tl_engine *en, tl_seq *s, int n_tokens) {
    char msg[256];
    int nb = tl_bm_num_blocks(en->bm);
    snprintf(msg, sizeof msg,
             "request needs KV cache for %d tokens but the pool holds %d tokens (%d blocks of %d); "
             "give the engine more KV memory (--kv-cache-mem) or lower max_tokens",
             n_tokens, nb * en->bs, nb, en->bs);
    tl_engine_finish(en, s, TL_FINISH_ERROR, msg);
}

/* ---- 1. intake ---- */
static void intake(tl_engine *en) {
    pthread_mutex_lock(&en->mu);
    tl_seq *in = en->in_head;
    en->in_head = en->in_tail = NULL;
    en->n_incoming = 0;
    int nc = en->n_cancel;
    if (nc) {
        en->cancel_local = tl_realloc(en->cancel_local, (size_t)en->cap_cancel * sizeof *en->cancel_local);
        memcpy(en->cancel_local, en->cancel_ids, (size_t)nc * sizeof *en->cancel_ids);
        en->n_cancel = 0;
    }
    pthread_mutex_unlock(&en->mu);
    for (tl_seq *s = in, *n; s; s = n) {
        n = s->next;
        s->next = NULL;
        tl_deque_push_back(&en->waiting, s);
    }
    for (int c = 0; c < nc; c++) {
        int64_t id = en->cancel_local[c];
        for (int i = 0; i < en->n_running; i++)
            if (en->running[i]->id == id) {
                tl_seq *s = en->running[i];
                running_remove(en, i);
                tl_engine_finish(en, s, TL_FINISH_CANCELLED, NULL);
                break;
            }
        for (int i = 0; i < en->waiting.n; i++)
            if (tl_deque_get(&en->waiting, i)->id == id) {
                tl_seq *s = tl_deque_get(&en->waiting, i);
                tl_deque_remove(&en->waiting, i);
                tl_engine_finish(en, s, TL_FINISH_CANCELLED, NULL);
                break;
            }
    }
}

/* ---- 2. schedule ---- */
/* Newest running sequence not scheduled this step, other than `self`; -1 if none. */
static int pick_victim(const tl_engine *en, const tl_seq *self) {
    for (int i = en->n_running - 1; i >= 0; i--)
        if (en->running[i] != self && en->running[i]->sched_n == 0) return i;
    return -1;
}

/* Whether the token sampled by a launched step is surely the sequence's last (max_tokens, context): then it
 * is not scheduled again. */
static bool last_is_pending(const tl_engine *en, const tl_seq *s) {
    return s->n_pending > 0 && ((s->p.max_tokens > 0 && s->n_generated + s->n_pending >= s->p.max_tokens) ||
                                s->n_tokens >= en->n_ctx);
}

/* no_preempt (a step in flight): a sequence that finds no block waits for the next step instead of taking
 * another's blocks (the caller made sure every decode finds one) */
static int schedule(tl_engine *en, bool no_preempt) {
    int budget = en->o.max_batch_tokens, nb = 0, pool_tokens = tl_bm_num_blocks(en->bm) * en->bs;
    bool preempted = false;
    tl_step *st = &en->stp[en->stp_next];
    for (int pass = 0; pass < 2; pass++) { /* 0: decodes, 1: prefills in progress */
        for (int i = 0; i < en->n_running && budget > 0; i++) {
            tl_seq *s = en->running[i];
            int remain = s->n_tokens - s->n_computed;
            if (s->sched_n || (pass == 0) != (remain == 1) || last_is_pending(en, s)) continue;
            int k = TL_MIN(TL_MIN(remain, en->o.prefill_chunk), budget);
            bool dropped = false;
            while (!tl_bm_can_append(en->bm, &s->bt, s->n_computed + k)) {
                int fit = (s->bt.n_blocks + tl_bm_num_allocatable(en->bm)) * en->bs - s->n_computed;
                if (fit >= 1 && fit < k) { /* a shorter prefill chunk fits in what is free */
                    k = fit;
                    continue;
                }
                if (no_preempt) {
                    dropped = true;
                    break;
                }
                int v = pick_victim(en, s);
                if (v >= 0) {
                    preempt(en, v);
                    preempted = true;
                    if (v < i) i--;
                    continue;
                }
                running_remove(en, i--);
                dropped = true;
                if (s->n_computed + 1 > pool_tokens) {
                    fail_too_big(en, s, s->n_computed + 1);
                } else { /* others scheduled this step hold the blocks: wait for them */
                    tl_bm_deallocate(en->bm, &s->bt);
                    s->n_computed = 0;
                    tl_deque_push_front(&en->waiting, s);
                    en->n_preempted++;
                    preempted = true;
                }
                break;
            }
            if (dropped) continue;
            TL_ASSERT(tl_bm_append(en->bm, &s->bt, s->n_computed + k) == 0);
            s->sched_n = k;
            budget -= k;
            st->owner[nb++] = s;
        }
    }
    /* admissions: FIFO, none in a step that had to preempt */
    while (!preempted && budget > 0 && en->n_running < en->o.max_seqs && en->waiting.n > 0) {
        tl_seq *s = tl_deque_get(&en->waiting, 0);
        if (s->n_tokens > pool_tokens) {
            tl_deque_pop_front(&en->waiting);
            fail_too_big(en, s, s->n_tokens);
            continue;
        }
        int from_cached = 0;
        int hit = tl_bm_peek_prefix(en->bm, s->tokens, s->n_tokens, &from_cached);
        int avail = tl_bm_num_allocatable(en->bm) - from_cached;
        int k = TL_MIN(TL_MIN(s->n_tokens - hit, en->o.prefill_chunk), budget);
        if (TL_CDIV(hit + k, en->bs) - hit / en->bs > avail) {
            k = (hit / en->bs + avail) * en->bs - hit;
            if (k < 1) break; /* wait for blocks to come back */
        }
        tl_deque_pop_front(&en->waiting);
        int got = tl_bm_allocate_prefix(en->bm, &s->bt, s->tokens, s->n_tokens);
        TL_ASSERT(got == hit);
        TL_ASSERT(tl_bm_append(en->bm, &s->bt, hit + k) == 0);
        s->n_computed = hit;
        if (!s->admitted_once) {
            s->admitted_once = true;
            s->n_cached = TL_MIN(hit, s->n_prompt);
            en->prompt_tokens += s->n_prompt;
        }
        en->running[en->n_running++] = s;
        s->sched_n = k;
        budget -= k;
        st->owner[nb++] = s;
    }
    return nb;
}

/* ---- 3. the flat batch and its launch ---- */
/* Parameters of logit row r for the backend's sampler; draws the request's uniform (one per sampled token,
 * as the host sampler would) and keeps the RNG state before it for a host fallback. The backend samples on the
 * device unless the row needs what only the host sampler does: top-n logprobs, penalties, or both together where
 * the backend lacks them (be->collected_top, be->penalties, be->penalties_top; TL_ENGINE_HOST_LOGPROBS=1 /
 * TL_ENGINE_HOST_PENALTIES=1 for comparisons); each such row counts in en->host_rows. A penalized row's history
 * goes to en->b_pen (its entries from en->b_pen_off[r]; build_batch points rs.pen there once every row is in). Called with the sequence's last
 * token (a placeholder when a step in flight samples it) at tokens[n_tokens - 1], the row's batch token. */
static void row_sampling(tl_engine *en, tl_seq *s, tl_step *st, int r) {
    const tl_sampling *p = &s->p.s;
    tl_row_sampling *q = &en->b_rs[r];
    *q = (tl_row_sampling){.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
                           .repetition_penalty = p->repetition_penalty, .presence_penalty = p->presence_penalty,
                           .frequency_penalty = p->frequency_penalty,
                           .n_logprobs = TL_MIN(TL_MAX(p->n_logprobs, 0), TL_MAX_LOGPROBS)};
    const bool pen = tl_row_has_penalties(q);
    /* (top-n logprobs are of the raw logits: a row that has both goes to the host whole unless the backend keeps
     * them raw, be->penalties_top) */
    q->host = (q->n_logprobs > 0 && (!en->dev_top || (pen && !en->dev_pen_top))) || (pen && !en->dev_pen);
    en->host_rows += q->host;
    if (pen && !q->host) {
        const int n_hist = s->n_tokens - 1; /* all confirmed tokens: only the last may be a placeholder */
        if (!en->b_pen || en->b_pen_n + 2 * (size_t)n_hist > en->b_pen_cap) {
            en->b_pen_cap = TL_MAX(2 * en->b_pen_cap, en->b_pen_n + 2 * (size_t)n_hist + 4096);
            en->b_pen = tl_realloc(en->b_pen, en->b_pen_cap * sizeof *en->b_pen);
        }
        en->b_pen_off[r] = en->b_pen_n;
        q->pen_n = tl_sampler_pen_list(&en->sp, p, s->tokens, n_hist, s->n_prompt, en->b_pen + en->b_pen_n);
        q->last_gen = n_hist >= s->n_prompt;
        en->b_pen_n += 2 * (size_t)q->pen_n;
    }
    st->rng[r] = s->rng;
    if (!q->host && p->temperature > 0.0f) q->u = tl_rng_uniform(&s->rng);
}

/* The scheduled sequences (st->owner, their sched_n) as the flat batch in en->b_*. Each sequence's tokens
 * count as computed from here on (the K/V exist for every later step), and a sampled row leaves the
 * placeholder TL_TOKEN_PREV(row) that the step's collection replaces. */
static tl_batch build_batch(tl_engine *en, tl_step *st, int nb) {
    int n_tok = 0, n_rows = 0;
    st->nb = nb;
    en->b_pen_n = 0;
    for (int j = 0; j < nb; j++) {
        tl_seq *s = st->owner[j];
        int k = s->sched_n;
        en->b_seqs[j] = (tl_batch_seq){
            .tok_start = n_tok, .n_new = k, .n_past = s->n_computed, .block_table = s->bt.blocks};
        for (int t = 0; t < k; t++) {
            en->b_tokens[n_tok + t] = s->tokens[s->n_computed + t];
            en->b_pos[n_tok + t] = s->n_computed + t;
        }
        n_tok += k;
        st->row[j] = -1;
        s->n_computed += k;
        st->upto[j] = s->n_computed;
        s->sched_n = 0;
        s->inflight++;
        if (s->n_computed == s->n_tokens) {
            if (en->device_sample) row_sampling(en, s, st, n_rows);
            TL_ASSERT(s->n_tokens < s->cap);
            s->tokens[s->n_tokens++] = TL_TOKEN_PREV(n_rows);
            s->n_pending++;
            st->row[j] = n_rows;
            en->b_rows[n_rows++] = n_tok - 1;
        }
    }
    TL_ASSERT(n_tok <= en->o.max_batch_tokens && n_rows <= en->o.max_seqs);
    for (int r = 0; r < n_rows && en->device_sample; r++)
        en->b_rs[r].pen = en->b_rs[r].pen_n ? en->b_pen + en->b_pen_off[r] : NULL;
    st->n_rows = n_rows;
    return (tl_batch){.n_tok = n_tok, .tokens = en->b_tokens, .pos = en->b_pos, .n_seq = nb, .seqs = en->b_seqs,
                      .n_logits = n_rows, .logit_rows = en->b_rows};
}

static void step_fail(tl_step *st, const tl_error *e) {
    if (st->failed) return;
    st->failed = true;
    snprintf(st->msg, sizeof st->msg, "%s", e && e->msg[0] ? e->msg : "forward pass failed");
}

/* Launches (pipelined) or runs the step. */
static void run_step(tl_engine *en, tl_step *st, const tl_batch *b) {
    tl_error e = {{0}};
    int rc;
    st->failed = false;
    st->in_flight = false;
    if (en->pipelined) {
        rc = en->be->launch(en->be, en->m, &en->kv, b, en->b_rs, en->logits, &e);
        st->in_flight = rc == 0;
    } else if (en->device_sample) {
        rc = en->be->forward_sample(en->be, en->m, &en->kv, b, en->b_rs, st->tok, st->lp, en->logits, &e);
    } else {
        rc = en->be->forward(en->be, en->m, &en->kv, b, en->logits, &e);
    }
    if (rc) step_fail(st, &e);
    en->steps++;
}

/* Whether the step may stay in flight while the next one is built: every row sampled on the device (row_on_device
 * is false for host rows too), so its token can feed the next step there and no logits come back. */
static bool may_fly(const tl_engine *en, const tl_step *st) {
    for (int r = 0; r < st->n_rows; r++)
        if (!en->be->row_on_device(en->be, &en->b_rs[r], en->n_vocab)) return false;
    return true;
}

/* Waits for a launched step. A failed collection fails the step launched after it too (its placeholders
 * took undefined tokens). */
static void collect(tl_engine *en, tl_step *st, tl_step *later) {
    tl_error e = {{0}};
    double t0 = tl_now();
    if (en->be->collect(en->be, st->tok, st->lp, &e)) {
        step_fail(st, &e);
        if (later && later->in_flight) step_fail(later, &e);
    }
    st->in_flight = false;
    const double dt = tl_now() - t0;
    en->t_forward += dt;
    en->t_collect += dt; /* (the step's other phases leave it out) */
}

/* ---- 4. after the forward: each sequence's new token ---- */
/* ev: the sampler's fields (logprob, top-n) already filled; tok is s->tokens[n_conf - 1] */
static void postprocess(tl_engine *en, tl_seq *s, int32_t tok, int n_conf, tl_token_event *evp) {
    tl_token_event ev = *evp;
    s->n_generated++;
    en->generated_tokens++;
    if (s->n_generated == 1) s->t_first = tl_now() - s->t_add;
    tl_finish fin = TL_FINISH_NONE;
    const tl_config *c = &en->m->cfg;
    if (!s->p.ignore_eos)
        for (int i = 0; i < c->n_eos; i++)
            if (tok == c->eos_ids[i]) fin = TL_FINISH_STOP;
    for (int i = 0; i < s->p.n_stop_ids; i++)
        if (tok == s->p.stop_ids[i]) fin = TL_FINISH_STOP;
    if (fin == TL_FINISH_NONE && ((s->p.max_tokens > 0 && s->n_generated >= s->p.max_tokens) || n_conf >= en->n_ctx))
        fin = TL_FINISH_LENGTH;
    int stop = emit(s, &ev, tok, fin, NULL);
    if (fin == TL_FINISH_NONE && stop) {
        memset(&ev, 0, sizeof ev);
        emit(s, &ev, -1, TL_FINISH_STOP, NULL);
        fin = TL_FINISH_STOP;
    }
    s->done = fin != TL_FINISH_NONE;
}

/* The step's results: per sequence, its placeholder replaced by the sampled token (host sampler where the
 * backend did not sample), the newly full blocks of confirmed tokens into the prefix cache, the event.
 * Sequences finished since the launch are retired once no step holds them. */
static void finish_step(tl_engine *en, tl_step *st) {
    for (int j = 0; j < st->nb; j++) {
        tl_seq *s = st->owner[j];
        s->inflight--;
        if (s->done) {
            if (!s->inflight && s->zombie) retire(en, s);
            continue;
        }
        if (st->failed) { /* the backend failed: every sequence of this batch ends with its message */
            tl_token_event ev;
            memset(&ev, 0, sizeof ev);
            emit(s, &ev, -1, TL_FINISH_ERROR, st->msg);
            s->done = true;
            continue;
        }
        const int r = st->row[j];
        int32_t tok = -1;
        tl_token_event ev;
        memset(&ev, 0, sizeof ev);
        const int idx = s->n_tokens - s->n_pending; /* the oldest placeholder: this step's */
        if (r >= 0) {
            TL_ASSERT(s->n_pending > 0 && s->tokens[idx] == TL_TOKEN_PREV(r));
            if (en->device_sample && st->tok[r] >= 0) {
                tok = st->tok[r];
                ev.logprob = st->lp[r];
                if (s->p.s.n_logprobs > 0 && en->dev_top)
                    ev.n_top = en->be->collected_top(en->be, r, ev.top_ids, ev.top_logprobs);
            } else { /* host sampler: the backend's logits row; the RNG as before the device path's draw */
                if (en->device_sample) s->rng = st->rng[r];
                tok = tl_sampler_sample(&en->sp, &s->p.s, en->logits + (size_t)r * en->n_vocab, s->tokens, idx,
                                        s->n_prompt, &s->rng, &ev);
            }
            s->tokens[idx] = tok;
            s->n_pending--;
        }
        tl_bm_commit(en->bm, &s->bt, s->tokens, TL_MIN(st->upto[j], s->n_tokens - s->n_pending));
        if (r >= 0) postprocess(en, s, tok, idx + 1, &ev);
    }
}

/* Finished sequences leave the running list (admission order kept); retired unless a step in flight
 * holds them (then that step's collection retires them). */
static void compact_running(tl_engine *en) {
    int w = 0;
    for (int i = 0; i < en->n_running; i++) {
        tl_seq *s = en->running[i];
        if (!s->done) en->running[w++] = s;
        else if (!s->inflight) retire(en, s);
        else s->zombie = true;
    }
    en->n_running = w;
}

void tl_engine_drain(tl_engine *en) {
    tl_step *st = en->flight;
    if (!st) return;
    en->flight = NULL;
    collect(en, st, NULL);
    finish_step(en, st);
    compact_running(en);
}

void tl_engine_publish(tl_engine *en) {
    tl_bm_stats b;
    tl_bm_stats_get(en->bm, &b);
    pthread_mutex_lock(&en->mu);
    tl_engine_stats *st = &en->st;
    st->n_running = en->n_running;
    st->n_waiting = en->waiting.n;
    st->kv_blocks_total = tl_bm_num_blocks(en->bm);
    st->kv_blocks_used = b.n_used;
    st->kv_blocks_cached = b.n_cached;
    st->kv_blocks_free = b.n_free;
    st->kv_blocks_peak = b.peak_used;
    st->prefix_queries = b.queries;
    st->prefix_hits = b.hits;
    st->n_preempted = en->n_preempted;
    st->prompt_tokens = en->prompt_tokens;
    st->generated_tokens = en->generated_tokens;
    st->steps = en->steps;
    st->host_rows = en->host_rows;
    st->t_schedule = en->t_sched;
    st->t_batch = en->t_batch;
    st->t_forward = en->t_forward;
    st->t_post = en->t_post;
    pthread_mutex_unlock(&en->mu);
}

int tl_engine_step_locked_out(tl_engine *en) {
    double t0 = tl_now();
    en->t_collect = 0;
    intake(en);
    /* With a step in flight nothing is preempted: every running decode must find a block (it takes at most
     * one), else that step is collected first and this one is scheduled as without pipelining. */
    if (en->flight && tl_bm_num_allocatable(en->bm) < en->n_running) tl_engine_drain(en);
    tl_step *st = &en->stp[en->stp_next], *prev = en->flight;
    int nb = schedule(en, prev != NULL);
    double tb = tl_now();
    const double c_sched = en->t_collect; /* a drain above: counted as forward time */
    en->t_sched += tb - t0 - c_sched;
    if (nb > 0) {
        tl_batch b = build_batch(en, st, nb);
        double t1 = tl_now();
        run_step(en, st, &b);
        en->stp_next ^= 1;
        double t2 = tl_now();
        en->t_batch += t1 - tb;
        en->t_forward += t2 - t1;
        en->flight = NULL;
        if (prev) { /* step t - 1, while step t runs */
            collect(en, prev, st);
            finish_step(en, prev);
        }
        if (st->in_flight && !may_fly(en, st)) collect(en, st, NULL);
        if (st->in_flight) en->flight = st;
        else finish_step(en, st);
        compact_running(en);
        en->t_post += tl_now() - t2 - (en->t_collect - c_sched);
    } else {
        tl_engine_drain(en);
    }
    tl_engine_publish(en);
    pthread_mutex_lock(&en->mu);
    int live = en->n_live;
    pthread_mutex_unlock(&en->mu);
    return live;
}

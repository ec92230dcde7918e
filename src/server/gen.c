/* gen.c: one generation request between the engine and its HTTP connection.
 *
 * The engine's stepping thread calls on_token: the token goes through the streaming detokenizer
 * (UTF-8 safe) and the stop-string matcher; released text and logprobs are queued under g->mu and
 * the connection, suspended while it waits, is resumed. The MHD thread then either builds the
 * SSE chunks (stream_read) or, once finished, the whole response (tl_srv_gen_resume).
 * A client that hangs up is noticed by MHD on write (completion callback) or, while suspended,
 * by the watcher polling the socket for POLLRDHUP; either way tl_engine_cancel frees its blocks. */
#include <poll.h>
#include <time.h>

#include "server/server_int.h"

static void gen_free(srv_gen *g) {
    tl_api_req_free(&g->req);
    if (g->dt) tl_detok_free(g->dt);
    tl_stopper_free(&g->st);
    tl_strbuf_free(&g->text);
    tl_strbuf_free(&g->out);
    free(g->lp);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static void gen_unref(srv_gen *g) {
    pthread_mutex_lock(&g->mu);
    int left = --g->refs;
    pthread_mutex_unlock(&g->mu);
    if (left > 0) return;
    srv *s = g->s;
    pthread_mutex_lock(&s->mu);
    if (g->prev) g->prev->next = g->next;
    else s->gens = g->next;
    if (g->next) g->next->prev = g->prev;
    s->n_gens--;
    pthread_mutex_unlock(&s->mu);
    gen_free(g);
}

/* Under g->mu: let MHD run the connection again. */
static void wake_locked(srv_gen *g) {
    if (g->conn_alive && g->suspended) {
        g->suspended = false;
        MHD_resume_connection(g->conn);
    }
}

static void suspend_locked(srv_gen *g) {
    g->suspended = true;
    MHD_suspend_connection(g->conn);
}

/* ---------------- engine side ---------------- */

static int on_token(const tl_token_event *ev, void *user) {
    srv_gen *g = user;
    srv *s = g->s;
    double now = tl_now();
    bool final = ev->finish != TL_FINISH_NONE;
    bool had_stop = g->stop_hit;
    int ret = 0;
    tl_strbuf piece = {0};
    tl_strbuf_append(&piece, "", 0);
    if (ev->token >= 0 && !g->stop_hit) {
        size_t n = 0;
        const char *t = tl_detok_push(g->dt, ev->token, &n);
        if (tl_stopper_push(&g->st, t, n, &piece)) g->stop_hit = true;
    }
    if (final && !g->stop_hit) { /* leftovers of an incomplete character, then what was held back */
        size_t n = 0;
        const char *t = tl_detok_flush(g->dt, &n);
        if (tl_stopper_push(&g->st, t, n, &piece)) g->stop_hit = true;
        else tl_stopper_flush(&g->st, &piece);
    }
    if (g->stop_hit && !had_stop && !final) ret = 1; /* ask the engine to finish now */

    if (ev->token >= 0) {
        g->n_seen++;
        pthread_mutex_lock(&s->mu);
        if (g->n_seen == 1) tl_histogram_add(&s->c.ttft, now - g->t_arrival);
        else tl_histogram_add(&s->c.itl, now - g->t_last);
        pthread_mutex_unlock(&s->mu);
        g->t_last = now;
    }

    bool newly_finished = false;
    pthread_mutex_lock(&g->mu);
    tl_strbuf_append(&g->text, piece.p, piece.len);
    if (g->req.logprobs && ev->token >= 0 && !had_stop) {
        if (g->n_lp == g->cap_lp) {
            g->cap_lp = g->cap_lp ? 2 * g->cap_lp : 16;
            g->lp = tl_realloc(g->lp, (size_t)g->cap_lp * sizeof *g->lp);
        }
        tl_api_logprob *l = &g->lp[g->n_lp++];
        l->token = ev->token;
        l->logprob = ev->logprob;
        l->n_top = TL_MIN(TL_MIN(ev->n_top, g->req.top_logprobs), TL_MAX_LOGPROBS);
        for (int k = 0; k < l->n_top; k++) {
            l->top_ids[k] = ev->top_ids[k];
            l->top_logprobs[k] = ev->top_logprobs[k];
        }
    }
    g->n_prompt = ev->n_prompt;
    g->n_gen = ev->n_generated;
    g->n_cached = ev->n_cached;
    if ((final || g->stop_hit) && !g->finished) {
        g->finished = true;
        newly_finished = true;
        g->finish = g->stop_hit ? TL_FINISH_STOP : ev->finish;
        if (ev->finish == TL_FINISH_ERROR)
            snprintf(g->err, sizeof g->err, "%s", ev->error ? ev->error : "the engine failed this request");
    }
    wake_locked(g);
    tl_finish fin = g->finish;
    int n_prompt = g->n_prompt, n_gen = g->n_gen;
    pthread_mutex_unlock(&g->mu);
    tl_strbuf_free(&piece);

    if (newly_finished) {
        pthread_mutex_lock(&s->mu);
        if (fin == TL_FINISH_STOP) s->c.finish_stop++;
        if (fin == TL_FINISH_LENGTH) s->c.finish_length++;
        if (fin == TL_FINISH_STOP || fin == TL_FINISH_LENGTH) {
            s->c.prompt_tokens += n_prompt;
            s->c.generation_tokens += n_gen;
            tl_histogram_add(&s->c.e2e, now - g->t_arrival);
        }
        s->c.active--;
        pthread_mutex_unlock(&s->mu);
    }
    if (final) gen_unref(g); /* the engine's reference: it calls no more */
    return ret;
}

/* ---------------- MHD side ---------------- */

/* What the engine has queued since the last look, taken under the lock (text and lp move out:
 * the caller frees them), with the usage counts copied into g->resp. */
typedef struct gen_snapshot {
    tl_strbuf text;
    tl_api_logprob *lp;
    int n_lp;
    tl_finish fin;
    char err[sizeof ((srv_gen *)0)->err];
} gen_snapshot;

static void snapshot_locked(srv_gen *g, gen_snapshot *sn) {
    sn->text = g->text;
    memset(&g->text, 0, sizeof g->text);
    sn->lp = g->lp;
    sn->n_lp = g->n_lp;
    g->lp = NULL;
    g->n_lp = g->cap_lp = 0;
    g->resp.n_prompt = g->n_prompt;
    g->resp.n_completion = g->n_gen;
    g->resp.n_cached = g->n_cached;
    sn->fin = g->finish;
    memcpy(sn->err, g->err, sizeof sn->err);
}

static void snapshot_free(gen_snapshot *sn) {
    tl_strbuf_free(&sn->text);
    free(sn->lp);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_gen *g = cls;
    for (;;) {
        if (g->out_off < g->out.len) {
            size_t n = TL_MIN(max, g->out.len - g->out_off);
            memcpy(buf, g->out.p + g->out_off, n);
            g->out_off += n;
            return (ssize_t)n;
        }
        g->out.len = g->out_off = 0;
        if (g->done) return MHD_CONTENT_READER_END_OF_STREAM;

        pthread_mutex_lock(&g->mu);
        if (g->client_gone) {
            pthread_mutex_unlock(&g->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        bool finished = g->finished;
        bool chat = g->req.kind == TL_API_CHAT;
        if (!finished && g->text.len == 0 && g->n_lp == 0 && (g->first_sent || !chat)) {
            suspend_locked(g); /* on_token resumes us */
            pthread_mutex_unlock(&g->mu);
            return 0;
        }
        gen_snapshot sn;
        snapshot_locked(g, &sn);
        pthread_mutex_unlock(&g->mu);

        bool usage_null = g->req.include_usage;
        if (!g->first_sent || sn.text.len || sn.n_lp)
            tl_api_sse_chunk(&g->out, &g->resp, !g->first_sent, sn.text.p, sn.text.len, sn.lp, sn.n_lp, NULL,
                             usage_null);
        g->first_sent = true;
        if (finished) {
            const char *fr = tl_api_finish_reason(sn.fin);
            if (fr) {
                tl_api_sse_chunk(&g->out, &g->resp, false, "", 0, NULL, 0, fr, usage_null);
                if (g->req.include_usage) tl_api_sse_usage(&g->out, &g->resp);
            } else if (sn.fin == TL_FINISH_CANCELLED) {
                tl_api_sse_error(&g->out, "the request was cancelled (server shutting down)", "server_error");
            } else {
                tl_api_sse_error(&g->out, sn.err[0] ? sn.err : "the request failed", "server_error");
            }
            tl_api_sse_done(&g->out);
            g->done = true;
        }
        snapshot_free(&sn);
    }
}

static void stream_free(void *cls) { gen_unref(cls); }

static enum MHD_Result finish_response(srv_gen *g, int *status) {
    pthread_mutex_lock(&g->mu);
    gen_snapshot sn;
    snapshot_locked(g, &sn);
    pthread_mutex_unlock(&g->mu);
    enum MHD_Result r;
    const char *fr = tl_api_finish_reason(sn.fin);
    if (fr) {
        *status = 200;
        r = tl_srv_send_json(g->conn, 200, tl_api_response_json(&g->resp, sn.text.p, sn.text.len, sn.lp, sn.n_lp, fr));
    } else if (sn.fin == TL_FINISH_CANCELLED) {
        *status = 503;
        r = tl_srv_send_error(g->conn, 503, "the request was cancelled (server shutting down)", "server_error",
                              NULL, NULL);
    } else {
        *status = 500;
        r = tl_srv_send_error(g->conn, 500, sn.err[0] ? sn.err : "the request failed", "server_error", NULL, NULL);
    }
    snapshot_free(&sn);
    return r;
}

enum MHD_Result tl_srv_gen_resume(srv_gen *g, int *status) {
    pthread_mutex_lock(&g->mu);
    if (g->client_gone) {
        pthread_mutex_unlock(&g->mu);
        return MHD_NO; /* close it */
    }
    if (!g->finished) {
        suspend_locked(g);
        pthread_mutex_unlock(&g->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&g->mu);
    return finish_response(g, status);
}

bool tl_srv_gen_conn_done(srv_gen *g, bool completed_ok) {
    srv *s = g->s;
    pthread_mutex_lock(&g->mu);
    g->conn_alive = false;
    g->suspended = false;
    bool gone = !g->finished;
    bool newly_gone = gone && !g->client_gone;
    if (gone) g->client_gone = true;
    int64_t eid = g->eid;
    pthread_mutex_unlock(&g->mu);
    (void)completed_ok;
    if (newly_gone) {
        pthread_mutex_lock(&s->mu);
        s->c.disconnects++;
        pthread_mutex_unlock(&s->mu);
    }
    if (gone && eid > 0) tl_engine_cancel(s->en, eid);
    gen_unref(g);
    return gone;
}

void tl_srv_gen_watch(srv *s) {
    int64_t ids[512];
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (srv_gen *g = s->gens; g && n < 512; g = g->next) {
        pthread_mutex_lock(&g->mu);
        if (g->conn_alive && g->suspended && !g->client_gone) {
            struct pollfd p = {.fd = g->fd, .events = POLLRDHUP};
            if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
                g->client_gone = true;
                if (!g->finished) {
                    s->c.disconnects++;
                    if (g->eid > 0) ids[n++] = g->eid;
                }
                wake_locked(g); /* MHD closes it */
            }
        }
        pthread_mutex_unlock(&g->mu);
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) tl_engine_cancel(s->en, ids[i]);
}

void tl_srv_gen_abort_all(srv *s) {
    pthread_mutex_lock(&s->mu);
    for (srv_gen *g = s->gens; g; g = g->next) {
        pthread_mutex_lock(&g->mu);
        if (g->suspended) g->client_gone = true;
        wake_locked(g);
        pthread_mutex_unlock(&g->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---------------- starting a request ---------------- */

static const char *piece_fn(const void *tok, int32_t id, size_t *len) { return tl_tokenizer_piece(tok, id, len); }

int tl_srv_add_bos(const tl_tokenizer *tok, int32_t **ids, int n) {
    int bos = tl_tokenizer_bos(tok);
    if (tl_tokenizer_add_bos(tok) && bos >= 0 && (n == 0 || (*ids)[0] != bos)) {
        *ids = tl_realloc(*ids, (size_t)(n + 1) * sizeof(int32_t));
        memmove(*ids + 1, *ids, (size_t)n * sizeof(int32_t));
        (*ids)[0] = bos;
        n++;
    }
    return n;
}

/* Prompt token ids of a parsed request, or -1 with e filled. */
static int prompt_ids(srv *s, tl_api_req *r, int32_t **ids, tl_error *e) {
    int n;
    if (r->kind == TL_API_CHAT || r->prompt) {
        char *text = r->kind == TL_API_CHAT ? tl_chat_render(s->tok, r->msgs, r->n_msgs, true) : NULL;
        const char *src = text ? text : r->prompt;
        if (!src) return tl_errf(e, "the chat template could not be rendered");
        n = tl_tokenizer_encode(s->tok, src, strlen(src), true, ids, e);
        free(text);
        if (n < 0) return -1;
        n = tl_srv_add_bos(s->tok, ids, n);
    } else {
        int nv = s->m->cfg.n_vocab;
        for (int i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= nv) return tl_errf(e, "prompt[%d] = %d is not a token id (vocabulary size %d)", i,
                                                       (int)r->prompt_ids[i], nv);
        n = r->n_prompt_ids;
        *ids = tl_malloc((size_t)n * sizeof(int32_t));
        memcpy(*ids, r->prompt_ids, (size_t)n * sizeof(int32_t));
    }
    return n;
}

enum MHD_Result tl_srv_gen_start(srv *s, struct MHD_Connection *c, tl_api_kind kind, const char *body, size_t len,
                                 srv_gen **out, int *status) {
    double t0 = tl_now();
    *out = NULL;
    tl_api_req req;
    tl_error e = {{0}};
    const char *param = NULL;
    if (tl_api_parse(body, len, kind, &req, &param, &e)) {
        tl_api_req_free(&req);
        *status = 400;
        return tl_srv_send_error(c, 400, e.msg, "invalid_request_error", param, NULL);
    }
    if (req.model && strcmp(req.model, s->served_name)) {
        char msg[512];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.150s'.", req.model,
                 s->served_name);
        tl_api_req_free(&req);
        *status = 400;
        return tl_srv_send_error(c, 400, msg, "invalid_request_error", "model", "model_not_found");
    }
    int32_t *ids = NULL;
    int n = prompt_ids(s, &req, &ids, &e);
    if (n <= 0) {
        if (n == 0) tl_errf(&e, "the prompt is empty");
        free(ids);
        tl_api_req_free(&req);
        *status = 400;
        return tl_srv_send_error(c, 400, e.msg, "invalid_request_error", kind == TL_API_CHAT ? "messages" : "prompt",
                                 NULL);
    }
    int max_tokens = req.max_tokens;
    if (n + TL_MAX(max_tokens, 1) > s->n_ctx) {
        free(ids);
        tl_api_req_free(&req);
        *status = 400;
        return tl_srv_send_json(c, 400, tl_api_context_error_json(n, s->n_ctx, max_tokens,
                                                                  kind == TL_API_CHAT ? "messages" : "prompt"));
    }
    if (max_tokens < 0) max_tokens = s->n_ctx - n;

    srv_gen *g = tl_calloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    g->s = s;
    g->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    g->fd = ci ? ci->connect_fd : -1;
    g->conn_alive = true;
    g->req = req;
    g->t_arrival = t0;
    g->dt = tl_detok_new(s->tok, true);
    tl_stopper_init(&g->st, (const char *const *)g->req.stop, g->req.n_stop);
    pthread_mutex_lock(&s->mu);
    uint64_t num = ++s->next_id;
    uint64_t seed = s->seed_salt ^ (num * 0x9e3779b97f4a7c15ULL);
    g->next = s->gens;
    if (s->gens) s->gens->prev = g;
    s->gens = g;
    s->n_gens++;
    s->c.active++;
    pthread_mutex_unlock(&s->mu);
    snprintf(g->id, sizeof g->id, "%s-%016llx%04llx", kind == TL_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)s->seed_salt, (unsigned long long)(num & 0xffff));
    g->resp = (tl_api_resp){.kind = kind, .id = g->id, .model = s->served_name, .created = (int64_t)time(NULL),
                            .piece = piece_fn, .tok = s->tok, .logprobs = g->req.logprobs};
    g->refs = 2; /* connection + engine */

    tl_req_params p = {0};
    p.s = g->req.s;
    /* fields the request left out take the model folder's generation_config.json defaults (as vLLM) */
    const tl_gen_defaults *gd = &s->m->gen;
    if (!g->req.temperature_given && gd->temperature > 0) p.s.temperature = gd->temperature;
    if (!g->req.top_p_given && gd->top_p > 0 && gd->top_p < 1) p.s.top_p = gd->top_p;
    if (!g->req.top_k_given && gd->top_k > 0) p.s.top_k = gd->top_k;
    if (!g->req.repetition_penalty_given && gd->repetition_penalty > 0) p.s.repetition_penalty = gd->repetition_penalty;
    if (!g->req.seed_given) p.s.seed = seed;
    p.max_tokens = max_tokens;
    p.ignore_eos = g->req.ignore_eos;
    p.stop_ids = g->req.ignore_eos ? NULL : s->eos;
    p.n_stop_ids = g->req.ignore_eos ? 0 : s->n_eos;
    int64_t eid = tl_engine_add(s->en, ids, n, &p, on_token, g, &e);
    free(ids);
    if (eid < 0) {
        pthread_mutex_lock(&s->mu);
        s->c.active--;
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&g->mu);
        g->refs--; /* the engine never took it */
        g->finished = true;
        pthread_mutex_unlock(&g->mu);
        bool full = !strncmp(e.msg, "queue full", 10);
        *status = full ? 429 : 400;
        *out = g; /* the connection still owns its reference; conn_done releases it */
        return tl_srv_send_error(c, *status, e.msg, full ? "rate_limit_error" : "invalid_request_error", NULL,
                                 full ? "queue_full" : NULL);
    }
    pthread_mutex_lock(&g->mu);
    g->eid = eid;
    pthread_mutex_unlock(&g->mu);
    *out = g;

    if (!g->req.stream) return tl_srv_gen_resume(g, status);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, g, stream_free);
    if (!r) return MHD_NO;
    pthread_mutex_lock(&g->mu);
    g->refs++; /* the response's reference (stream_free) */
    pthread_mutex_unlock(&g->mu);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result res = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    *status = 200;
    return res;
}

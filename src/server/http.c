/* http.c: the HTTP daemon (libmicrohttpd), routing, auth, body limits, /health /metrics /v1/models
 * /tokenize /detokenize, model loading behind a live listener, and clean shutdown on SIGINT/SIGTERM.
 *
 * Why libmicrohttpd: callback responses with suspend/resume stream SSE without a thread per
 * connection (a small epoll thread pool serves every client, a waiting request costs no thread);
 * connection limits, idle timeouts and per-connection memory limits are built in; its completion
 * notification tells a client abort from a normal end, which is what cancels the engine request. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "server/server_int.h"

typedef struct conn {
    double t0;
    char what[96];  /* "POST /v1/completions" for the access log */
    tl_strbuf body;
    bool too_big;
    int status;     /* status queued; 0 none yet */
    srv_gen *g;
} conn;

void tl_server_opts_default(tl_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8000;
    o->backend = "auto";
    o->gpu_mem_util = 0.9f;
    o->max_body = 4u << 20;
    o->max_connections = 256;
    o->conn_timeout_s = 60;
    o->http_threads = 2;
    o->shutdown_grace_s = 10;
    tl_engine_opts_default(&o->eng);
}

void tl_srv_count_status(srv *s, int status) {
    pthread_mutex_lock(&s->mu);
    tl_server_counters_status(&s->c, status);
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, char *p, size_t n, const char *type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, p, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(p);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result res = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return res;
}

enum MHD_Result tl_srv_send_json(struct MHD_Connection *c, int status, char *json) {
    return send_buf(c, status, json, strlen(json), "application/json");
}

enum MHD_Result tl_srv_send_error(struct MHD_Connection *c, int status, const char *msg, const char *type,
                                  const char *param, const char *code) {
    return tl_srv_send_json(c, status, tl_api_error_json(msg, type, param, code));
}

static char *dumps(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    TL_ASSERT(s);
    return s;
}

/* Constant-time in the length of the server's key: no early exit on the first differing byte. */
static bool key_ok(const char *want, const char *auth) {
    const char *got = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : "";
    size_t lw = strlen(want), lg = strlen(got);
    unsigned diff = lw != lg;
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)want[i] ^ (unsigned char)(i < lg ? got[i] : 0);
    return diff == 0 && auth != NULL;
}

/* ---------------- small endpoints ---------------- */

static enum MHD_Result do_models(srv *s, struct MHD_Connection *c) {
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(s->served_name));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer((json_int_t)time(NULL)));
    json_object_set_new(m, "owned_by", json_string("tinyllm"));
    json_object_set_new(m, "max_model_len", json_integer(s->n_ctx));
    json_t *data = json_array();
    json_array_append_new(data, m);
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    return tl_srv_send_json(c, 200, dumps(o));
}

static enum MHD_Result do_metrics(srv *s, struct MHD_Connection *c) {
    tl_engine_stats es;
    bool ready = atomic_load(&s->ready) == 1;
    if (ready) tl_engine_stats_get(s->en, &es);
    tl_strbuf out = {0};
    pthread_mutex_lock(&s->mu);
    tl_metrics_render(&s->c, ready ? &es : NULL, ready, &out);
    pthread_mutex_unlock(&s->mu);
    return send_buf(c, 200, out.p, out.len, "text/plain; version=0.0.4");
}

/* POST /tokenize {"prompt": str} or {"messages": [...]}, "add_special_tokens" (default true). */
static enum MHD_Result do_tokenize(srv *s, struct MHD_Connection *c, const conn *cn, int *status) {
    *status = 400;
    json_error_t je;
    json_t *root = json_loadb(cn->body.p ? cn->body.p : "", cn->body.len, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return tl_srv_send_error(c, 400, "the body must be a JSON object with 'prompt' or 'messages'",
                                 "invalid_request_error", NULL, NULL);
    }
    tl_error e = {{0}};
    int32_t *ids = NULL;
    int n = -1;
    const char *param = NULL;
    json_t *add = json_object_get(root, "add_special_tokens");
    if (add && !json_is_boolean(add) && !json_is_null(add)) {
        tl_errf(&e, "'add_special_tokens' must be a boolean");
        param = "add_special_tokens";
    } else if (json_is_string(json_object_get(root, "prompt"))) {
        json_t *p = json_object_get(root, "prompt");
        n = tl_tokenizer_encode(s->tok, json_string_value(p), json_string_length(p), true, &ids, &e);
    } else if (json_object_get(root, "messages")) {
        tl_api_req r;
        char *body = dumps(json_incref(root));
        if (tl_api_parse(body, strlen(body), TL_API_CHAT, &r, &param, &e) == 0) {
            char *text = tl_chat_render(s->tok, r.msgs, r.n_msgs, true);
            if (text) n = tl_tokenizer_encode(s->tok, text, strlen(text), true, &ids, &e);
            else tl_errf(&e, "the chat template could not be rendered");
            free(text);
        }
        tl_api_req_free(&r);
        free(body);
    } else {
        tl_errf(&e, "'prompt' (a string) or 'messages' is required");
        param = "prompt";
    }
    /* the ids a generation request would feed the model (bos too), so that "count" is its prompt_tokens */
    if (n >= 0 && !json_is_false(add)) n = tl_srv_add_bos(s->tok, &ids, n);
    json_decref(root);
    if (n < 0) {
        free(ids);
        return tl_srv_send_error(c, 400, e.msg, "invalid_request_error", param, NULL);
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    json_t *o = json_object();
    json_object_set_new(o, "tokens", arr);
    json_object_set_new(o, "count", json_integer(n));
    json_object_set_new(o, "max_model_len", json_integer(s->n_ctx));
    *status = 200;
    return tl_srv_send_json(c, 200, dumps(o));
}

/* POST /detokenize {"tokens": [ids]} -> {"prompt": text}. */
static enum MHD_Result do_detokenize(srv *s, struct MHD_Connection *c, const conn *cn, int *status) {
    *status = 400;
    json_t *root = json_loadb(cn->body.p ? cn->body.p : "", cn->body.len, 0, NULL);
    json_t *t = json_is_object(root) ? json_object_get(root, "tokens") : NULL;
    if (!json_is_array(t)) {
        json_decref(root);
        return tl_srv_send_error(c, 400, "'tokens' (an array of token ids) is required", "invalid_request_error",
                                 "tokens", NULL);
    }
    size_t n = json_array_size(t);
    int32_t *ids = tl_malloc((n ? n : 1) * sizeof(int32_t));
    int nv = tl_tokenizer_n_vocab(s->tok);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(t, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= nv) {
            free(ids);
            json_decref(root);
            char msg[160];
            snprintf(msg, sizeof msg, "tokens[%zu] is not a token id in [0, %d)", i, nv);
            return tl_srv_send_error(c, 400, msg, "invalid_request_error", "tokens", NULL);
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    json_decref(root);
    /* with its length: a token may decode to a NUL byte, which would end a C string there */
    size_t len = 0;
    char *text = tl_tokenizer_decode_n(s->tok, ids, (int)n, false, &len);
    free(ids);
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_stringn(text ? text : "", text ? len : 0));
    free(text);
    *status = 200;
    return tl_srv_send_json(c, 200, dumps(o));
}

/* ---------------- routing ---------------- */

enum { R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_CMPL, R_TOK, R_DETOK, R_N };
static const struct {
    const char *path, *method;
    bool auth, model;
} routes[R_N] = {
    [R_HEALTH] = {"/health", "GET", false, false},   [R_METRICS] = {"/metrics", "GET", false, false},
    [R_MODELS] = {"/v1/models", "GET", true, true},  [R_CHAT] = {"/v1/chat/completions", "POST", true, true},
    [R_CMPL] = {"/v1/completions", "POST", true, true}, [R_TOK] = {"/tokenize", "POST", true, true},
    [R_DETOK] = {"/detokenize", "POST", true, true},
};

static enum MHD_Result route(srv *s, conn *cn, struct MHD_Connection *c, const char *url, const char *method) {
    int r = 0;
    while (r < R_N && strcmp(url, routes[r].path)) r++;
    if (r == R_N) {
        cn->status = 404;
        char msg[160];
        snprintf(msg, sizeof msg, "no route %.100s", url);
        return tl_srv_send_error(c, 404, msg, "invalid_request_error", NULL, "not_found");
    }
    /* HEAD is GET without the body (MHD leaves it out): monitors and `curl -I` probe with it */
    bool head_of_get = !strcmp(method, "HEAD") && !strcmp(routes[r].method, "GET");
    if (strcmp(method, routes[r].method) && !head_of_get) {
        cn->status = 405;
        char msg[160];
        snprintf(msg, sizeof msg, "%.100s takes %s", url, routes[r].method);
        return tl_srv_send_error(c, 405, msg, "invalid_request_error", NULL, "method_not_allowed");
    }
    if (cn->too_big) {
        cn->status = 413;
        return tl_srv_send_error(c, 413, "request body too large", "invalid_request_error", NULL, NULL);
    }
    if (routes[r].auth && s->o.api_key &&
        !key_ok(s->o.api_key, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))) {
        cn->status = 401;
        return tl_srv_send_error(c, 401, "invalid or missing API key (Authorization: Bearer KEY)",
                                 "authentication_error", NULL, "invalid_api_key");
    }
    int ready = atomic_load(&s->ready);
    if (r == R_HEALTH) {
        cn->status = ready == 1 ? 200 : 503;
        return tl_srv_send_json(c, cn->status,
                                tl_strdup(ready == 1 ? "{\"status\":\"ok\"}" : "{\"status\":\"loading\"}"));
    }
    if (r == R_METRICS) {
        cn->status = 200;
        return do_metrics(s, c);
    }
    if (routes[r].model && ready != 1) {
        cn->status = 503;
        return tl_srv_send_error(c, 503, "the model is loading; try again shortly", "server_error", NULL,
                                 "model_loading");
    }
    if ((r == R_CHAT || r == R_CMPL) && atomic_load(&s->shutting_down)) {
        cn->status = 503;
        return tl_srv_send_error(c, 503, "the server is shutting down", "server_error", NULL, NULL);
    }
    switch (r) {
    case R_MODELS: cn->status = 200; return do_models(s, c);
    case R_TOK: return do_tokenize(s, c, cn, &cn->status);
    case R_DETOK: return do_detokenize(s, c, cn, &cn->status);
    default:
        return tl_srv_gen_start(s, c, r == R_CHAT ? TL_API_CHAT : TL_API_COMPLETION, cn->body.p ? cn->body.p : "",
                                cn->body.len, &cn->g, &cn->status);
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn *cn = *con_cls;
    if (!cn) {
        cn = tl_calloc(1, sizeof *cn);
        *con_cls = cn;
        cn->t0 = tl_now();
        snprintf(cn->what, sizeof cn->what, "%.8s %.80s", method, url);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) { /* refuse before reading it */
            cn->status = 413;
            return tl_srv_send_error(c, 413, "request body too large", "invalid_request_error", NULL, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->body.len + *upload_size > s->o.max_body) cn->too_big = true;
        else tl_strbuf_append(&cn->body, upload, *upload_size);
        (void)upload;
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->g) return tl_srv_gen_resume(cn->g, &cn->status);
    return route(s, cn, c, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    srv *s = cls;
    conn *cn = *con_cls;
    if (!cn) return;
    int status = cn->status; /* 0: no response was queued (client left before the end) */
    if (cn->g && tl_srv_gen_conn_done(cn->g, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)) status = 499;
    tl_srv_count_status(s, status ? status : 499);
    tl_debug("serve: %s %d %.3f s", cn->what, status ? status : 499, tl_now() - cn->t0); /* TL_LOG=3 */
    tl_strbuf_free(&cn->body);
    free(cn);
    *con_cls = NULL;
}

/* ---------------- lifecycle ---------------- */

static void *loader(void *arg) {
    srv *s = arg;
    const tl_server_opts *o = &s->o;
    tl_error e = {{0}};
    double t0 = tl_now();
    s->m = tl_model_load(o->model_path, &o->load, &e);
    if (!s->m) goto fail;
    if (!s->m->tok) {
        tl_errf(&e, "%s has no tokenizer (tokenizer.json); the server needs one", o->model_path);
        goto fail;
    }
    s->tok = s->m->tok;
    s->n_ctx = s->m->cfg.n_ctx;
    s->n_eos = tl_tokenizer_eos(s->tok, s->eos, TL_MAX_EOS);
    if (s->n_eos < 0) s->n_eos = 0;
    s->be = tl_backend_new(o->backend, o->n_threads, o->gpu_mem_util, &e);
    if (!s->be) goto fail;
    tl_engine_opts eo = o->eng;
    if (!strcmp(s->be->name, "cuda") && eo.kv_dtype == TL_F32) /* the default: bf16 on the GPU, as `tinyllm bench` */
        eo.kv_dtype = TL_BF16; /* (half the bytes, and the fused decode attention takes bf16 / f16 only) */
    s->en = tl_engine_new(s->m, s->be, &eo, &e);
    if (!s->en) goto fail;
    if (tl_engine_start(s->en, &e)) goto fail;
    /* A request must fit the KV pool as well as the context: the smaller is the limit we announce
     * (max_model_len) and check (400 before admission, rather than an engine error after a 200). */
    tl_engine_stats es;
    tl_engine_stats_get(s->en, &es);
    int64_t pool_tokens = (int64_t)es.kv_blocks_total * (o->eng.block_size > 0 ? o->eng.block_size : 16);
    if (pool_tokens > 0 && pool_tokens < s->n_ctx) {
        tl_warn("serve: the KV pool holds %lld tokens, fewer than the model's context (%d): requests are limited to "
                "%lld tokens (raise --kv-cache-mem for more)", (long long)pool_tokens, s->n_ctx, (long long)pool_tokens);
        s->n_ctx = (int)pool_tokens;
    }
    tl_info("serve: model %s loaded in %.1f s (context %d tokens); ready", s->served_name, tl_now() - t0, s->n_ctx);
    atomic_store(&s->ready, 1);
    return NULL;
fail:
    tl_log(TL_LOG_WARN, "serve: cannot load %s: %s", o->model_path, e.msg);
    atomic_store(&s->ready, -1);
    return NULL;
}

typedef struct watcher {
    srv *s;
    atomic_bool stop;
} watcher;

static void *watch_loop(void *arg) {
    watcher *w = arg;
    while (!atomic_load(&w->stop)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (atomic_load(&w->s->ready) == 1) tl_srv_gen_watch(w->s);
    }
    return NULL;
}

static int n_gens(srv *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_gens;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Waits up to secs for every request to end; a further SIGINT/SIGTERM (in *sigs) cuts it short. */
static void wait_gens(srv *s, double secs, const sigset_t *sigs) {
    double t_end = tl_now() + secs;
    while (n_gens(s) > 0 && tl_now() < t_end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        if (sigs) {
            int r = sigtimedwait(sigs, NULL, &ts);
            if (r == SIGINT || r == SIGTERM) {
                fprintf(stderr, "serve: second signal: not waiting any longer\n");
                return;
            }
        } else {
            nanosleep(&ts, NULL);
        }
    }
}

/* libmicrohttpd's own messages. A client that hangs up mid-response, or sends a malformed request, is routine
 * for a server (the access log and /metrics count it: 499, 400), so those lines go to debug (TL_LOG=3); the rest
 * (e.g. the connection limit reached) stay warnings, named as the library's. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    static const char *const routine[] = {"Failed to send", "forcibly closed", "reset by peer", "Broken pipe",
                                          "Failed to parse", "no longer available"};
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    int level = TL_LOG_WARN;
    for (size_t i = 0; i < sizeof routine / sizeof *routine; i++)
        if (strstr(msg, routine[i])) level = TL_LOG_DEBUG;
    tl_log(level, "libmicrohttpd: %s", msg);
}

static struct MHD_Daemon *start_daemon(srv *s, tl_error *e) {
    const tl_server_opts *o = &s->o;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc) {
        tl_errf(e, "cannot resolve host '%s': %s", o->host, gai_strerror(rc));
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)TL_MAX(o->http_threads, 1), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) tl_errf(e, "cannot listen on %s:%d (in use, or not an address of this machine?)", o->host, o->port);
    return d;
}

int tl_server_run(const tl_server_opts *opts) {
    srv *s = tl_calloc(1, sizeof *s);
    s->o = *opts;
    s->served_name = tl_strdup(opts->served_name ? opts->served_name : opts->model_path);
    pthread_mutex_init(&s->mu, NULL);
    tl_server_counters_init(&s->c);
    s->seed_salt = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(tl_now() * 1e9);

    /* Signals are taken synchronously by this thread (sigtimedwait); every thread started from here
     * inherits the blocked mask. A client that hangs up must never kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    int ret = 1;
    tl_error e = {{0}};
    MHD_socket lfd = MHD_INVALID_SOCKET;
    s->d = start_daemon(s, &e);
    if (!s->d) {
        tl_log(TL_LOG_WARN, "serve: %s", e.msg);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : s->o.port;
    bool v6 = strchr(s->o.host, ':') != NULL;
    fprintf(stderr, "serve: listening on http://%s%s%s:%d (model %s loading)\n", v6 ? "[" : "", s->o.host, v6 ? "]" : "",
            port, s->served_name);
    fflush(stderr);

    pthread_t lt, wt;
    watcher w = {.s = s};
    if (pthread_create(&wt, NULL, watch_loop, &w)) {
        tl_log(TL_LOG_WARN, "serve: cannot start a thread");
        MHD_stop_daemon(s->d);
        goto out;
    }
    if (pthread_create(&lt, NULL, loader, s)) {
        tl_log(TL_LOG_WARN, "serve: cannot start a thread");
        atomic_store(&s->ready, -1);
    }
    int sig = 0;
    while (!sig && atomic_load(&s->ready) != -1) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int r = sigtimedwait(&set, NULL, &ts);
        if (r == SIGINT || r == SIGTERM) sig = r;
    }
    atomic_store(&s->shutting_down, true);
    int state = atomic_load(&s->ready);
    if (sig)
        fprintf(stderr, "serve: %s: finishing %d in-flight request(s) (up to %.0f s), then exiting\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", n_gens(s), s->o.shutdown_grace_s);
    lfd = MHD_quiesce_daemon(s->d); /* no new connections */
    if (state == 1) {
        pthread_join(lt, NULL);
        wait_gens(s, s->o.shutdown_grace_s, &set);
        if (n_gens(s)) fprintf(stderr, "serve: cancelling %d request(s)\n", n_gens(s));
        tl_engine_stop(s->en); /* cancels what remains: each gets its final CANCELLED event */
        wait_gens(s, 5, NULL); /* for the streams to write it (returns as soon as they have; 2 s was short on a
                                * loaded 2-core machine: a CI run saw a stream cut before its error event) */
        ret = 0;
    } else if (state == 0) {
        pthread_detach(lt); /* still loading: the process exits under it */
        ret = 0;
    } else {
        pthread_join(lt, NULL); /* load failed */
    }
    tl_srv_gen_abort_all(s);
    wait_gens(s, 1, NULL);
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    MHD_stop_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    if (state != 0) {
        if (s->en) tl_engine_free(s->en);
        if (s->be) s->be->free(s->be);
        if (s->m) tl_model_free(s->m);
    }
    if (ret == 0) fprintf(stderr, "serve: stopped cleanly\n");
out:
    /* SIGINT/SIGTERM stay blocked: a second signal sent during shutdown must not kill the process
     * with the default action once we unblock; the caller exits next. */
    (void)old;
    free(s->served_name);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return ret;
}

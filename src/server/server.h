/* server.h: the OpenAI-compatible HTTP server (libmicrohttpd + jansson) over the batching engine.
 *
 * Layers, each testable alone:
 *   api.c     request JSON -> tl_api_req (validation, OpenAI error shapes); response / SSE chunk JSON
 *   stop.c    stop strings over streamed text: a suffix that may start a stop string is held back
 *   metrics.c Prometheus text (counters, histograms) from server counters + tl_engine_stats_get
 *   http.c    the daemon: routing, auth, body limit, suspend/resume streaming, disconnect -> cancel */
#ifndef TL_SERVER_H
#define TL_SERVER_H

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

/* ---------------- requests ---------------- */
typedef enum { TL_API_CHAT = 0, TL_API_COMPLETION = 1 } tl_api_kind;

#define TL_API_MAX_STOP 16
typedef struct tl_api_req {
    tl_api_kind kind;
    char *model;              /* NULL when absent */
    tl_chat_msg *msgs;        /* [n_msgs] chat only; role and content strings owned */
    int n_msgs;
    char *prompt;             /* completions: the prompt text, or NULL when given as token ids */
    int32_t *prompt_ids;      /* completions: prompt given as an array of token ids */
    int n_prompt_ids;
    int max_tokens;           /* -1: not given (up to the context limit) */
    tl_sampling s;            /* sampling (engine.h); temperature default 1 as in OpenAI */
    bool seed_given;
    /* which sampling fields the request set (the rest may take the model's generation_config.json defaults) */
    bool temperature_given, top_p_given, top_k_given, repetition_penalty_given;
    char *stop[TL_API_MAX_STOP];
    int n_stop;
    bool stream, include_usage;
    bool logprobs;            /* chat: logprobs=true; completions: logprobs=N given */
    int top_logprobs;         /* alternatives per position, 0..20 */
    bool echo;                /* completions: rejected when true (not supported) */
    bool ignore_eos;          /* vLLM extension: generate max_tokens even past EOS (benchmarks) */
    char *user;
} tl_api_req;

/* Parses and validates a request body. Returns 0, or -1 with a message naming the bad field in e
 * (and *param set to the field name, a static string, when known). r is always safe to free. */
int tl_api_parse(const char *body, size_t len, tl_api_kind kind, tl_api_req *r, const char **param, tl_error *e);
void tl_api_req_free(tl_api_req *r);

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string. param, code may be NULL. */
char *tl_api_error_json(const char *message, const char *type, const char *param, const char *code);
/* Context overflow error (400): names prompt tokens, the limit and the requested tokens. Its param is
 * prompt_param ("messages" or "prompt") when the prompt alone fills the context, else "max_tokens". */
char *tl_api_context_error_json(int n_prompt, int n_ctx, int max_tokens, const char *prompt_param);

/* One token's log-probability with its alternatives (text is the token's raw bytes). */
typedef struct tl_api_logprob {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[TL_MAX_LOGPROBS];
    float top_logprobs[TL_MAX_LOGPROBS];
} tl_api_logprob;

/* What a response needs besides the text. */
typedef struct tl_api_resp {
    tl_api_kind kind;
    const char *id;           /* "chatcmpl-..." / "cmpl-..." */
    const char *model;
    int64_t created;          /* unix seconds */
    /* Raw bytes of a token for logprobs (tl_tokenizer_piece); NULL: tokens shown as "<id>". */
    const char *(*piece)(const void *tok, int32_t id, size_t *len);
    const void *tok;
    bool logprobs;            /* include a logprobs object */
    int n_prompt, n_completion, n_cached;
    size_t text_offset;       /* completions stream: characters of token text in earlier chunks' logprobs */
} tl_api_resp;

/* "stop", "length" or NULL for TL_FINISH_NONE (cancelled/error map to "stop" / NULL by caller). */
const char *tl_api_finish_reason(tl_finish f);
/* Whole (non-streamed) response JSON. */
char *tl_api_response_json(const tl_api_resp *r, const char *text, size_t len, const tl_api_logprob *lp, int n_lp,
                           const char *finish_reason);
/* One SSE event "data: {...}\n\n" appended to *buf (malloc'd, grown): a chunk with delta text
 * (first: with role for chat), optional logprobs, finish_reason or NULL; usage_null adds
 * "usage": null (when include_usage is on). */
typedef struct tl_strbuf {
    char *p;
    size_t len, cap;
} tl_strbuf;
void tl_strbuf_append(tl_strbuf *b, const char *s, size_t n);
void tl_strbuf_free(tl_strbuf *b);
/* A completions chunk with logprobs advances r->text_offset, where the next chunk's text_offset starts. */
void tl_api_sse_chunk(tl_strbuf *out, tl_api_resp *r, bool first, const char *text, size_t len,
                      const tl_api_logprob *lp, int n_lp, const char *finish_reason, bool usage_null);
/* The include_usage chunk: "choices": [] and usage. */
void tl_api_sse_usage(tl_strbuf *out, const tl_api_resp *r);
/* An error event inside a stream (e.g. server shutting down). */
void tl_api_sse_error(tl_strbuf *out, const char *message, const char *type);
void tl_api_sse_done(tl_strbuf *out); /* "data: [DONE]\n\n" */

/* ---------------- stop strings ---------------- */
/* Text streams in; what may still be the start of a stop string is held back, never emitted. */
typedef struct tl_stopper {
    const char *const *stop;  /* [n_stop] borrowed */
    int n_stop;
    size_t max_len;           /* longest stop string */
    tl_strbuf pending;        /* held-back text */
    bool matched;
} tl_stopper;
void tl_stopper_init(tl_stopper *st, const char *const *stop, int n_stop);
void tl_stopper_free(tl_stopper *st);
/* Feeds text; appends to out what is now safe to emit. Returns 1 once a stop string matched (the
 * text before it was appended; the stop string and anything after are dropped), else 0. */
int tl_stopper_push(tl_stopper *st, const char *text, size_t len, tl_strbuf *out);
/* End of generation without a match: emits what was held back. */
void tl_stopper_flush(tl_stopper *st, tl_strbuf *out);

/* ---------------- metrics ---------------- */
#define TL_METRICS_NB 14
typedef struct tl_histogram {
    double bounds[TL_METRICS_NB]; /* upper bounds, seconds; +Inf implied */
    int64_t counts[TL_METRICS_NB + 1];
    double sum;
    int64_t n;
} tl_histogram;
void tl_histogram_init(tl_histogram *h, const double *bounds, int nb);
void tl_histogram_add(tl_histogram *h, double v);
/* Appends "name_bucket{le=...} N" lines, _sum and _count, with HELP/TYPE, to out. */
void tl_histogram_write(const tl_histogram *h, const char *name, const char *help, tl_strbuf *out);

/* Server-side counters (the HTTP layer updates them under its own lock). */
#define TL_METRICS_N_STATUS 12
extern const int tl_metrics_status_codes[TL_METRICS_N_STATUS]; /* 200, 400, ... ; last slot: other */
typedef struct tl_server_counters {
    int64_t by_status[TL_METRICS_N_STATUS]; /* finished HTTP requests by status code */
    int64_t disconnects;                    /* generation requests cancelled by a client disconnect */
    int64_t finish_stop, finish_length;     /* generation requests by finish reason */
    int64_t prompt_tokens, generation_tokens;
    int active;                             /* generation requests in flight */
    tl_histogram ttft, itl, e2e;            /* seconds */
} tl_server_counters;
void tl_server_counters_init(tl_server_counters *c);
void tl_server_counters_status(tl_server_counters *c, int status);
/* Prometheus text exposition of c and (when non-NULL) the engine's stats. */
void tl_metrics_render(const tl_server_counters *c, const tl_engine_stats *es, bool ready, tl_strbuf *out);

/* ---------------- the server ---------------- */
typedef struct tl_server_opts {
    const char *host;          /* default "127.0.0.1" */
    int port;                  /* default 8000; 0: any free port (printed) */
    const char *api_key;       /* NULL: no auth */
    const char *served_name;   /* NULL: the model's name */
    const char *model_path;
    tl_load_opts load;
    tl_engine_opts eng;
    const char *backend;       /* "cpu", "cuda", "auto" */
    int n_threads;
    float gpu_mem_util;        /* CUDA: fraction of free memory (default 0.9) */
    size_t max_body;           /* request body bytes at most (default 4 MiB) */
    int max_connections;       /* default 256 */
    int conn_timeout_s;        /* idle connection timeout (default 60) */
    int http_threads;          /* MHD worker threads (default 2) */
    double shutdown_grace_s;   /* SIGINT/SIGTERM: wait this long for in-flight requests, then cancel */
} tl_server_opts;
void tl_server_opts_default(tl_server_opts *o);

/* Starts the listener, loads the model (GET /health answers 503 meanwhile), serves until SIGINT or
 * SIGTERM, then finishes or cancels in-flight requests and returns 0 (or 1 on a start/load error). */
int tl_server_run(const tl_server_opts *o);

#endif

/* engine.h: the continuous-batching engine. Requests (token ids + sampling + limits + a callback)
 * join at any time; each step the scheduler takes running decodes first, then prefill chunks of
 * waiting requests within a token budget, runs one forward over the flat mixed batch, samples
 * per sequence and calls each request's callback with its new token.
 *
 * Threading: tl_engine_add / tl_engine_cancel / tl_engine_stats are thread-safe. Steps run either
 * on the caller's thread (tl_engine_step, for the CLI and bench) or on a background thread
 * (tl_engine_start / tl_engine_stop, for the server). Callbacks run on the stepping thread. */
#ifndef TL_ENGINE_H
#define TL_ENGINE_H

#include "backend/backend.h"
#include "model/model.h"

typedef struct tl_sampling {
    float temperature;        /* 0: greedy (argmax) */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off; HF style over prompt + generated tokens */
    float presence_penalty;   /* 0: off; OpenAI style over generated tokens */
    float frequency_penalty;  /* 0: off */
    uint64_t seed;            /* per-request RNG seed: same seed, same output */
    int n_logprobs;           /* 0: none; >0: top-n logprobs of each position (<= 20) */
} tl_sampling;
void tl_sampling_default(tl_sampling *s); /* greedy, everything off */

typedef struct tl_req_params {
    tl_sampling s;
    int max_tokens;           /* generated tokens at most */
    bool ignore_eos;          /* bench: keep going past EOS */
    const int32_t *stop_ids;  /* extra stop token ids (copied) */
    int n_stop_ids;
} tl_req_params;

typedef enum {
    TL_FINISH_NONE = 0,
    TL_FINISH_STOP,       /* EOS / stop token / callback asked to stop */
    TL_FINISH_LENGTH,     /* max_tokens or context limit */
    TL_FINISH_CANCELLED,  /* tl_engine_cancel */
    TL_FINISH_ERROR,      /* e.g. the request can never fit in the KV pool */
} tl_finish;

#define TL_MAX_LOGPROBS 20
typedef struct tl_token_event {
    int64_t req_id;
    int32_t token;            /* the new token, or -1 on a final event that carries no token */
    float logprob;            /* log-probability of token under the (unmodified) model distribution;
                                 computed when s.n_logprobs > 0, and always when the backend samples on the
                                 device (CUDA: there, with penalties and n_logprobs == 0, under the penalized
                                 logits; with n_logprobs > 0 always of the raw ones); 0 otherwise (on the host it
                                 costs a pass over n_vocab) */
    int n_top;                /* top-n alternatives when requested */
    int32_t top_ids[TL_MAX_LOGPROBS];
    float top_logprobs[TL_MAX_LOGPROBS];
    tl_finish finish;         /* != NONE: last event of this request */
    int n_prompt, n_generated, n_cached; /* n_cached: prompt tokens served from the prefix cache */
    double t_first_token;     /* seconds from add to first token (valid once n_generated >= 1) */
    const char *error;        /* message when finish == TL_FINISH_ERROR */
} tl_token_event;

/* Return non-zero to finish the request now (finish = STOP), e.g. when a stop string matched. When the
 * event itself was not final, one more event follows: token -1, finish = STOP (the request's last). */
typedef int (*tl_token_cb)(const tl_token_event *ev, void *user);

typedef struct tl_engine_opts {
    int max_batch_tokens;     /* token budget per step (default 2048) */
    int max_seqs;             /* running sequences at most (default 64) */
    int prefill_chunk;        /* longest prefill piece per sequence per step (default = max_batch_tokens) */
    int block_size;           /* KV block size in tokens (default 16) */
    size_t kv_mem;            /* KV pool bytes (0: backend default) */
    tl_dtype kv_dtype;        /* TL_F32 (default on CPU), TL_F16, TL_BF16 */
    bool no_prefix_cache;     /* prefix caching is on unless set */
    int max_queue;            /* waiting requests at most; tl_engine_add fails beyond (0: unbounded) */
} tl_engine_opts;
void tl_engine_opts_default(tl_engine_opts *o);

typedef struct tl_engine tl_engine;
tl_engine *tl_engine_new(tl_model *m, tl_backend *be, const tl_engine_opts *o, tl_error *e);
void tl_engine_free(tl_engine *en);

/* Returns the request id (> 0), or -1 with e filled: prompt empty / too long for the context,
 * queue full (e->msg starts with "queue full"). The prompt is copied. */
int64_t tl_engine_add(tl_engine *en, const int32_t *prompt, int n_prompt, const tl_req_params *p, tl_token_cb cb,
                      void *user, tl_error *e);
/* Cancels at any point; its blocks are freed at the next step boundary and its callback gets a
 * final TL_FINISH_CANCELLED event. Unknown or finished ids are ignored. */
void tl_engine_cancel(tl_engine *en, int64_t id);

/* One scheduler step on the caller's thread. Returns the number of unfinished requests. */
int tl_engine_step(tl_engine *en);
/* Runs steps until every request has finished. */
void tl_engine_run_until_idle(tl_engine *en);
/* Background stepping thread (server). stop: finishes no new work, cancels what remains. */
int tl_engine_start(tl_engine *en, tl_error *e);
void tl_engine_stop(tl_engine *en);

typedef struct tl_engine_stats {
    int n_running, n_waiting;
    int kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free;
    int kv_blocks_peak;
    int64_t prefix_queries, prefix_hits;     /* blocks looked up / found in the prefix cache */
    int64_t n_preempted;
    int64_t prompt_tokens, generated_tokens; /* totals */
    int64_t steps;
    int64_t host_rows; /* logit rows the engine sent to the host sampler (a device-sampling backend without their
                        * penalties / top-n logprobs; the rows a backend defers itself are not counted) */
    double t_schedule, t_batch, t_forward, t_post; /* seconds summed over steps: intake + schedule, batch
                                                      building, backend forward (incl. GPU wait), sampling + events */
} tl_engine_stats;
void tl_engine_stats_get(tl_engine *en, tl_engine_stats *s);
const tl_model *tl_engine_model(const tl_engine *en);

#endif

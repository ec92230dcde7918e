/* engine_int.h: the engine's private state, shared by engine.c (requests, threads, stats) and
 * sched.c (one step: schedule, batch, forward, sample, finish). Not a public interface. */
#ifndef TL_ENGINE_INT_H
#define TL_ENGINE_INT_H

#include <pthread.h>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "kv/block_manager.h"

typedef struct tl_seq {
    int64_t id;
    tl_req_params p;         /* p.stop_ids points at stop_ids below */
    int32_t *stop_ids;       /* [p.n_stop_ids] */
    tl_token_cb cb;
    void *user;
    int32_t *tokens;         /* [cap] prompt then generated ids */
    int n_tokens, cap;
    int n_prompt, n_generated;
    int n_computed;          /* tokens whose K/V are in the cache (positions 0..n_computed-1), or will be once the
                              * steps launched so far have run */
    int n_pending;           /* tokens[n_tokens - n_pending ..] are placeholders TL_TOKEN_PREV(r): sampled by a
                              * launched step, not yet collected (0..2) */
    int inflight;            /* launched steps holding this sequence, not yet collected */
    int n_cached;            /* prompt tokens served by the prefix cache at first admission */
    bool admitted_once;
    tl_bm_seq bt;            /* block table */
    uint64_t rng;
    double t_add, t_first;
    int sched_n;             /* tokens scheduled this step (0: not scheduled) */
    bool done;               /* finished (its final event sent); retired once no launched step holds it */
    bool zombie;             /* done and out of the running list, a launched step still holding it */
    struct tl_seq *next;     /* incoming list link */
} tl_seq;

/* One step's record from its launch until its results are processed. With a backend that launches and
 * collects (backend.h) two exist: step t in flight while step t + 1 is built and launched. */
typedef struct tl_step {
    int nb, n_rows;
    bool in_flight;          /* launched, not yet collected */
    bool failed;
    char msg[512];           /* the backend's error when failed (tl_error.msg) */
    tl_seq **owner;          /* [max_seqs] the sequences of the batch, in batch order */
    int *upto;               /* [max_seqs] positions < upto have K/V once this step ran (the prefix cache takes no
                              * more from this step: a later launch may fail) */
    int *row;                /* [max_seqs] its logit row, -1: none */
    uint64_t *rng;           /* [max_seqs] per row: the RNG state before the row's draw (for a host fallback) */
    int32_t *tok;            /* [max_seqs] per row: sampled by the backend (-1: the host samples) */
    float *lp;               /* [max_seqs] their logprobs */
} tl_step;

/* A double-ended queue of waiting sequences (preempted ones go to the front). */
typedef struct tl_seq_deque {
    tl_seq **a;
    int head, n, cap;
} tl_seq_deque;

struct tl_engine {
    tl_model *m;
    tl_backend *be;
    tl_engine_opts o;
    int n_vocab, n_ctx, bs, max_blocks_per_seq;
    tl_kv kv;
    tl_block_manager *bm;
    tl_sampler sp;

    /* owned by the stepping thread */
    tl_seq **running;        /* [max_seqs] in admission order (oldest first) */
    int n_running;
    tl_seq_deque waiting;
    int32_t *b_tokens, *b_pos, *b_rows; /* [max_batch_tokens] */
    tl_batch_seq *b_seqs;    /* [max_seqs] */
    float *logits;           /* [max_seqs, n_vocab] (device sampling: only rows sampled on the host) */
    bool device_sample;      /* be->forward_sample, unless TL_ENGINE_HOST_SAMPLE=1 */
    bool pipelined;          /* be->launch / collect: step t + 1 launched before step t is collected, unless
                              * TL_ENGINE_ASYNC=0 */
    tl_row_sampling *b_rs;   /* [max_seqs] per logit row: parameters for the backend's sampler */
    bool dev_pen;            /* penalized rows sampled by the backend (be->penalties, unless TL_ENGINE_HOST_PENALTIES=1) */
    bool dev_top;            /* top-n logprobs rows sampled by the backend (be->collected_top, unless
                              * TL_ENGINE_HOST_LOGPROBS=1) */
    bool dev_pen_top;        /* rows with both sampled by the backend (be->penalties_top; their logprobs raw) */
    int32_t *b_pen;          /* the step's penalty histories (tl_row_sampling.pen), grown on demand */
    size_t b_pen_n, b_pen_cap; /* int32 used / allocated */
    size_t *b_pen_off;       /* [max_seqs] per logit row: its entries' offset in b_pen */
    tl_step stp[2];          /* step records, used alternately */
    int stp_next;            /* the record the next step fills */
    tl_step *flight;         /* the launched step not yet collected (pipelined), or NULL */
    double t_sched, t_batch, t_forward, t_post; /* host seconds per phase, summed over steps */
    double t_collect;        /* seconds waiting in collect during the current step (part of t_forward) */
    int64_t n_preempted, prompt_tokens, generated_tokens, steps, host_rows;
    int64_t *cancel_local;   /* [cap_cancel] copy of the cancel requests taken this step */

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tl_seq *in_head, *in_tail; /* requests added since the last step */
    int n_incoming;
    int64_t *cancel_ids;
    int n_cancel, cap_cancel;
    int64_t next_id;
    int n_live;              /* added and not yet finished */
    tl_engine_stats st;      /* snapshot at the end of the last step */
    bool thread_on, stop_req;
    pthread_t th;
};

/* sched.c */
int tl_engine_step_locked_out(tl_engine *en); /* one step; takes mu only briefly */
void tl_engine_drain(tl_engine *en);          /* collects and processes the step in flight, if any */
/* Final event (token -1), then releases the blocks and frees s, or, while a launched step holds s, marks it a
 * zombie that the step's collection retires; the caller has taken s out of running / waiting. */
void tl_engine_finish(tl_engine *en, tl_seq *s, tl_finish why, const char *msg);
void tl_engine_publish(tl_engine *en); /* stats snapshot under mu */
void tl_seq_free(tl_seq *s);
void tl_deque_push_back(tl_seq_deque *d, tl_seq *s);
void tl_deque_push_front(tl_seq_deque *d, tl_seq *s);
tl_seq *tl_deque_pop_front(tl_seq_deque *d);
tl_seq *tl_deque_get(const tl_seq_deque *d, int i);
void tl_deque_remove(tl_seq_deque *d, int i);

#endif

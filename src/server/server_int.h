/* server_int.h: state shared by the server's files (http.c: daemon, routing, lifecycle;
 * gen.c: one generation request between the engine and its connection). Not a public header. */
#ifndef TL_SERVER_INT_H
#define TL_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "server/server.h"

typedef struct srv_gen srv_gen;

typedef struct srv {
    tl_server_opts o;
    struct MHD_Daemon *d;
    atomic_int ready;          /* 0 loading, 1 serving, -1 load failed */
    atomic_bool shutting_down; /* no new generation requests */
    tl_model *m;
    tl_backend *be;
    tl_engine *en;
    const tl_tokenizer *tok;
    char *served_name;
    int n_ctx;
    int32_t eos[TL_MAX_EOS];
    int n_eos;
    pthread_mutex_t mu;        /* counters, registry, id counter */
    tl_server_counters c;
    srv_gen *gens;             /* registry of live generation requests (watcher, shutdown) */
    int n_gens;
    uint64_t next_id;
    uint64_t seed_salt;
} srv;

/* One generation request. Owned by up to three references: its connection (released in the
 * completion callback), the engine (released on the final event) and a streamed response. */
struct srv_gen {
    pthread_mutex_t mu;
    int refs;
    srv *s;
    srv_gen *prev, *next;      /* registry, under s->mu */
    struct MHD_Connection *conn;
    int fd;                    /* the client socket, polled for hang-ups while suspended */
    bool conn_alive, suspended, client_gone;
    tl_api_req req;
    tl_api_resp resp;
    char id[48];
    int64_t eid;               /* engine request id (0 before tl_engine_add returned) */
    double t_arrival, t_last;

    /* engine thread only */
    tl_detok *dt;
    tl_stopper st;
    bool stop_hit;
    int n_seen;                /* token events seen */

    /* under mu: what the engine produced and the reader has not taken yet */
    tl_strbuf text;
    tl_api_logprob *lp;
    int n_lp, cap_lp;
    bool finished;
    tl_finish finish;
    char err[256];
    int n_prompt, n_gen, n_cached;

    /* MHD thread only (streaming reader) */
    tl_strbuf out;
    size_t out_off;
    bool first_sent, done;
};

/* gen.c */
/* Starts a generation request for a parsed body; queues a response (error, stream) or suspends the
 * connection. Returns MHD_YES/MHD_NO; *status is the HTTP status queued (0 when suspended). */
enum MHD_Result tl_srv_gen_start(srv *s, struct MHD_Connection *c, tl_api_kind kind, const char *body, size_t len,
                                 srv_gen **out, int *status);
/* Called again when a suspended non-streamed request resumes. */
enum MHD_Result tl_srv_gen_resume(srv_gen *g, int *status);
/* The connection finished (any reason). Cancels the engine request when still running and
 * returns true then (the client went away before the end). */
bool tl_srv_gen_conn_done(srv_gen *g, bool completed_ok);
/* Shutdown: resumes every suspended connection, marking its client gone, so MHD can close it. */
void tl_srv_gen_abort_all(srv *s);
/* Watcher: cancels requests whose client hung up while their connection was suspended. */
void tl_srv_gen_watch(srv *s);
/* Puts bos in front of the n ids of an encoded prompt when the vocabulary asks for it and they do not
 * start with it already: the prompt the engine is given, which /tokenize reports too. Returns n. */
int tl_srv_add_bos(const tl_tokenizer *tok, int32_t **ids, int n);

/* http.c */
enum MHD_Result tl_srv_send_json(struct MHD_Connection *c, int status, char *json); /* takes json */
enum MHD_Result tl_srv_send_error(struct MHD_Connection *c, int status, const char *msg, const char *type,
                                  const char *param, const char *code);
void tl_srv_count_status(srv *s, int status);

#endif

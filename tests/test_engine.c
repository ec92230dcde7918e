/* test_engine.c: the scheduler and engine loop on the fake backend (tests/fake_backend.h), whose logits
 * are a hash of the history read back from the paged KV cache. Every request's tokens are compared
 * with a reference computed from the token ids alone, across batch compositions, arrival steps,
 * chunk sizes, block sizes, prefix-cache hits and preemption (tiny pools); plus stop rules, limits,
 * cancellation, bad input, and the background thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/engine.h"
#include "fake_backend.h"
#include "kv/block_manager.h"
#include "tl_test.h"

#define NV 61

/* Every test runs in three modes: 0 the fake as a plain forward (host sampling), 1 with device sampling and
 * launch / collect but TL_ENGINE_ASYNC=0 (forward_sample, one step at a time), 2 pipelined (step t + 1
 * launched before step t is collected). */
static int g_mode;

static void fake_init(tl_backend *be, fake_stats *fs) {
    fake_backend_init(be, fs);
    if (g_mode) fake_backend_async(be), be->penalties = 1;
}
#define MAXR 24
#define MAXP 96
#define MAXO 64

typedef struct req {
    int32_t prompt[MAXP];
    int n_prompt, max_tokens, add_step;
    tl_req_params p;
    int64_t id;
    int32_t out[MAXO + 4];
    float lp[MAXO + 4];
    int n_out, n_final, n_after_final, n_cached, stop_after;
    tl_finish fin;
    char err[256];
    atomic_int done;
} req;

static int on_token(const tl_token_event *ev, void *user) {
    req *r = user;
    if (r->n_final) r->n_after_final++;
    if (ev->token >= 0 && r->n_out < MAXO + 4) r->lp[r->n_out] = ev->logprob, r->out[r->n_out++] = ev->token;
    if (ev->finish != TL_FINISH_NONE) {
        r->n_final++;
        r->fin = ev->finish;
        r->n_cached = ev->n_cached;
        if (ev->error) snprintf(r->err, sizeof r->err, "%s", ev->error);
        atomic_store(&r->done, 1);
    }
    return r->stop_after > 0 && r->n_out >= r->stop_after;
}

static void req_init(req *r, int n_prompt, int max_tokens, int add_step) {
    memset(r, 0, sizeof *r);
    r->n_prompt = n_prompt;
    r->max_tokens = max_tokens;
    r->add_step = add_step;
    tl_sampling_default(&r->p.s);
    r->p.max_tokens = max_tokens;
}

/* Runs reqs through a fresh engine, adding each at its step. Returns the engine's final stats. */
static tl_engine_stats run(tl_model *m, const tl_engine_opts *o, req *rs, int n, fake_stats *fs_out) {
    tl_backend be;
    fake_stats fs;
    fake_init(&be, &fs);
    tl_error e = {{0}};
    tl_engine *en = tl_engine_new(m, &be, o, &e);
    TL_ASSERT(en);
    int added = 0, live = 0;
    for (int step = 0; added < n || live > 0; step++) {
        for (int i = 0; i < n; i++)
            if (rs[i].add_step == step) {
                rs[i].id = tl_engine_add(en, rs[i].prompt, rs[i].n_prompt, &rs[i].p, on_token, &rs[i], &e);
                CHECK(rs[i].id > 0, "add: %s", e.msg);
                added++;
            }
        live = tl_engine_step(en);
        TL_ASSERT(step < 100000);
    }
    tl_engine_stats st;
    tl_engine_stats_get(en, &st);
    CHECK(st.kv_blocks_used == 0 && st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total,
          "blocks leaked: used %d free %d cached %d of %d", st.kv_blocks_used, st.kv_blocks_free, st.kv_blocks_cached,
          st.kv_blocks_total);
    tl_engine_free(en);
    if (fs_out) *fs_out = fs;
    return st;
}

/* Each request must have produced exactly the reference greedy tokens and one final event. */
static int check_greedy(req *rs, int n, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int32_t ref[MAXO];
        int nr = fake_ref_greedy(rs[i].prompt, rs[i].n_prompt, NV, rs[i].max_tokens, NULL, 0, ref);
        bool ok = rs[i].n_out == nr && !memcmp(ref, rs[i].out, sizeof(int32_t) * nr) && rs[i].n_final == 1 &&
                  rs[i].n_after_final == 0 && rs[i].fin == TL_FINISH_LENGTH;
        if (!ok && bad++ < 3)
            fprintf(stderr, "%s: request %d (prompt %d): %d tokens vs %d, finish %d, finals %d, err '%s'\n", what, i,
                    rs[i].n_prompt, rs[i].n_out, nr, rs[i].fin, rs[i].n_final, rs[i].err);
    }
    return bad;
}

/* A mix: prompts of 1..70 tokens, a third sharing a 40-token system prompt, arriving over 10 steps. */
static void make_mix(req *rs, int n, unsigned long long seed) {
    unsigned long long r = seed;
    int32_t sys[40];
    for (int i = 0; i < 40; i++) sys[i] = (int32_t)(tl_t_rng(&r) % NV);
    for (int i = 0; i < n; i++) {
        int np = 1 + (int)(tl_t_rng(&r) % 70), mt = 1 + (int)(tl_t_rng(&r) % 20);
        req_init(&rs[i], np, mt, (int)(tl_t_rng(&r) % 10));
        bool shared = i % 3 == 0 && np > 40;
        for (int j = 0; j < np; j++) rs[i].prompt[j] = shared && j < 40 ? sys[j] : (int32_t)(tl_t_rng(&r) % NV);
    }
}

/* An engine configuration of the table-driven tests */
typedef struct cfg {
    int mbt, chunk, bs, pool_blocks, max_seqs;
    bool no_prefix;
} cfg;

static tl_engine_opts cfg_opts(const cfg *c, const tl_model *m) {
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_batch_tokens = c->mbt;
    o.prefill_chunk = c->chunk;
    o.block_size = c->bs;
    o.max_seqs = c->max_seqs;
    o.no_prefix_cache = c->no_prefix;
    if (c->pool_blocks) o.kv_mem = (size_t)c->pool_blocks * tl_kv_block_bytes(&m->cfg, o.block_size, TL_F32);
    return o;
}

static void test_invariance(tl_model *m) {
    const cfg cfgs[] = {
        {2048, 0, 16, 0, 64, false}, /* everything in one step */
        {2048, 0, 16, 0, 64, true},
        {32, 7, 4, 0, 64, false},    /* chunked: 7-token pieces over 4-token blocks */
        {16, 5, 3, 0, 8, false},
        {64, 1, 16, 0, 64, false},   /* one token at a time */
        {48, 13, 4, 24, 64, false},  /* tiny pool: 96 tokens for requests up to 90 -> preemption */
        {48, 13, 4, 24, 64, true},
        {200, 0, 8, 12, 4, false},   /* 96 tokens, unchunked */
    };
    for (int c = 0; c < (int)(sizeof cfgs / sizeof cfgs[0]); c++)
        for (unsigned long long seed = 1; seed <= 3; seed++) {
            static req rs[MAXR];
            make_mix(rs, MAXR, seed * 7 + (unsigned long long)c);
            tl_engine_opts o = cfg_opts(&cfgs[c], m);
            fake_stats fs;
            tl_engine_stats st = run(m, &o, rs, MAXR, &fs);
            char what[64];
            snprintf(what, sizeof what, "config %d seed %llu", c, seed);
            CHECK(check_greedy(rs, MAXR, what) == 0, "%s", what);
            int64_t gen = 0;
            for (int i = 0; i < MAXR; i++) gen += rs[i].n_out;
            CHECK(fs.logit_rows == gen, "%s: logits for %lld rows, %lld tokens sampled", what, (long long)fs.logit_rows,
                  (long long)gen);
            CHECK(fs.max_n_tok <= cfgs[c].mbt && fs.max_n_seq <= cfgs[c].max_seqs);
            CHECK(st.generated_tokens == gen);
            if (g_mode == 2) /* greedy rows only: every step may fly (tiny pools: not while the pool is short) */
                CHECK(fs.max_in_flight == 2 && fs.prev_tokens >= (cfgs[c].pool_blocks ? 1 : gen / 2), "%s: %d in flight, %lld placeholders for %lld tokens",
                      what, fs.max_in_flight, (long long)fs.prev_tokens, (long long)gen);
            if (cfgs[c].pool_blocks) CHECK(st.n_preempted > 0, "%s: the tiny pool should preempt", what);
            if (!cfgs[c].no_prefix && !cfgs[c].pool_blocks && cfgs[c].chunk != 1) /* 1: nothing completes early enough */
                CHECK(st.prefix_hits > 0, "%s: shared system prompts should hit the cache", what);
            if (cfgs[c].no_prefix) CHECK(st.prefix_hits == 0);
        }
}

/* The prefix cache skips recomputation: a repeated 64-token prompt computes only its last block. */
static void test_prefix_skip(tl_model *m) {
    static req rs[2];
    for (int i = 0; i < 2; i++) {
        req_init(&rs[i], 64, 3, i * 20); /* the second arrives after the first finished */
        for (int j = 0; j < 64; j++) rs[i].prompt[j] = (j * 7 + 3) % NV;
    }
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    fake_stats fs;
    run(m, &o, rs, 2, &fs);
    CHECK(check_greedy(rs, 2, "prefix skip") == 0);
    CHECK(rs[0].n_cached == 0 && rs[1].n_cached == 48, "cached %d %d", rs[0].n_cached, rs[1].n_cached);
    /* first: 64 + 2 decodes; second: 16 (the last block, recomputed for its logits) + 2 */
    CHECK(fs.tokens == 66 + 18, "computed %lld tokens", (long long)fs.tokens);
}

/* Seeded sampling: the same seed gives the same tokens alone and batched with others. */
static void test_seeded(tl_model *m) {
    static req alone[1], mixed[MAXR];
    make_mix(mixed, MAXR, 99);
    for (int i = 0; i < MAXR; i++) {
        mixed[i].p.s.temperature = 0.9f;
        mixed[i].p.s.top_p = 0.95f;
        mixed[i].p.s.top_k = 20;
        mixed[i].p.s.seed = 1000 + (uint64_t)i;
    }
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_batch_tokens = 24;
    o.prefill_chunk = 9;
    o.block_size = 4;
    run(m, &o, mixed, MAXR, NULL);
    int bad = 0, differs = 0;
    for (int i = 0; i < MAXR; i++) {
        alone[0] = mixed[i];
        alone[0].n_out = alone[0].n_final = 0;
        alone[0].add_step = 0;
        tl_engine_opts o1;
        tl_engine_opts_default(&o1);
        run(m, &o1, alone, 1, NULL);
        bad += alone[0].n_out != mixed[i].n_out || memcmp(alone[0].out, mixed[i].out, sizeof(int32_t) * mixed[i].n_out);
        int32_t ref[MAXO];
        int nr = fake_ref_greedy(mixed[i].prompt, mixed[i].n_prompt, NV, mixed[i].max_tokens, NULL, 0, ref);
        differs += nr != mixed[i].n_out || memcmp(ref, mixed[i].out, sizeof(int32_t) * nr);
    }
    CHECK(bad == 0, "%d seeded requests differ alone vs batched", bad);
    CHECK(differs > 0, "sampling at temperature 0.9 never left the greedy path");
}

static void test_stops(tl_model *m) {
    int32_t prompt[5] = {1, 2, 3, 4, 5}, ref[40];
    int nr = fake_ref_greedy(prompt, 5, NV, 40, NULL, 0, ref);
    int32_t stop_tok = ref[5];
    int first = 0;
    while (ref[first] != stop_tok) first++; /* its first occurrence */
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    static req r[4];
    for (int i = 0; i < 4; i++) {
        req_init(&r[i], 5, 40, 0);
        memcpy(r[i].prompt, prompt, sizeof prompt);
    }
    r[0].p.stop_ids = &stop_tok; /* stop id */
    r[0].p.n_stop_ids = 1;
    r[2].stop_after = 3;         /* callback asks to stop */
    tl_model m2 = *m;            /* EOS from the model config */
    m2.cfg.eos_ids[0] = stop_tok;
    m2.cfg.n_eos = 1;
    r[3].p.ignore_eos = true;
    run(&m2, &o, r, 4, NULL);
    CHECK(r[0].fin == TL_FINISH_STOP && r[0].n_out == first + 1 && r[0].out[first] == stop_tok, "stop id: %d tokens",
          r[0].n_out);
    CHECK(r[1].fin == TL_FINISH_STOP && r[1].n_out == first + 1, "eos: finish %d after %d", r[1].fin, r[1].n_out);
    CHECK(r[2].fin == TL_FINISH_STOP && r[2].n_out == 3 && r[2].n_final == 1 && r[2].n_after_final == 0,
          "callback stop: %d tokens", r[2].n_out);
    CHECK(r[3].fin == TL_FINISH_LENGTH && r[3].n_out == nr && !memcmp(r[3].out, ref, sizeof(int32_t) * nr),
          "ignore_eos");

    /* context limit: n_ctx 40, prompt 30 -> 10 tokens, LENGTH */
    tl_model m3 = *m;
    m3.cfg.n_ctx = 40;
    static req c[1];
    req_init(&c[0], 30, 100, 0);
    for (int j = 0; j < 30; j++) c[0].prompt[j] = j;
    run(&m3, &o, c, 1, NULL);
    CHECK(c[0].fin == TL_FINISH_LENGTH && c[0].n_out == 10, "context limit: %d tokens", c[0].n_out);
}

/* A request that can never fit ends with an error; others carry on. */
static void test_too_big(tl_model *m) {
    static req r[3];
    req_init(&r[0], 20, 5, 0);  /* prompt larger than the pool */
    req_init(&r[1], 10, 20, 0); /* grows past the pool while decoding */
    req_init(&r[2], 3, 3, 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < r[i].n_prompt; j++) r[i].prompt[j] = (j + i) % NV;
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.block_size = 4;
    o.kv_mem = 4 * tl_kv_block_bytes(&m->cfg, 4, TL_F32); /* 16 tokens */
    run(m, &o, r, 3, NULL);
    CHECK(r[0].fin == TL_FINISH_ERROR && strstr(r[0].err, "pool holds 16 tokens"), "err '%s'", r[0].err);
    CHECK(r[1].fin == TL_FINISH_ERROR && r[1].n_out == 7, "computed 16 positions, sampled 7, then failed: %d, '%s'", r[1].n_out,
          r[1].err);
    CHECK(check_greedy(&r[2], 1, "small request beside") == 0);
}

static void test_cancel(tl_model *m) {
    tl_backend be;
    fake_stats fs;
    fake_init(&be, &fs);
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_seqs = 2;
    o.block_size = 4;
    tl_error e = {{0}};
    tl_engine *en = tl_engine_new(m, &be, &o, &e);
    static req r[4];
    for (int i = 0; i < 4; i++) {
        req_init(&r[i], 9, 30, 0);
        for (int j = 0; j < 9; j++) r[i].prompt[j] = (j * 3 + i) % NV;
        r[i].id = tl_engine_add(en, r[i].prompt, 9, &r[i].p, on_token, &r[i], &e);
    }
    tl_engine_cancel(en, r[3].id); /* still in the intake list */
    tl_engine_step(en);
    tl_engine_step(en);
    tl_engine_cancel(en, r[1].id); /* running */
    tl_engine_cancel(en, r[2].id); /* waiting (max_seqs 2) */
    tl_engine_cancel(en, 12345);   /* unknown: ignored */
    tl_engine_step(en);
    tl_engine_stats st;
    tl_engine_stats_get(en, &st);
    CHECK(st.n_running == 1 && st.n_waiting == 0, "running %d waiting %d", st.n_running, st.n_waiting);
    tl_engine_run_until_idle(en);
    tl_engine_cancel(en, r[0].id); /* finished: ignored */
    tl_engine_step(en);
    /* pipelined, a step's tokens arrive one step later: the cancel meets step 2 in flight, its token unsent */
    CHECK(r[1].fin == TL_FINISH_CANCELLED && r[1].n_out == (g_mode == 2 ? 1 : 2) && r[1].n_final == 1,
          "running cancel: %d tokens", r[1].n_out);
    CHECK(r[2].fin == TL_FINISH_CANCELLED && r[2].n_out == 0 && r[2].n_final == 1);
    CHECK(r[3].fin == TL_FINISH_CANCELLED && r[3].n_out == 0 && r[3].n_final == 1);
    CHECK(check_greedy(&r[0], 1, "beside cancels") == 0);
    tl_engine_stats_get(en, &st);
    CHECK(st.kv_blocks_used == 0 && st.n_running == 0);
    tl_engine_free(en);
}

static void test_bad_input(tl_model *m) {
    tl_backend be;
    fake_stats fs;
    fake_init(&be, &fs);
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_queue = 2;
    tl_error e = {{0}};
    tl_engine *en = tl_engine_new(m, &be, &o, &e);
    int32_t p[3] = {1, 2, 3}, badp[2] = {1, NV};
    tl_req_params rp;
    memset(&rp, 0, sizeof rp);
    tl_sampling_default(&rp.s);
    CHECK(tl_engine_add(en, p, 0, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "empty"));
    static int32_t big[300];
    CHECK(tl_engine_add(en, big, m->cfg.n_ctx, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "too long"));
    CHECK(tl_engine_add(en, badp, 2, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "vocabulary"), "%s", e.msg);
    rp.s.temperature = -1;
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "temperature"));
    rp.s.temperature = 0;
    rp.s.top_p = 0;
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "top_p"));
    rp.s.top_p = 1;
    rp.s.n_logprobs = 21;
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) == -1 && strstr(e.msg, "logprobs"));
    rp.s.n_logprobs = 0;
    rp.max_tokens = 2;
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) > 0);
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) > 0);
    CHECK(tl_engine_add(en, p, 3, &rp, NULL, NULL, &e) == -1 && !strncmp(e.msg, "queue full", 10), "%s", e.msg);
    tl_engine_run_until_idle(en);
    CHECK(tl_engine_add(en, p, 3, NULL, NULL, NULL, &e) > 0, "the queue drained; NULL params are defaults");
    tl_engine_run_until_idle(en);
    tl_engine_free(en);
}

/* The background thread: requests added and cancelled from several threads. */
typedef struct {
    tl_engine *en;
    req *rs;
    int n;
} adder;

static void *add_thread(void *arg) {
    adder *a = arg;
    tl_error e = {{0}};
    for (int i = 0; i < a->n; i++) {
        a->rs[i].id = tl_engine_add(a->en, a->rs[i].prompt, a->rs[i].n_prompt, &a->rs[i].p, on_token, &a->rs[i], &e);
        if (i % 4 == 3) tl_engine_cancel(a->en, a->rs[i].id);
        usleep(200);
    }
    return NULL;
}

static void test_thread(tl_model *m) {
    tl_backend be;
    fake_stats fs;
    fake_init(&be, &fs);
    tl_engine_opts o;
    tl_engine_opts_default(&o);
    o.max_batch_tokens = 40;
    o.block_size = 4;
    o.kv_mem = 40 * tl_kv_block_bytes(&m->cfg, 4, TL_F32);
    tl_error e = {{0}};
    tl_engine *en = tl_engine_new(m, &be, &o, &e);
    CHECK(tl_engine_start(en, &e) == 0);
    static req rs[4][8];
    pthread_t th[4];
    adder ad[4];
    for (int t = 0; t < 4; t++) {
        make_mix(rs[t], 8, 500 + (unsigned long long)t);
        ad[t] = (adder){en, rs[t], 8};
        pthread_create(&th[t], NULL, add_thread, &ad[t]);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    for (int wait = 0; wait < 2000; wait++) { /* up to 20 s */
        int done = 0;
        for (int t = 0; t < 4; t++)
            for (int i = 0; i < 8; i++) done += atomic_load(&rs[t][i].done);
        if (done == 32) break;
        usleep(10000);
    }
    tl_engine_stop(en);
    int bad = 0;
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 8; i++) {
            req *r = &rs[t][i];
            if (r->n_final != 1) bad++;
            else if (r->fin != TL_FINISH_CANCELLED) bad += check_greedy(r, 1, "threaded");
        }
    CHECK(bad == 0, "%d threaded requests wrong", bad);
    tl_engine_stats st;
    tl_engine_stats_get(en, &st);
    CHECK(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0);
    /* stop cancels what remains */
    CHECK(tl_engine_start(en, &e) == 0);
    static req late[1];
    req_init(&late[0], 5, 60, 0);
    tl_engine_add(en, late[0].prompt, 5, &late[0].p, on_token, &late[0], &e);
    tl_engine_stop(en);
    CHECK(late[0].n_final == 1 && (late[0].fin == TL_FINISH_CANCELLED || late[0].fin == TL_FINISH_LENGTH));
    tl_engine_free(en);
}

/* Pipelined steps (mode 2) give every request the same tokens, logprobs and finish as one step at a time
 * (mode 1), with rows sampled at a temperature, stops the engine learns only from the token (stop ids, EOS,
 * the callback), rows sampled on the host (logprobs; top-p, which the fake leaves to the host), chunked
 * prefill, prefix hits and tiny pools (the step in flight is collected, then sequences are preempted). */
static void test_pipelined(tl_model *m) {
    const cfg cfgs[] = {{2048, 0, 16, 0, 64, false}, {32, 7, 4, 0, 64, false}, {48, 13, 4, 24, 64, false},
                        {200, 0, 8, 12, 4, false}, {64, 1, 16, 0, 8, false}};
    tl_model m2 = *m; /* EOS from the model config: a token the fake's greedy paths meet */
    m2.cfg.eos_ids[0] = 17;
    m2.cfg.n_eos = 1;
    static req a[MAXR], b[MAXR];
    static int32_t stops[MAXR];
    int64_t in_flight_steps = 0, prev_tokens = 0, same = 0, total = 0, stopped = 0;
    for (int c = 0; c < (int)(sizeof cfgs / sizeof cfgs[0]); c++)
        for (unsigned long long seed = 1; seed <= 3; seed++) {
            make_mix(a, MAXR, 300 + seed * 11 + (unsigned long long)c);
            for (int i = 0; i < MAXR; i++) {
                req *r = &a[i];
                r->max_tokens = r->p.max_tokens = 4 + i % 40;
                r->p.s.seed = 77 + (uint64_t)i;
                switch (i % 6) {
                case 0: r->p.s.temperature = 0.8f; break;
                case 1: stops[i] = (int32_t)((i * 7 + (int)seed) % NV), r->p.stop_ids = &stops[i], r->p.n_stop_ids = 1; break;
                case 2: r->p.s.n_logprobs = 2; break;
                case 3: r->p.s.temperature = 0.7f, r->p.s.top_p = 0.9f; break;
                case 4: r->stop_after = 1 + i % 4; break;
                default: r->p.s.temperature = 1.3f; r->p.ignore_eos = true; break;
                }
                b[i] = *r;
            }
            tl_engine_opts o = cfg_opts(&cfgs[c], m);
            g_mode = 1;
            setenv("TL_ENGINE_ASYNC", "0", 1);
            run(&m2, &o, a, MAXR, NULL);
            g_mode = 2;
            unsetenv("TL_ENGINE_ASYNC");
            fake_stats fs;
            run(&m2, &o, b, MAXR, &fs);
            in_flight_steps += fs.max_in_flight == 2;
            if (getenv("TL_TEST_VERBOSE"))
                fprintf(stderr, "config %d seed %llu: max in flight %d, %lld placeholders, %lld launches\n", c, seed,
                        fs.max_in_flight, (long long)fs.prev_tokens, (long long)fs.launches);
            prev_tokens += fs.prev_tokens;
            for (int i = 0; i < MAXR; i++, total++) {
                bool ok = a[i].n_out == b[i].n_out && !memcmp(a[i].out, b[i].out, sizeof(int32_t) * a[i].n_out) &&
                          !memcmp(a[i].lp, b[i].lp, sizeof(float) * a[i].n_out) && a[i].fin == b[i].fin &&
                          a[i].n_final == 1 && b[i].n_final == 1 && b[i].n_after_final == 0 && a[i].n_out > 0;
                same += ok;
                stopped += b[i].fin == TL_FINISH_STOP;
                if (!ok && total - same < 4)
                    fprintf(stderr, "pipelined config %d seed %llu request %d: %d tokens (finish %d, '%s') against %d "
                                    "(finish %d)\n",
                            c, seed, i, b[i].n_out, b[i].fin, b[i].err, a[i].n_out, a[i].fin);
            }
        }
    CHECK(same == total, "%lld of %lld requests differ pipelined", (long long)(total - same), (long long)total);
    /* (a step with a row sampled on the host is collected at once: config 0 batches every request together) */
    CHECK(in_flight_steps >= 12, "two steps in flight in %lld of 15 runs", (long long)in_flight_steps);
    CHECK(prev_tokens > 500, "%lld tokens fed from the previous step on the device", (long long)prev_tokens);
    CHECK(stopped > 20, "%lld requests stopped by a token", (long long)stopped);
}

/* A launch that fails (pipelined) ends its request with the error and leaves no block in the prefix cache whose
 * K/V that step was to write: the same prompt afterwards (a prefix-cache hit on the first request's blocks) gets
 * the reference tokens. Every launch from the 2nd to the 14th fails once (positions at and off block ends). */
static void test_launch_fail(tl_model *m) {
    int bad = 0, errors = 0;
    for (int k = 2; k <= 14; k++) {
        tl_backend be;
        fake_stats fs;
        fake_init(&be, &fs);
        fs.fail_launch = k;
        tl_engine_opts o;
        tl_engine_opts_default(&o);
        o.block_size = 4;
        o.prefill_chunk = 3;
        tl_error e = {{0}};
        tl_engine *en = tl_engine_new(m, &be, &o, &e);
        static req r[2];
        for (int i = 0; i < 2; i++) {
            req_init(&r[i], 9, 16, 0);
            for (int j = 0; j < 9; j++) r[i].prompt[j] = (j * 5 + 2) % NV;
        }
        r[0].id = tl_engine_add(en, r[0].prompt, 9, &r[0].p, on_token, &r[0], &e);
        tl_engine_run_until_idle(en);
        errors += r[0].fin == TL_FINISH_ERROR && r[0].n_final == 1 && strstr(r[0].err, "fails (test)");
        r[1].id = tl_engine_add(en, r[1].prompt, 9, &r[1].p, on_token, &r[1], &e);
        tl_engine_run_until_idle(en);
        bad += check_greedy(&r[1], 1, "after a failed launch");
        tl_engine_stats st;
        tl_engine_stats_get(en, &st);
        bad += st.kv_blocks_used != 0;
        tl_engine_free(en);
    }
    CHECK(errors == 13, "%d of 13 failed launches ended their request with the error", errors);
    CHECK(bad == 0, "%d requests wrong after a failed launch", bad);
}

/* Penalties applied by the backend (the fake's own implementation, from the engine's distinct-token lists and
 * the row's batch token, which is a placeholder resolved "on the device" when pipelined) give the host sampler's
 * tokens: the same requests on the host (mode 0), one step at a time (mode 1) and pipelined (mode 2), and with
 * TL_ENGINE_HOST_PENALTIES=1. Logprobs are compared between modes 1 and 2 only (the backend's are of the
 * penalized logits). Seeds 5-6 with a pool of 24 blocks: sequences are preempted and recomputed (their generated
 * tokens prefilled again count as generated all the same). */
static void test_penalties(tl_model *m) {
    static req r[4][MAXR];
    int64_t pen_rows[4] = {0}, host_rows[4] = {0}, in_flight = 0, preempted = 0;
    int bad = 0, changed = 0;
    for (unsigned long long seed = 1; seed <= 6; seed++) {
        make_mix(r[0], MAXR, 500 + seed);
        for (int i = 0; i < MAXR; i++) {
            tl_sampling *p = &r[0][i].p.s;
            r[0][i].max_tokens = r[0][i].p.max_tokens = 8 + i % 30;
            p->seed = 5 + (uint64_t)i;
            switch (i % 6) {
            case 0: p->repetition_penalty = 1.6f; break;
            case 1: p->presence_penalty = 0.9f, p->frequency_penalty = 0.45f; break;
            case 2: p->repetition_penalty = 0.7f, p->frequency_penalty = -0.3f, p->temperature = 0.8f; break;
            case 3: p->repetition_penalty = 1.4f, p->presence_penalty = 1.2f, p->frequency_penalty = 0.6f; break;
            case 4: p->frequency_penalty = 2.0f, p->temperature = 1.1f; break;
            default: break; /* none */
            }
            r[1][i] = r[2][i] = r[3][i] = r[0][i];
        }
        tl_engine_opts o;
        tl_engine_opts_default(&o);
        o.max_batch_tokens = 40 + 8 * (int)seed;
        o.prefill_chunk = 11;
        o.block_size = 4;
        if (seed > 4) o.kv_mem = (size_t)24 * tl_kv_block_bytes(&m->cfg, o.block_size, TL_F32);
        for (int k = 0; k < 4; k++) {
            fake_stats fs;
            g_mode = k == 3 ? 2 : k;
            if (g_mode == 1) setenv("TL_ENGINE_ASYNC", "0", 1);
            if (k == 3) setenv("TL_ENGINE_HOST_PENALTIES", "1", 1);
            const tl_engine_stats es = run(m, &o, r[k], MAXR, &fs);
            preempted += es.n_preempted;
            host_rows[k] += es.host_rows;
            unsetenv("TL_ENGINE_ASYNC");
            unsetenv("TL_ENGINE_HOST_PENALTIES");
            pen_rows[k] += fs.pen_rows;
            in_flight += k == 2 && fs.max_in_flight == 2;
        }
        for (int i = 0; i < MAXR; i++) {
        for (int k = 1; k < 4; k++) {
            const bool ok = r[k][i].n_out == r[0][i].n_out && r[k][i].n_final == 1 && r[k][i].fin == r[0][i].fin &&
                            !memcmp(r[k][i].out, r[0][i].out, sizeof(int32_t) * r[0][i].n_out) &&
                            (k != 2 || !memcmp(r[2][i].lp, r[1][i].lp, sizeof(float) * r[1][i].n_out));
            if (!ok && bad++ < 4)
                fprintf(stderr, "penalties: request %d (case %d), run %d: %d tokens against %d on the host\n", i, i % 6,
                        k, r[k][i].n_out, r[0][i].n_out);
        }
        int32_t ref[MAXO];
        const int nr = fake_ref_greedy(r[0][i].prompt, r[0][i].n_prompt, NV, r[0][i].max_tokens, NULL, 0, ref);
        changed += i % 6 != 5 && r[0][i].p.s.temperature == 0.0f &&
                   (nr != r[0][i].n_out || memcmp(ref, r[0][i].out, sizeof(int32_t) * nr));
        }
    }
    CHECK(bad == 0, "%d runs of penalized requests differ from the host sampler's tokens", bad);
    CHECK(changed >= 3, "the penalties changed only %d greedy requests' tokens", changed);
    CHECK(pen_rows[0] == 0 && pen_rows[1] > 300 && pen_rows[2] > 300 && pen_rows[3] == 0,
          "rows penalized by the backend: host %lld, one step %lld, pipelined %lld, host penalties %lld",
          (long long)pen_rows[0], (long long)pen_rows[1], (long long)pen_rows[2], (long long)pen_rows[3]);
    CHECK(host_rows[0] == 0 && host_rows[1] == 0 && host_rows[2] == 0 && host_rows[3] == pen_rows[1],
          "rows the engine sent to the host sampler: host %lld, one step %lld, pipelined %lld, host penalties %lld "
          "(the backend penalized %lld)", (long long)host_rows[0], (long long)host_rows[1], (long long)host_rows[2],
          (long long)host_rows[3], (long long)pen_rows[1]);
    CHECK(in_flight == 6, "two steps in flight in %lld of 6 pipelined runs", (long long)in_flight);
    CHECK(preempted > 0, "the small pool preempted no sequence");
}

int main(void) {
    tl_log_set_level(TL_LOG_WARN);
    tl_model m;
    fake_model_init(&m, NV, 256);
    for (g_mode = 0; g_mode < 3; g_mode++) {
        if (g_mode == 1) setenv("TL_ENGINE_ASYNC", "0", 1);
        else unsetenv("TL_ENGINE_ASYNC");
        int f0 = tl_t_fail;
        test_invariance(&m);
        test_prefix_skip(&m);
        test_seeded(&m);
        test_stops(&m);
        test_too_big(&m);
        test_cancel(&m);
        test_bad_input(&m);
        test_thread(&m);
        if (tl_t_fail != f0) fprintf(stderr, "(the failures above: mode %d)\n", g_mode);
    }
    unsetenv("TL_ENGINE_ASYNC");
    g_mode = 2;
    test_pipelined(&m);
    test_launch_fail(&m);
    test_penalties(&m);
    TL_TEST_END();
}

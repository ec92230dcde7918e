/* cmd_bench.c: `tinyllm bench`: offline serving throughput through the continuous-batching engine,
 * in the style of vLLM's benchmark_throughput / nano-vllm's bench.py. N requests of random token ids
 * with prompt and output lengths drawn uniformly (seeded) from given ranges, EOS ignored, at most C
 * in flight. Prints requests/s, prompt and output tok/s, TTFT and inter-token latency p50/p99, peak
 * KV blocks; --json for machine-readable output; --sweep C1,C2,.. runs each concurrency on a fresh
 * engine and plots output tok/s against concurrency (PNG through gnuplot). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "engine/engine.h"

typedef struct breq {
    int n_prompt, n_out_target;
    int n_out;
    double t_add, t_last, ttft;
    bool done;
    tl_finish fin;
    double *itl;     /* shared array of all inter-token gaps */
    int *n_itl;
    int *inflight;
} breq;

typedef struct bres {
    int concurrency;
    double dur, req_s, prompt_tps, out_tps, ttft_p50, ttft_p99, itl_p50, itl_p99;
    int64_t prompt_tokens, out_tokens, steps, preempted;
    int peak_blocks, total_blocks, n_errors;
    double t_phase[4]; /* engine host seconds: schedule, batch, forward (incl. the GPU), sample + events */
} bres;

static int on_token(const tl_token_event *ev, void *user) {
    breq *r = user;
    double now = tl_now();
    if (ev->token >= 0) {
        if (r->n_out == 0) r->ttft = now - r->t_add;
        else r->itl[(*r->n_itl)++] = now - r->t_last;
        r->t_last = now;
        r->n_out++;
    }
    if (ev->finish != TL_FINISH_NONE) {
        r->done = true;
        r->fin = ev->finish;
        (*r->inflight)--;
        if (ev->finish == TL_FINISH_ERROR) fprintf(stderr, "bench: request %lld failed: %s\n", (long long)ev->req_id,
                                                   ev->error ? ev->error : "?");
    }
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(double *v, int n, double q) { /* nearest rank on a sorted array */
    if (n <= 0) return 0;
    int i = (int)(q * n + 0.999999) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static int parse_range(const char *s, int *a, int *b) {
    char *end;
    long x = strtol(s, &end, 10), y = x;
    if (*end == ':') y = strtol(end + 1, &end, 10);
    if (*end || x <= 0 || y < x || y > 1 << 20) return -1;
    *a = (int)x;
    *b = (int)y;
    return 0;
}

/* "512" = MiB, or with a K/M/G suffix; 0 on anything else (junk used to mean the backend's default) */
static size_t parse_mem(const char *s) {
    char *end;
    double v = strtod(s, &end);
    double mul = (double)(1 << 20);
    if (*end == 'G' || *end == 'g') mul = (double)(1 << 30), end++;
    else if (*end == 'M' || *end == 'm') end++;
    else if (*end == 'K' || *end == 'k') mul = 1024, end++;
    return end > s && !*end && v > 0 ? (size_t)(v * mul) : 0;
}

static uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* every request's sampling (--temp, --top-k, ... as generate; default greedy); request i's seed is seed + i */
static tl_sampling g_samp;

static int run_one(tl_model *m, tl_backend *be, const tl_engine_opts *eo, int n, int32_t **prompts, breq *rs, int conc,
                   bres *out) {
    tl_error e = {{0}};
    tl_engine *en = tl_engine_new(m, be, eo, &e);
    if (!en) {
        fprintf(stderr, "tinyllm bench: %s\n", e.msg);
        return -1;
    }
    int64_t total_out = 0;
    for (int i = 0; i < n; i++) total_out += rs[i].n_out_target;
    double *itl = tl_malloc((size_t)(total_out + 1) * sizeof(double));
    int n_itl = 0, inflight = 0, next = 0, done = 0;
    if (conc <= 0 || conc > n) conc = n;
    for (int i = 0; i < n; i++) {
        rs[i].n_out = 0;
        rs[i].done = false;
        rs[i].itl = itl;
        rs[i].n_itl = &n_itl;
        rs[i].inflight = &inflight;
    }
    double t0 = tl_now();
    while (done < n) {
        while (inflight < conc && next < n) {
            tl_req_params p;
            memset(&p, 0, sizeof p);
            p.s = g_samp;
            p.s.seed = g_samp.seed + (uint64_t)next;
            p.max_tokens = rs[next].n_out_target;
            p.ignore_eos = true;
            rs[next].t_add = tl_now();
            if (tl_engine_add(en, prompts[next], rs[next].n_prompt, &p, on_token, &rs[next], &e) < 0) {
                fprintf(stderr, "tinyllm bench: request %d: %s\n", next, e.msg);
                rs[next].done = true;
                rs[next].fin = TL_FINISH_ERROR;
            } else {
                inflight++;
            }
            next++;
        }
        tl_engine_step(en);
        done = 0;
        for (int i = 0; i < next; i++) done += rs[i].done;
    }
    double dur = tl_now() - t0;
    tl_engine_stats st;
    tl_engine_stats_get(en, &st);
    tl_engine_free(en);
    memset(out, 0, sizeof *out);
    double *ttft = tl_malloc((size_t)n * sizeof(double));
    int n_ttft = 0;
    for (int i = 0; i < n; i++) {
        out->prompt_tokens += rs[i].n_prompt;
        out->out_tokens += rs[i].n_out;
        out->n_errors += rs[i].fin == TL_FINISH_ERROR;
        if (rs[i].n_out > 0) ttft[n_ttft++] = rs[i].ttft;
    }
    qsort(ttft, (size_t)n_ttft, sizeof(double), cmp_d);
    qsort(itl, (size_t)n_itl, sizeof(double), cmp_d);
    out->concurrency = conc;
    out->dur = dur;
    out->req_s = n / dur;
    out->prompt_tps = (double)out->prompt_tokens / dur;
    out->out_tps = (double)out->out_tokens / dur;
    out->ttft_p50 = pct(ttft, n_ttft, 0.5);
    out->ttft_p99 = pct(ttft, n_ttft, 0.99);
    out->itl_p50 = pct(itl, n_itl, 0.5);
    out->itl_p99 = pct(itl, n_itl, 0.99);
    out->steps = st.steps;
    out->preempted = st.n_preempted;
    out->peak_blocks = st.kv_blocks_peak;
    out->total_blocks = st.kv_blocks_total;
    out->t_phase[0] = st.t_schedule, out->t_phase[1] = st.t_batch, out->t_phase[2] = st.t_forward;
    out->t_phase[3] = st.t_post;
    free(ttft);
    free(itl);
    return 0;
}

static void print_text(const bres *r) {
    printf("concurrency %3d: %7.2f s  %6.2f req/s  prompt %8.1f tok/s  output %7.1f tok/s  TTFT p50 %7.1f p99 %7.1f ms"
           "  ITL p50 %6.1f p99 %6.1f ms  peak KV %d/%d blocks  %lld steps  %lld preempted%s\n",
           r->concurrency, r->dur, r->req_s, r->prompt_tps, r->out_tps, r->ttft_p50 * 1e3, r->ttft_p99 * 1e3,
           r->itl_p50 * 1e3, r->itl_p99 * 1e3, r->peak_blocks, r->total_blocks, (long long)r->steps,
           (long long)r->preempted, r->n_errors ? "  (ERRORS)" : "");
    printf("                 total %.1f tok/s; per step: schedule %.2f ms, batch %.2f ms, forward %.2f ms, "
           "sample + events %.2f ms\n",
           (r->prompt_tokens + r->out_tokens) / r->dur, 1e3 * r->t_phase[0] / TL_MAX(r->steps, 1),
           1e3 * r->t_phase[1] / TL_MAX(r->steps, 1), 1e3 * r->t_phase[2] / TL_MAX(r->steps, 1),
           1e3 * r->t_phase[3] / TL_MAX(r->steps, 1));
}

static json_t *to_json(const bres *r) {
    return json_pack("{s:i,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:f,s:f,s:f,s:i,s:i,s:I,s:I,s:i}", "concurrency",
                     r->concurrency, "duration_s", r->dur, "requests_per_s", r->req_s, "prompt_tok_per_s",
                     r->prompt_tps, "output_tok_per_s", r->out_tps, "prompt_tokens", (json_int_t)r->prompt_tokens,
                     "output_tokens", (json_int_t)r->out_tokens, "ttft_p50_ms", r->ttft_p50 * 1e3, "ttft_p99_ms",
                     r->ttft_p99 * 1e3, "itl_p50_ms", r->itl_p50 * 1e3, "itl_p99_ms", r->itl_p99 * 1e3,
                     "peak_kv_blocks", r->peak_blocks, "kv_blocks", r->total_blocks, "steps",
                     (json_int_t)r->steps, "preempted", (json_int_t)r->preempted, "errors", r->n_errors);
}

static int plot(const char *png, const char *title, const bres *rs, int n) {
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) return -1;
    fprintf(g, "set terminal pngcairo size 900,560\nset output '%s'\nset title \"%s\" noenhanced\n", png, title);
    fprintf(g, "set xlabel 'concurrent requests'\nset ylabel 'output tokens/s'\nset logscale x 2\nset grid\n"
               "set key top left\nset yrange [0:*]\nset offsets graph 0.05, graph 0.08, graph 0.12, 0\n");
    fprintf(g, "plot '-' using 1:2 with linespoints lw 2 pt 7 title 'output tok/s', "
               "'-' using 1:2:(sprintf('%%.1f', $2)) with labels offset 0,1 notitle\n");
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < n; i++) fprintf(g, "%d %.1f\n", rs[i].concurrency, rs[i].out_tps);
        fprintf(g, "e\n");
    }
    return pclose(g) == 0 ? 0 : -1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: tinyllm bench -m MODEL [options]\n\n%s"
            "  --num-prompts N         requests (default 64)\n"
            "  --input-len A:B         prompt lengths, uniform in [A, B] (default 128:128)\n"
            "  --output-len A:B        output lengths, uniform in [A, B] (default 128:128; EOS ignored)\n"
            "  --seed S                seed for lengths and prompt ids (default 0)\n"
            "  --concurrency C         requests in flight at most (default: all)\n"
            "  --sweep C1,C2,...       run each concurrency on a fresh engine, plot output tok/s\n"
            "  --plot FILE             PNG for --sweep (default bench_sweep.png; needs gnuplot)\n"
            "  --max-batch-tokens N    token budget per step (default 2048)\n"
            "  --max-seqs N            running sequences at most (default 64)\n"
            "  --prefill-chunk N       longest prefill piece per sequence per step (default: the budget)\n"
            "  --block-size N          KV block size in tokens (default 16)\n"
            "  --kv-cache-mem SIZE     KV pool, MiB or with K/M/G suffix (default: backend's)\n"
            "  --kv-dtype T            KV cache f32, f16 or bf16 (default: f32 on the CPU, bf16 on CUDA)\n"
            "  --no-prefix-cache       turn prefix caching off\n"
            "  --json                  print JSON instead of text\n"
            "  sampling (default greedy; --seed above seeds the draws too: request i gets S + i):\n"
            "  --temp T --top-k K --top-p P --min-p M\n"
            "  --repeat-penalty R --presence-penalty P --frequency-penalty F\n"
            "  --logprobs N            every token's top-N logprobs too (N <= 20)\n",
            cli_model_help);
}

int cmd_bench(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    tl_engine_opts eo;
    tl_engine_opts_default(&eo);
    int n = 64, in_a = 128, in_b = 128, out_a = 128, out_b = 128, conc = 0, json = 0;
    const char *sweep = NULL, *png = "bench_sweep.png";
    int kv_dtype = -1; /* -1: by backend */
    tl_sampling_default(&g_samp);
    for (int i = 1; i < argc; i++) {
        /* --seed through the shared parser (a whole number; '1e5' ran with seed 1): it seeds the draws and,
         * read back below, the workload */
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (!r) r = cli_parse_sampling_opt(&g_samp, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-prefix-cache")) eo.no_prefix_cache = true;
        else if (!v) {
            fprintf(stderr, "tinyllm bench: unknown option or missing value: '%s'\n", a);
            usage();
            return 2;
        } else {
            /* numbers strictly, as serve: atoi took '0' or 'abc' as 0, which the engine quietly made its default */
            int bad = 0;
            ++i;
            if (!strcmp(a, "--num-prompts")) bad = cli_parse_int(v, 1, 1000000, &n);
            else if (!strcmp(a, "--input-len")) bad = parse_range(v, &in_a, &in_b);
            else if (!strcmp(a, "--output-len")) bad = parse_range(v, &out_a, &out_b);
            else if (!strcmp(a, "--concurrency")) bad = cli_parse_int(v, 0, 1000000, &conc);
            else if (!strcmp(a, "--sweep")) sweep = v;
            else if (!strcmp(a, "--plot")) png = v;
            else if (!strcmp(a, "--max-batch-tokens")) bad = cli_parse_int(v, 1, 1 << 20, &eo.max_batch_tokens);
            else if (!strcmp(a, "--max-seqs")) bad = cli_parse_int(v, 1, 1 << 16, &eo.max_seqs);
            else if (!strcmp(a, "--logprobs")) bad = cli_parse_int(v, 0, TL_MAX_LOGPROBS, &g_samp.n_logprobs);
            else if (!strcmp(a, "--prefill-chunk")) bad = cli_parse_int(v, 1, 1 << 20, &eo.prefill_chunk);
            else if (!strcmp(a, "--block-size")) bad = cli_parse_int(v, 1, 4096, &eo.block_size);
            else if (!strcmp(a, "--kv-cache-mem")) bad = (eo.kv_mem = parse_mem(v)) == 0;
            else if (!strcmp(a, "--kv-dtype") && (!strcmp(v, "f32") || !strcmp(v, "f16") || !strcmp(v, "bf16")))
                kv_dtype = !strcmp(v, "f32") ? TL_F32 : !strcmp(v, "f16") ? TL_F16 : TL_BF16;
            else {
                fprintf(stderr, "tinyllm bench: bad option '%s %s'\n", a, v);
                usage();
                return 2;
            }
            if (bad) {
                fprintf(stderr, "tinyllm bench: bad value for %s: '%s'\n", a, v);
                return 2;
            }
        }
    }
    const uint64_t seed = g_samp.seed; /* 0 unless --seed */
    if (!mo.model) {
        cli_no_model_hint("bench");
        return 2;
    }
    int sweep_c[32], n_sweep = 0;
    if (sweep) {
        for (const char *p = sweep; *p && n_sweep < 32;) {
            char *end;
            long c = strtol(p, &end, 10);
            if (end == p || c <= 0) {
                fprintf(stderr, "tinyllm bench: bad --sweep '%s'\n", sweep);
                return 2;
            }
            sweep_c[n_sweep++] = (int)c;
            p = *end == ',' ? end + 1 : end;
        }
    } else {
        sweep_c[n_sweep++] = conc;
    }
    tl_backend *be = NULL;
    tl_model *m = cli_load("bench", &mo, &be, NULL);
    if (!m) return 1;
    eo.kv_dtype = kv_dtype >= 0 ? (tl_dtype)kv_dtype : !strcmp(be->name, "cuda") ? TL_BF16 : TL_F32;
    if (in_b >= m->cfg.n_ctx) {
        fprintf(stderr, "tinyllm bench: --input-len up to %d does not fit the context of %d\n", in_b, m->cfg.n_ctx);
        return 2;
    }
    /* the workload: lengths and ids from the seed */
    uint64_t s = seed;
    breq *rs = tl_calloc((size_t)n, sizeof *rs);
    int32_t **prompts = tl_calloc((size_t)n, sizeof *prompts);
    for (int i = 0; i < n; i++) {
        rs[i].n_prompt = in_a + (int)(rng(&s) % (uint64_t)(in_b - in_a + 1));
        rs[i].n_out_target = out_a + (int)(rng(&s) % (uint64_t)(out_b - out_a + 1));
        prompts[i] = tl_malloc((size_t)rs[i].n_prompt * sizeof(int32_t));
        for (int j = 0; j < rs[i].n_prompt; j++) prompts[i][j] = (int32_t)(rng(&s) % (uint64_t)m->cfg.n_vocab);
    }
    if (!json)
        printf("bench: %s, backend %s, weights %s, %d requests, input %d:%d, output %d:%d, seed %llu, "
               "max-batch-tokens %d, max-seqs %d\n(the machine may be shared with other work: numbers can be low)\n",
               m->name, be->name, tl_dtype_name(m->w.layers[0].wq.type), n, in_a, in_b, out_a, out_b,
               (unsigned long long)seed, eo.max_batch_tokens, eo.max_seqs);
    bres res[32];
    int rc = 0;
    json_t *arr = json_array();
    for (int k = 0; k < n_sweep; k++) {
        if (run_one(m, be, &eo, n, prompts, rs, sweep_c[k], &res[k])) {
            rc = 1;
            break;
        }
        if (json) json_array_append_new(arr, to_json(&res[k]));
        else print_text(&res[k]);
        fflush(stdout);
        if (res[k].n_errors) rc = 1;
    }
    if (!rc && n_sweep > 1) {
        double best = 0;
        for (int k = 0; k < n_sweep; k++) best = res[k].out_tps > best ? res[k].out_tps : best;
        if (!json) printf("best / first output throughput: %.2fx\n", best / res[0].out_tps);
        char title[256];
        snprintf(title, sizeof title, "tinyllm bench: %s (%s, %s), %d requests, in %d:%d, out %d:%d", m->name, be->name,
                 tl_dtype_name(m->w.layers[0].wq.type), n, in_a, in_b, out_a, out_b);
        if (plot(png, title, res, n_sweep)) fprintf(stderr, "tinyllm bench: gnuplot failed; no plot written\n");
        else if (!json) printf("plot: %s\n", png);
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:o}", "model", m->name, "backend", be->name, "weights",
                              tl_dtype_name(m->w.layers[0].wq.type), "num_prompts", n, "runs", arr);
        char *txt = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        json_decref(arr);
    }
    for (int i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
    free(rs);
    be->free(be);
    tl_model_free(m);
    return rc;
}

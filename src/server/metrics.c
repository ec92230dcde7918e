/* metrics.c: Prometheus text exposition (format 0.0.4): request counters by status, token totals,
 * TTFT / inter-token / end-to-end latency histograms, and the engine's queue, KV and prefix-cache gauges. */
#include "server/server.h"

const int tl_metrics_status_codes[TL_METRICS_N_STATUS] = {200, 400, 401, 404, 405, 413, 429, 499, 500, 503, 504, 0};

void tl_histogram_init(tl_histogram *h, const double *bounds, int nb) {
    TL_ASSERT(nb == TL_METRICS_NB);
    memset(h, 0, sizeof *h);
    memcpy(h->bounds, bounds, sizeof h->bounds);
}

void tl_histogram_add(tl_histogram *h, double v) {
    int i = 0;
    while (i < TL_METRICS_NB && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

static void appendf(tl_strbuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(tl_strbuf *out, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) tl_strbuf_append(out, buf, (size_t)TL_MIN(n, (int)sizeof buf - 1));
}

void tl_histogram_write(const tl_histogram *h, const char *name, const char *help, tl_strbuf *out) {
    appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < TL_METRICS_NB; i++) {
        cum += h->counts[i];
        appendf(out, "%s_bucket{le=\"%g\"} %lld\n", name, h->bounds[i], (long long)cum);
    }
    cum += h->counts[TL_METRICS_NB];
    appendf(out, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.6f\n%s_count %lld\n", name, (long long)cum, name, h->sum,
            name, (long long)h->n);
}

void tl_server_counters_init(tl_server_counters *c) {
    static const double lat[TL_METRICS_NB] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                              1, 2.5, 5, 10, 30, 60, 120};
    static const double itl[TL_METRICS_NB] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06,
                                              0.08, 0.1, 0.15, 0.25, 0.5, 1, 2.5};
    memset(c, 0, sizeof *c);
    tl_histogram_init(&c->ttft, lat, TL_METRICS_NB);
    tl_histogram_init(&c->e2e, lat, TL_METRICS_NB);
    tl_histogram_init(&c->itl, itl, TL_METRICS_NB);
}

void tl_server_counters_status(tl_server_counters *c, int status) {
    int i = 0;
    while (i < TL_METRICS_N_STATUS - 1 && tl_metrics_status_codes[i] != status) i++;
    c->by_status[i]++;
}

static void gauge(tl_strbuf *out, const char *name, const char *help, const char *type, double v) {
    appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.10g\n", name, help, name, type, name, v);
}

void tl_metrics_render(const tl_server_counters *c, const tl_engine_stats *es, bool ready, tl_strbuf *out) {
    tl_strbuf_append(out, "", 0);
    appendf(out, "# HELP tinyllm_requests_total HTTP requests answered, by status code (499: client went away).\n"
                 "# TYPE tinyllm_requests_total counter\n");
    for (int i = 0; i < TL_METRICS_N_STATUS; i++) {
        if (tl_metrics_status_codes[i])
            appendf(out, "tinyllm_requests_total{status=\"%d\"} %lld\n", tl_metrics_status_codes[i],
                    (long long)c->by_status[i]);
        else
            appendf(out, "tinyllm_requests_total{status=\"other\"} %lld\n", (long long)c->by_status[i]);
    }
    appendf(out, "# HELP tinyllm_request_finish_total Generation requests by finish reason.\n"
                 "# TYPE tinyllm_request_finish_total counter\n"
                 "tinyllm_request_finish_total{reason=\"stop\"} %lld\n"
                 "tinyllm_request_finish_total{reason=\"length\"} %lld\n"
                 "tinyllm_request_finish_total{reason=\"cancelled\"} %lld\n",
            (long long)c->finish_stop, (long long)c->finish_length, (long long)c->disconnects);
    gauge(out, "tinyllm_client_disconnects_total", "Generation requests cancelled because the client went away.",
          "counter", (double)c->disconnects);
    gauge(out, "tinyllm_prompt_tokens_total", "Prompt tokens of generation requests.", "counter",
          (double)c->prompt_tokens);
    gauge(out, "tinyllm_generation_tokens_total", "Generated tokens.", "counter", (double)c->generation_tokens);
    gauge(out, "tinyllm_requests_in_flight", "Generation requests being served.", "gauge", c->active);
    gauge(out, "tinyllm_ready", "1 once the model is loaded.", "gauge", ready);
    tl_histogram_write(&c->ttft, "tinyllm_time_to_first_token_seconds", "Time from arrival to the first token.",
                       out);
    tl_histogram_write(&c->itl, "tinyllm_inter_token_latency_seconds", "Time between consecutive tokens.", out);
    tl_histogram_write(&c->e2e, "tinyllm_request_latency_seconds", "Time from arrival to the last token.", out);
    if (!es) return;
    gauge(out, "tinyllm_queue_depth", "Requests waiting to be scheduled.", "gauge", es->n_waiting);
    gauge(out, "tinyllm_running_seqs", "Sequences running in the engine.", "gauge", es->n_running);
    gauge(out, "tinyllm_kv_blocks_total", "KV cache blocks in the pool.", "gauge", es->kv_blocks_total);
    gauge(out, "tinyllm_kv_blocks_used", "KV cache blocks held by running sequences.", "gauge", es->kv_blocks_used);
    gauge(out, "tinyllm_kv_blocks_cached", "Unused KV blocks still holding a cached prefix (reusable, evictable).", "gauge",
          es->kv_blocks_cached);
    gauge(out, "tinyllm_kv_blocks_free", "KV cache blocks free and holding no cached prefix.", "gauge",
          es->kv_blocks_free);
    gauge(out, "tinyllm_kv_blocks_peak", "Most KV blocks used at once.", "gauge", es->kv_blocks_peak);
    gauge(out, "tinyllm_prefix_cache_queries_total", "Prompt blocks looked up in the prefix cache.", "counter",
          (double)es->prefix_queries);
    gauge(out, "tinyllm_prefix_cache_hits_total", "Prompt blocks found in the prefix cache.", "counter",
          (double)es->prefix_hits);
    gauge(out, "tinyllm_prefix_cache_hit_rate", "prefix_cache_hits_total / prefix_cache_queries_total.", "gauge",
          es->prefix_queries ? (double)es->prefix_hits / (double)es->prefix_queries : 0.0);
    gauge(out, "tinyllm_preemptions_total", "Sequences preempted for lack of KV blocks.", "counter",
          (double)es->n_preempted);
    gauge(out, "tinyllm_engine_prompt_tokens_total", "Prompt tokens the engine admitted.", "counter",
          (double)es->prompt_tokens);
    gauge(out, "tinyllm_engine_generated_tokens_total", "Tokens the engine generated.", "counter",
          (double)es->generated_tokens);
    gauge(out, "tinyllm_engine_steps_total", "Engine steps run.", "counter", (double)es->steps);
}

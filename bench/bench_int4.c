/* bench_int4.c: INT4 vs bf16 on dummy Qwen2 models (not a test).
 * usage: bench_int4 [threads] [n_prefill] [n_decode] [models...]   (default: 2 512 16 qwen2-0.5b qwen2-1.5b)
 * For each model and weight type, in a child process of its own: weight bytes and resident memory
 * after load, prefill tok/s for an n_prefill-token prompt, decode tok/s, and the weight bytes
 * streamed per decoded token divided by its time (GB/s) against a threaded read of a 1 GiB buffer
 * measured in the same process just before the prefill and just after the decode (the larger); then the time of one forward step of B new tokens (B = 1, 4, 16,
 * 64: the matrix shapes of a B-row batched decode) -- ms per step and ms per row.
 * Types (BENCH_TYPES=bf16,int4,int4-old to choose; default all three): bf16; int4 (G=64, fp16
 * scales); int4-old = int4 with TL_Q4_KERNEL=old, the Q4 path before the 4-row kernel, shared
 * activation quantization and int8 prefill (for an A/B comparison in the same run).
 * The machine may be shared: numbers are best-of. */
#include <immintrin.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/pool.h"
#include "model/session.h"

typedef struct {
    const uint64_t *p;
    size_t chunk;
    uint64_t *out;
} sum_ctx;

__attribute__((target("avx2"))) static void sum_task(void *arg, int task, int thread) {
    sum_ctx *c = arg;
    const uint64_t *p = c->p + (size_t)task * c->chunk;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= c->chunk; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, s0);
    c->out[task] = v[0] + v[1] + v[2] + v[3];
    (void)thread;
}

/* Threaded read of a 1 GiB buffer (filled once by the caller), best of `reps` passes, GB/s. */
static double read_bw(const uint64_t *p, size_t bytes, int nth, int reps) {
    size_t n = bytes / 8;
    tl_pool *pool = tl_pool_create(nth);
    uint64_t out[64];
    sum_ctx c = {p, n / 64, out};
    double best = 0;
    for (int it = 0; it < reps; it++) {
        double t0 = tl_now();
        tl_pool_run(pool, sum_task, &c, 64);
        double dt = tl_now() - t0;
        if (bytes / dt / 1e9 > best) best = bytes / dt / 1e9;
    }
    tl_pool_free(pool);
    return out[0] == 12345 ? 0 : best;
}

static double rss_mb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (double)sysconf(_SC_PAGESIZE) / 1e6;
}

static size_t tensor_bytes(const tl_tensor *t) {
    size_t n = (size_t)(t->rows * t->cols);
    if (t->type == TL_Q4) return n / 2 + n / (size_t)t->group * 4;
    return n * (t->type == TL_F32 ? 4 : 2);
}

/* Bytes one decode step streams: every layer matrix + lm_head (the embedding: one row). */
static size_t decode_bytes(const tl_model *m) {
    size_t b = tensor_bytes(&m->w.lm_head);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        const tl_tensor *t[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) b += tensor_bytes(t[i]);
    }
    return b;
}

enum { N_STEPS = 4 };
static const int step_rows[N_STEPS] = {1, 4, 16, 64};

static int run_one(const char *model, const char *type, int nth, int n_pre, int n_dec) {
    int quant = strncmp(type, "int4", 4) ? 0 : 4;
    if (!strcmp(type, "int4-old")) setenv("TL_Q4_KERNEL", "old", 1); /* read by tl_backend_cpu_new */
    /* The VM's read bandwidth drifts (11-25 GB/s seen between minutes): it is measured right before the
     * prefill and right after the decode loop, and the larger of the two is the reference (conservative). */
    const size_t bw_bytes = (size_t)1 << 30;
    uint64_t *bw_buf = tl_aligned_alloc(bw_bytes);
    for (size_t i = 0; i < bw_bytes / 8; i++) bw_buf[i] = i;
    char spec[128];
    snprintf(spec, sizeof spec, "dummy:%s", model);
    tl_load_opts o = {.quant_bits = quant, .group_size = 64, .dummy_dtype = TL_BF16, .quiet = true};
    tl_error e = {{0}};
    double rss0 = rss_mb();
    tl_model *m = tl_model_load(spec, &o, &e);
    if (!m) {
        fprintf(stderr, "%s: %s\n", spec, e.msg);
        return 1;
    }
    tl_backend *be = tl_backend_cpu_new(nth);
    if (be->prepare && be->prepare(be, m, &e)) {
        fprintf(stderr, "prepare: %s\n", e.msg);
        return 1;
    }
    double rss1 = rss_mb();
    int n_steps_tok = 0;
    for (int i = 0; i < N_STEPS; i++) n_steps_tok += 2 * step_rows[i];
    tl_session *s = tl_session_new(m, be, n_pre + n_dec + n_steps_tok + 8, &e);
    if (!s) {
        fprintf(stderr, "session: %s\n", e.msg);
        return 1;
    }
    int n_ids = n_pre + n_dec + n_steps_tok;
    int32_t *ids = tl_malloc(sizeof(int32_t) * (size_t)n_ids);
    for (int i = 0; i < n_ids; i++) ids[i] = (int32_t)((i * 7919 + 13) % m->cfg.n_vocab);
    double bw0 = read_bw(bw_buf, bw_bytes, nth, 3);
    double t0 = tl_now();
    if (tl_session_eval(s, ids, n_pre, false, &e)) {
        fprintf(stderr, "prefill: %s\n", e.msg);
        return 1;
    }
    double t_pre = tl_now() - t0, best = 1e30, sum = 0;
    for (int i = 0; i < n_dec; i++) {
        double t1 = tl_now();
        if (tl_session_eval(s, ids + n_pre + i, 1, false, &e)) return 1;
        double dt = tl_now() - t1;
        sum += dt;
        if (dt < best) best = dt;
    }
    double bw1 = read_bw(bw_buf, bw_bytes, nth, 3), bw = bw0 > bw1 ? bw0 : bw1;
    tl_aligned_free(bw_buf);
    /* B-token steps, best of 2 each (the context grows by 2B; negligible next to n_prefill) */
    double step[N_STEPS];
    const int32_t *sid = ids + n_pre + n_dec;
    for (int i = 0; i < N_STEPS; i++) {
        step[i] = 1e30;
        for (int rep = 0; rep < 2; rep++) {
            double t1 = tl_now();
            if (tl_session_eval(s, sid, step_rows[i], false, &e)) return 1;
            double dt = tl_now() - t1;
            if (dt < step[i]) step[i] = dt;
            sid += step_rows[i];
        }
    }
    size_t db = decode_bytes(m);
    printf("%-11s %-8s %9.1f %9.1f %10.1f %9.2f %9.2f %8.1f %8.1f %7.1f%%", model, type, tl_model_weight_bytes(m) / 1e6,
           rss1 - rss0 > 0 ? rss1 - rss0 : rss1, n_pre / t_pre, n_dec / sum, 1 / best, db / best / 1e9, bw,
           100 * db / best / 1e9 / bw);
    for (int i = 0; i < N_STEPS; i++) printf(" %7.1f/%-5.1f", step[i] * 1e3, step[i] * 1e3 / step_rows[i]);
    printf("\n");
    fflush(stdout);
    tl_session_free(s);
    be->free(be);
    tl_model_free(m);
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2, n_pre = argc > 2 ? atoi(argv[2]) : 512, n_dec = argc > 3 ? atoi(argv[3]) : 16;
    const char *defs[] = {"qwen2-0.5b", "qwen2-1.5b"};
    const char **models = argc > 4 ? (const char **)argv + 4 : defs;
    int n_models = argc > 4 ? argc - 4 : 2;
    printf("bench_int4: %d threads, prefill %d tokens, decode %d tokens; int4 = group 64, fp16 scales.\n"
           "The machine may be shared with other jobs; GB/s = weight bytes per decoded token / best step time.\n",
           nth, n_pre, n_dec);
    printf("Last columns: one forward step of B new tokens, ms per step / ms per row, B = 1, 4, 16, 64.\n");
    printf("%-11s %-8s %9s %9s %10s %9s %9s %8s %8s %8s %13s %13s %13s %13s\n", "model", "type", "weightMB", "RSS MB",
           "prefill/s", "dec tok/s", "best/s", "GB/s", "read-bw", "of bw", "B=1", "B=4", "B=16", "B=64");
    const char *types_env = getenv("BENCH_TYPES");
    const char *all[] = {"bf16", "int4", "int4-old"};
    for (int i = 0; i < n_models; i++)
        for (int ty = 0; ty < 3; ty++) {
            if (types_env) { /* comma-separated subset */
                char list[256];
                snprintf(list, sizeof list, ",%s,", types_env);
                char key[32];
                snprintf(key, sizeof key, ",%s,", all[ty]);
                if (!strstr(list, key)) continue;
            }
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) _exit(run_one(models[i], all[ty], nth, n_pre, n_dec));
            int st;
            waitpid(pid, &st, 0);
        }
    return 0;
}

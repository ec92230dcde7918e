/* bench_attention.c: flash vs naive paged attention at Qwen2-7B attention shapes (28 query heads,
 * 4 KV heads, head_dim 128, block 16) at context 1k, 4k, 16k: prefill (a chunk of new tokens at the
 * end of the context; the full causal prefill where the naive kernel finishes in reasonable time)
 * and decode (one token; and a batch of 16384/ctx sequences decoding together), time and the heap
 * scratch each kernel allocates.
 *
 * usage: bench_attention [-t threads] [-kv f32|f16|bf16] [-r reps] [-c chunk] [-full max_ctx]
 * The machine may be shared with other jobs: times are the minimum over reps. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/flash.h"
#include "core/cpu.h"
#include "core/pool.h"

enum { N_HEAD = 28, N_HEAD_KV = 4, HEAD_DIM = 128, BLOCK = 16 };

typedef void (*attn_fn)(const tl_attn_args *a, tl_pool *pool);

static double time_it(attn_fn fn, const tl_attn_args *a, tl_pool *pool, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = tl_now();
        fn(a, pool);
        double t = tl_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static unsigned long long rng = 42;
static float randf(void) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}

/* One case: n_seq sequences, each with L new tokens at offset P; sequence s uses block table
 * bt + s * bt_stride. */
static void bench_case(const char *what, tl_kv *kv, int32_t *bt, int bt_stride, int n_seq, int P, int L,
                       tl_pool *pool, int reps, bool run_naive) {
    const int T = n_seq * L;
    const size_t qn = (size_t)T * N_HEAD * HEAD_DIM;
    float *q = tl_aligned_alloc(qn * sizeof(float)), *o1 = tl_aligned_alloc(qn * sizeof(float)),
          *o2 = tl_aligned_alloc(qn * sizeof(float));
    for (size_t i = 0; i < qn; i++) q[i] = randf();
    int32_t *pos = tl_malloc(sizeof(int32_t) * T);
    tl_batch_seq *sq = tl_malloc(sizeof(tl_batch_seq) * n_seq);
    for (int s = 0; s < n_seq; s++) {
        for (int j = 0; j < L; j++) pos[s * L + j] = P + j;
        sq[s] = (tl_batch_seq){.tok_start = s * L, .n_new = L, .n_past = P, .block_table = bt + (size_t)s * bt_stride};
    }
    tl_batch b = {.n_tok = T, .pos = pos, .n_seq = n_seq, .seqs = sq};
    tl_attn_args a = {.kv = kv, .layer = 0, .batch = &b, .q = q, .n_head = N_HEAD, .scale = 1 / sqrtf(HEAD_DIM)};
    /* useful work: each (token, head) does 2 * head_dim flops per visible key for QK and for PV */
    double keys = (double)L * P + (double)L * (L + 1) / 2;
    double flop = 4.0 * HEAD_DIM * N_HEAD * keys * n_seq;
    int nt = tl_pool_size(pool);
    a.out = o1;
    double tf = time_it(tl_attn_flash, &a, pool, reps);
    size_t sf = tl_attn_flash_scratch_bytes(&a, nt);
    double tn = 0, err = 0;
    if (run_naive) {
        a.out = o2;
        tn = time_it(tl_attn_naive, &a, pool, reps > 1 ? 2 : 1);
        for (size_t i = 0; i < qn; i++) err = fmax(err, fabs((double)o1[i] - o2[i]));
    }
    size_t sn = tl_attn_naive_scratch_bytes(&a, nt);
    double nxn = (double)L * (P + L) * N_HEAD * 4; /* a materialized score matrix, for scale */
    printf("%-8s ctx %6d  L %4d | flash %9.2f ms %6.1f GFLOP/s  scratch %8.1f KiB", what, P + L, L, tf * 1e3,
           flop / tf * 1e-9, sf / 1024.0);
    if (run_naive)
        printf(" | naive %9.2f ms %6.1f GFLOP/s  scratch %8.1f KiB | speedup %5.2fx  max|diff| %.1e", tn * 1e3,
               flop / tn * 1e-9, sn / 1024.0, tn / tf, err);
    else
        printf(" | naive skipped (too slow here)                   scratch %8.1f KiB", sn / 1024.0);
    printf(" | n x n scores would be %.1f MiB\n", nxn / (1 << 20));
    if (L == 1) { /* decode reads the whole K/V of the layer once */
        double bytes = 2.0 * n_seq * (P + 1) * N_HEAD_KV * HEAD_DIM * (kv->dtype == TL_F32 ? 4 : 2);
        printf("         decode K/V traffic %.1f MiB: flash %.1f GB/s%s\n", bytes / (1 << 20), bytes / tf * 1e-9,
               run_naive ? "" : "");
        if (run_naive) printf("         naive %.1f GB/s\n", bytes / tn * 1e-9);
    }
    fflush(stdout);
    tl_aligned_free(q), tl_aligned_free(o1), tl_aligned_free(o2), free(pos), free(sq);
}

int main(int argc, char **argv) {
    int threads = 0, reps = 3, chunk = 512, full_max = 4096, naive_max_flop = 40;
    tl_dtype dt = TL_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-full") && i + 1 < argc) full_max = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-naive-gflop") && i + 1 < argc) naive_max_flop = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-kv") && i + 1 < argc) {
            const char *s = argv[++i];
            dt = !strcmp(s, "f16") ? TL_F16 : !strcmp(s, "bf16") ? TL_BF16 : TL_F32;
        } else {
            fprintf(stderr, "usage: %s [-t threads] [-kv f32|f16|bf16] [-r reps] [-c chunk] [-full max_ctx]\n"
                            "          [-naive-gflop N: skip naive above N GFLOP (default 40)]\n", argv[0]);
            return 2;
        }
    }
    tl_pool *pool = tl_pool_create(threads);
    printf("bench_attention: Qwen2-7B attention (n_head %d, n_head_kv %d, head_dim %d, block %d), kv %s, "
           "%d threads, isa %s. The machine may be shared with other jobs: times are the min of %d runs.\n",
           N_HEAD, N_HEAD_KV, HEAD_DIM, BLOCK, tl_dtype_name(dt), tl_pool_size(pool), tl_isa_name(tl_cpu_isa()),
           reps);
    static const int ctxs[] = {1024, 4096, 16384};
    for (int ci = 0; ci < 3; ci++) {
        /* up to 16k tokens of context: one sequence at 16k, 4 x 4k, 16 x 1k for the batched decode */
        int ctx = ctxs[ci], n_dec = 16384 / ctx, nb1 = TL_CDIV(ctx, BLOCK), nb = nb1 * n_dec;
        tl_config cfg = {.n_layer = 1, .n_head = N_HEAD, .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM};
        tl_kv kv;
        tl_error e;
        if (tl_kv_init_host(&kv, &cfg, BLOCK, nb, dt, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        size_t n_el = kv.bytes / 2 / (dt == TL_F32 ? 4 : 2);
        for (size_t i = 0; i < n_el; i++) {
            float k = randf(), v = randf();
            if (dt == TL_F32) ((float *)kv.k)[i] = k, ((float *)kv.v)[i] = v;
            else if (dt == TL_F16) ((uint16_t *)kv.k)[i] = tl_f32_to_f16(k), ((uint16_t *)kv.v)[i] = tl_f32_to_f16(v);
            else ((uint16_t *)kv.k)[i] = tl_f32_to_bf16(k), ((uint16_t *)kv.v)[i] = tl_f32_to_bf16(v);
        }
        int32_t *bt = tl_malloc(sizeof(int32_t) * nb); /* shuffled blocks */
        for (int i = 0; i < nb; i++) bt[i] = i;
        for (int i = nb - 1; i > 0; i--) {
            int j = (int)((randf() + 1) * 0.5f * (i + 1)) % (i + 1), t = bt[i];
            bt[i] = bt[j], bt[j] = t;
        }
        int L = TL_MIN(chunk, ctx);
        double fl_chunk = 4.0 * HEAD_DIM * N_HEAD * ((double)L * (ctx - L) + (double)L * (L + 1) / 2) * 1e-9;
        bench_case("prefill", &kv, bt, nb1, 1, ctx - L, L, pool, reps, fl_chunk <= naive_max_flop);
        if (ctx <= full_max && L < ctx) {
            double fl_full = 4.0 * HEAD_DIM * N_HEAD * (double)ctx * (ctx + 1) / 2 * 1e-9;
            bench_case("full", &kv, bt, nb1, 1, 0, ctx, pool, reps, fl_full <= naive_max_flop);
        }
        bench_case("decode", &kv, bt, nb1, 1, ctx - 1, 1, pool, TL_MAX(reps, 5), true);
        if (n_dec > 1) {
            char what[32];
            snprintf(what, sizeof what, "decode%d", n_dec);
            bench_case(what, &kv, bt, nb1, n_dec, ctx - 1, 1, pool, TL_MAX(reps, 5), true);
        }
        free(bt);
        tl_kv_free_host(&kv);
    }
    tl_pool_free(pool);
    return 0;
}

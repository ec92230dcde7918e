/* test_attention_model.c: whole-model logits with the flash attention (every SIMD tier) against
 * the same model with the naive attention, on the HF-reference checkpoints (tests/data/hf/), over
 * a two-step mixed batch (three sequences: prefill chunks at offsets, a decode) on shuffled
 * non-contiguous KV blocks, f32 and f16 KV. The naive path itself is held to HF's logits by
 * test_hf_reference; here flash must not move the logits beyond fp32 noise. */
#include "backend/backend.h"
#include "core/cpu.h"
#include "tl_test.h"

static const char *models[] = {"qwen2-tied-gqa2-hd64", "qwen2-untied-gqa1-hd64-bf16", "qwen2-gqa7-hd128-f16",
                               "llama-gqa2-sharded"};

enum { BS = 16, N_SEQ = 3, N_STEP = 2, MAX_TOK = 512 };
/* new tokens per (step, sequence): step 0 prefills, step 1 mixes a decode and two chunks */
static const int n_new[N_STEP][N_SEQ] = {{150, 37, 1}, {1, 20, 70}};

/* Runs both steps; logits[step] gets every token's logits [n_tok, n_vocab]. */
static int run(tl_backend *be, const tl_model *m, tl_kv *kv, int32_t bt[N_SEQ][64], const int32_t *ids,
               float *logits[N_STEP], tl_error *e) {
    int past[N_SEQ] = {0};
    int32_t pos[MAX_TOK], rows[MAX_TOK], toks[MAX_TOK];
    for (int st = 0; st < N_STEP; st++) {
        tl_batch_seq seqs[N_SEQ];
        int T = 0;
        for (int s = N_SEQ - 1; s >= 0; s--) { /* flat order differs from sequence order */
            seqs[s] = (tl_batch_seq){.tok_start = T, .n_new = n_new[st][s], .n_past = past[s], .block_table = bt[s]};
            for (int j = 0; j < n_new[st][s]; j++, T++) {
                pos[T] = past[s] + j;
                toks[T] = ids[(s * 997 + pos[T] * 31) % MAX_TOK];
                rows[T] = T;
            }
        }
        tl_batch b = {.n_tok = T, .tokens = toks, .pos = pos, .n_seq = N_SEQ, .seqs = seqs, .n_logits = T,
                      .logit_rows = rows};
        if (be->forward(be, m, kv, &b, logits[st], e)) return -1;
        for (int s = 0; s < N_SEQ; s++) past[s] += n_new[st][s];
    }
    return 0;
}

static int n_tok(int st) { return n_new[st][0] + n_new[st][1] + n_new[st][2]; }

int main(void) {
    unsigned long long rng = 7;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/data/hf/%s", models[mi]);
        tl_error e = {{0}};
        tl_load_opts o = {.quiet = true};
        tl_model *m = tl_model_load(dir, &o, &e);
        CHECK(m != NULL, "%s: %s", dir, e.msg);
        if (!m) continue;
        const int V = m->cfg.n_vocab;
        int32_t ids[MAX_TOK];
        for (int i = 0; i < MAX_TOK; i++) ids[i] = (int32_t)(tl_t_rng(&rng) % (unsigned)V);
        /* shuffled blocks: 3 sequences x up to 24 blocks out of 80 */
        int perm[80];
        for (int i = 0; i < 80; i++) perm[i] = i;
        for (int i = 79; i > 0; i--) {
            int j = (int)(tl_t_rng(&rng) % (unsigned)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int32_t bt[N_SEQ][64];
        for (int s = 0; s < N_SEQ; s++)
            for (int i = 0; i < 24; i++) bt[s][i] = perm[s * 24 + i];
        tl_backend *be = tl_backend_cpu_new(2);
        for (int dt = 0; dt < 2; dt++) {
            tl_kv kv;
            CHECK(be->kv_alloc(be, &kv, &m->cfg, BS, 80, dt ? TL_F16 : TL_F32, &e) == 0, "%s", e.msg);
            float *ref[N_STEP], *got[N_STEP];
            for (int st = 0; st < N_STEP; st++) {
                ref[st] = malloc(sizeof(float) * n_tok(st) * V);
                got[st] = malloc(sizeof(float) * n_tok(st) * V);
            }
            for (int isa = TL_ISA_SCALAR; isa <= (int)tl_cpu_isa(); isa++) {
                setenv("TL_CPU", tl_isa_name((tl_isa)isa), 1); /* caps the tier flash picks */
                /* naive reference under the same cap: the cap also picks the matmul kernels, whose
                 * summation order differs by tier */
                tl_backend_cpu_set_attn(be, TL_ATTN_NAIVE);
                CHECK(run(be, m, &kv, bt, ids, ref, &e) == 0, "%s", e.msg);
                tl_backend_cpu_set_attn(be, TL_ATTN_FLASH);
                memset(kv.k, 0, kv.bytes / 2); /* flash must see only what this run writes */
                memset(kv.v, 0, kv.bytes / 2);
                CHECK(run(be, m, &kv, bt, ids, got, &e) == 0, "%s", e.msg);
                double worst = 0;
                for (int st = 0; st < N_STEP; st++)
                    for (int t = 0; t < n_tok(st); t++) {
                        double r = tl_rel_err(got[st] + (size_t)t * V, ref[st] + (size_t)t * V, (size_t)V);
                        if (r > worst) worst = r;
                    }
                /* f32 KV: summation-order noise only. f16 KV: a layer-0 difference of 1e-6 can flip
                 * the f16 rounding of a layer-1 K/V element (relative step ~5e-4), so allow 1e-4. */
                CHECK(worst < (dt ? 1e-4 : 1e-5), "%s kv %s flash[%s]: logits rel err %.3g vs naive", models[mi],
                      dt ? "f16" : "f32", tl_isa_name((tl_isa)isa), worst);
                printf("%-28s kv %s flash[%-6s] vs naive: max rel err %.2e over %d rows\n", models[mi],
                       dt ? "f16" : "f32", tl_isa_name((tl_isa)isa), worst, n_tok(0) + n_tok(1));
                unsetenv("TL_CPU");
            }
            for (int st = 0; st < N_STEP; st++) free(ref[st]), free(got[st]);
            be->kv_free(be, &kv);
        }
        be->free(be);
        tl_model_free(m);
    }
    TL_TEST_END();
}

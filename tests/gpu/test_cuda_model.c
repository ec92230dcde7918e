/* test_cuda_model.c (GPU only): the CUDA backend's whole forward pass against HF transformers' logits and
 * against the CPU backend on the reference checkpoints (tests/data/hf) and dummy:tiny, as loaded (bf16 on
 * the GPU) and quantized to INT4 (the same INT4 weights on both sides); greedy tokens equal to the CPU's or,
 * where they part, each side's token inside the other's top-5; batch invariance of a mixed batch; bad input. */
#include <jansson.h>

#include "backend/backend.h"
#include "model/session.h"
#include "tl_test.h"

static int read_ints(json_t *a, int32_t *out, int max) {
    size_t i;
    json_t *v;
    int n = 0;
    json_array_foreach(a, i, v) if (n < max) out[n++] = (int32_t)json_integer_value(v);
    return n;
}

static int rank_of(const float *l, int V, int tok) { /* 0 = argmax */
    int r = 0;
    for (int i = 0; i < V; i++) r += l[i] > l[tok];
    return r;
}
static int argmax(const float *l, int V) {
    int b = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* greedy on both backends, token by token; at the first difference each token must be in the other's top-5 */
static void greedy_check(tl_model *m, tl_backend *cpu, tl_backend *gpu, const int32_t *prompt, int np, int ng,
                         const char *name) {
    tl_error e = {{0}};
    tl_session *a = tl_session_new(m, cpu, 256, &e), *b = tl_session_new(m, gpu, 256, &e);
    CHECK(a && b, "%s", e.msg);
    if (!a || !b) return;
    const int V = m->cfg.n_vocab;
    CHECK(tl_session_eval(a, prompt, np, false, &e) == 0 && tl_session_eval(b, prompt, np, false, &e) == 0, "%s", e.msg);
    int same = 0;
    double worst = 0;
    for (int i = 0; i < ng; i++) {
        const float *la = tl_session_logits(a, -1), *lb = tl_session_logits(b, -1);
        worst = fmax(worst, tl_rel_err(lb, la, V));
        int ta = argmax(la, V), tb = argmax(lb, V);
        if (ta != tb) {
            int ra = rank_of(lb, V, ta), rb = rank_of(la, V, tb);
            CHECK(ra < 5 && rb < 5, "%s: greedy step %d: cpu %d (rank %d on gpu), gpu %d (rank %d on cpu)", name, i, ta,
                  ra, tb, rb);
            printf("  %s: greedy parts at step %d (ranks %d/%d: inside top-5)\n", name, i, ra, rb);
            break;
        }
        same++;
        if (tl_session_eval(a, &ta, 1, false, &e) || tl_session_eval(b, &tb, 1, false, &e)) break;
    }
    printf("  %-34s greedy: %d of %d tokens equal to the CPU's (logits rel err up to %.2e)\n", name, same, ng, worst);
    tl_session_free(a);
    tl_session_free(b);
}

static void run_hf(const char *name, int quant) {
    char dir[512], path[600], label[128];
    snprintf(dir, sizeof dir, "tests/data/hf/%s", name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    snprintf(label, sizeof label, "%s%s", name, quant ? " int4" : "");
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECK(ref != NULL, "%s: %s", path, je.text);
    if (!ref) return;
    int32_t toks[64], prompt[64];
    int nt = read_ints(json_object_get(ref, "tokens"), toks, 64);
    int np = read_ints(json_object_get(ref, "greedy_prompt"), prompt, 64);
    int V = (int)json_integer_value(json_object_get(ref, "n_vocab"));
    json_decref(ref);
    snprintf(path, sizeof path, "%s/logits.f32", dir);
    size_t len;
    tl_error e = {{0}};
    float *hf = (float *)tl_read_file(path, &len, &e);
    CHECK(hf && len == (size_t)nt * V * 4, "%s: %s", path, e.msg);
    tl_load_opts o = {.quiet = true, .quant_bits = quant};
    tl_model *m = tl_model_load(dir, &o, &e);
    CHECK(m != NULL, "%s: %s", dir, e.msg);
    if (!m || !hf) {
        free(hf);
        return;
    }
    tl_backend *cpu = tl_backend_cpu_new(2), *gpu = tl_backend_cuda_new(0.5f, &e);
    CHECK(gpu != NULL, "%s", e.msg);
    tl_session *sc = tl_session_new(m, cpu, 256, &e), *sg = tl_session_new(m, gpu, 256, &e);
    CHECK(sc && sg, "%s", e.msg);
    /* 1. full forward, all logits (GPU: the prefill path, bf16 tensor-core matmuls) */
    CHECK(tl_session_eval(sc, toks, nt, true, &e) == 0 && tl_session_eval(sg, toks, nt, true, &e) == 0, "%s", e.msg);
    double vs_hf = 0, vs_cpu = 0;
    for (int i = 0; i < nt; i++) {
        vs_hf = fmax(vs_hf, tl_rel_err(tl_session_logits(sg, i), hf + (size_t)i * V, V));
        vs_cpu = fmax(vs_cpu, tl_rel_err(tl_session_logits(sg, i), tl_session_logits(sc, i), V));
    }
    if (!quant) CHECK(vs_hf < 3e-2, "%s: prefill logits vs HF %.3g", label, vs_hf);
    CHECK(vs_cpu < 3e-2, "%s: prefill logits vs CPU %.3g", label, vs_cpu);
    /* 2. token by token (every step a decode: GEMV kernels) against the CPU's exact full forward (its panel
     * path is fp32; its own decode path quantizes activations to int8, so it is not the reference here).
     * Backends: the tensor-core GEMV (x in fp16) and the fp32 CUDA-core GEMV (TL_CUDA_GEMV=fp32). */
    int all_q4 = 1;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        all_q4 &= L->wq.type == TL_Q4 && L->wk.type == TL_Q4 && L->wv.type == TL_Q4 && L->wo.type == TL_Q4 &&
                  L->w_gate.type == TL_Q4 && L->w_up.type == TL_Q4 && L->w_down.type == TL_Q4;
    }
    all_q4 &= m->w.lm_head.type == TL_Q4 && quant;
    setenv("TL_CUDA_GEMV", "fp32", 1);
    tl_backend *g32 = tl_backend_cuda_new(0.5f, &e);
    unsetenv("TL_CUDA_GEMV");
    tl_session *s32 = tl_session_new(m, g32, 256, &e);
    double dec = 0, dec32 = 0;
    tl_session_reset(sg);
    for (int i = 0; i < nt; i++) {
        CHECK(tl_session_eval(sg, &toks[i], 1, false, &e) == 0 && tl_session_eval(s32, &toks[i], 1, false, &e) == 0,
              "%s", e.msg);
        dec = fmax(dec, tl_rel_err(tl_session_logits(sg, -1), tl_session_logits(sc, i), V));
        dec32 = fmax(dec32, tl_rel_err(tl_session_logits(s32, -1), tl_session_logits(sc, i), V));
    }
    CHECK(dec < (all_q4 ? 1e-2 : 5e-2), "%s: decode (mma gemv) logits vs CPU %.3g", label, dec);
    CHECK(dec32 < (all_q4 ? 1e-4 : 5e-2), "%s: decode (fp32 gemv) logits vs CPU %.3g", label, dec32);
    printf("  %-34s prefill vs HF %.2e, vs CPU %.2e; decode vs CPU: mma gemv %.2e, fp32 gemv %.2e%s\n", label, vs_hf,
           vs_cpu, dec, dec32, all_q4 ? " (all int4)" : "");
    tl_session_free(s32);
    g32->free(g32);
    tl_session_free(sc);
    tl_session_free(sg);
    greedy_check(m, cpu, gpu, prompt, np, 24, label);
    gpu->free(gpu);
    cpu->free(cpu);
    tl_model_free(m);
    free(hf);
}

/* Three sequences in one batch (two decodes, one 5-token prefill chunk) give the logits each gets alone. */
static void batch_invariance(void) {
    tl_error e = {{0}};
    tl_load_opts o = {.quiet = true, .quant_bits = 4, .group_size = 32}; /* n_ff 160: group 32 */
    tl_model *m = tl_model_load("dummy:tiny", &o, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    tl_backend *gpu = tl_backend_cuda_new(0.5f, &e);
    const int V = m->cfg.n_vocab, bs = 16;
    tl_kv kv;
    CHECK(gpu->kv_alloc(gpu, &kv, &m->cfg, bs, 64, TL_BF16, &e) == 0, "%s", e.msg);
    /* sequence s owns blocks 16s..16s+15; histories of 40, 300, 0 tokens built alone first */
    int32_t bt[3][16];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 16; i++) bt[s][i] = 16 * s + i;
    const int hist[3] = {40, 200, 0}, nnew[3] = {1, 1, 5};
    int32_t toks[256], pos[256], row = 0;
    unsigned long long sd = 7;
    for (int i = 0; i < 256; i++) toks[i] = (int32_t)(tl_t_rng(&sd) % (unsigned)V);
    float *alone = tl_malloc((size_t)3 * V * 4), *mixed = tl_malloc((size_t)3 * V * 4);
    for (int s = 0; s < 3; s++) { /* history, then this step's tokens alone */
        for (int i = 0; i < hist[s] + nnew[s]; i++) pos[i] = i;
        if (hist[s]) {
            tl_batch_seq q = {.tok_start = 0, .n_new = hist[s], .n_past = 0, .block_table = bt[s]};
            tl_batch b = {.n_tok = hist[s], .tokens = toks, .pos = pos, .n_seq = 1, .seqs = &q, .n_logits = 1, .logit_rows = &row};
            row = hist[s] - 1;
            CHECK(gpu->forward(gpu, m, &kv, &b, mixed, &e) == 0, "%s", e.msg); /* logits unused */
        }
        tl_batch_seq q = {.tok_start = 0, .n_new = nnew[s], .n_past = hist[s], .block_table = bt[s]};
        row = nnew[s] - 1;
        tl_batch b = {.n_tok = nnew[s], .tokens = toks + hist[s], .pos = pos + hist[s], .n_seq = 1, .seqs = &q,
                      .n_logits = 1, .logit_rows = &row};
        CHECK(gpu->forward(gpu, m, &kv, &b, alone + (size_t)s * V, &e) == 0, "%s", e.msg);
    }
    /* the same step again, all three in one batch (rewrites the same KV slots with the same values) */
    int32_t mt[7], mp[7], lr[3] = {0, 1, 6};
    tl_batch_seq qs[3];
    int t = 0;
    for (int s = 0; s < 3; s++) {
        qs[s] = (tl_batch_seq){.tok_start = t, .n_new = nnew[s], .n_past = hist[s], .block_table = bt[s]};
        for (int i = 0; i < nnew[s]; i++, t++) mt[t] = toks[hist[s] + i], mp[t] = hist[s] + i;
    }
    tl_batch b = {.n_tok = 7, .tokens = mt, .pos = mp, .n_seq = 3, .seqs = qs, .n_logits = 3, .logit_rows = lr};
    CHECK(gpu->forward(gpu, m, &kv, &b, mixed, &e) == 0, "%s", e.msg);
    double err = tl_rel_err(mixed, alone, (size_t)3 * V);
    CHECK(err < 1e-5, "batch invariance: mixed vs alone rel err %.3g", err);
    printf("  batch invariance (dummy:tiny int4, 2 decodes + 5-token chunk): rel err %.2e\n", err);
    /* bad input: a clear error, not a crash */
    int32_t badtok = V + 5;
    b.tokens = &badtok, b.n_tok = 1, b.n_seq = 1, b.n_logits = 0, qs[0].n_new = 1;
    CHECK(gpu->forward(gpu, m, &kv, &b, mixed, &e) == -1 && strstr(e.msg, "out of range"), "%s", e.msg);
    int32_t badbt[16] = {9999};
    qs[0] = (tl_batch_seq){.tok_start = 0, .n_new = 1, .n_past = 0, .block_table = badbt};
    b.tokens = mt;
    CHECK(gpu->forward(gpu, m, &kv, &b, mixed, &e) == -1 && strstr(e.msg, "block"), "%s", e.msg);
    gpu->kv_free(gpu, &kv);
    gpu->free(gpu);
    free(alone), free(mixed);
    /* the same model on CPU and GPU: greedy */
    tl_backend *cpu = tl_backend_cpu_new(2);
    gpu = tl_backend_cuda_new(0.5f, &e);
    int32_t prompt[8] = {1, 100, 2000, 30000, 151000, 7, 8, 9};
    greedy_check(m, cpu, gpu, prompt, 8, 24, "dummy:tiny int4");
    gpu->free(gpu);
    cpu->free(cpu);
    tl_model_free(m);
}

/* dummy:qwen2-0.5b INT4 (every matrix in the tensor-core layout): decode steps as a CUDA graph equal the
 * same steps launched one by one (TL_CUDA_GRAPH=0), across a change of the attention split count; and
 * greedy tokens against the CPU backend. */
static void graph_check(void) {
    tl_error e = {{0}};
    tl_load_opts o = {.quiet = true, .quant_bits = 4};
    tl_model *m = tl_model_load("dummy:qwen2-0.5b", &o, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    tl_backend *g1 = tl_backend_cuda_new(0.5f, &e);
    setenv("TL_CUDA_GRAPH", "0", 1);
    tl_backend *g0 = tl_backend_cuda_new(0.5f, &e);
    unsetenv("TL_CUDA_GRAPH");
    tl_session *a = tl_session_new(m, g1, 1024, &e), *b = tl_session_new(m, g0, 1024, &e);
    CHECK(a && b, "%s", e.msg);
    const int V = m->cfg.n_vocab;
    int32_t toks[400];
    unsigned long long sd = 5;
    for (int i = 0; i < 400; i++) toks[i] = (int32_t)(tl_t_rng(&sd) % 150000);
    CHECK(tl_session_eval(a, toks, 250, false, &e) == 0 && tl_session_eval(b, toks, 250, false, &e) == 0, "%s", e.msg);
    double worst = 0;
    for (int i = 250; i < 300; i++) { /* contexts 251..300: the split count changes at 257 */
        CHECK(tl_session_eval(a, &toks[i], 1, false, &e) == 0 && tl_session_eval(b, &toks[i], 1, false, &e) == 0, "%s",
              e.msg);
        worst = fmax(worst, tl_rel_err(tl_session_logits(a, -1), tl_session_logits(b, -1), V));
    }
    CHECK(worst < 1e-5, "graph vs no graph: rel err %.3g", worst);
    printf("  dummy:qwen2-0.5b int4: CUDA-graph decode vs plain launches over 50 steps: rel err %.2e\n", worst);
    tl_session_free(a);
    tl_session_free(b);
    tl_backend *cpu = tl_backend_cpu_new(0);
    greedy_check(m, cpu, g1, toks, 24, 12, "dummy:qwen2-0.5b int4 (graph)");
    cpu->free(cpu);
    g1->free(g1);
    g0->free(g0);
    tl_model_free(m);
}

/* dummy:qwen2-0.5b INT4 on a CUDA backend with a bf16 KV pool of 96 blocks of 16 tokens (the mixed-batch
 * checks below); NULL (after a failed CHECK) when something could not be made */
static tl_model *mixed_setup(tl_backend **gpu, tl_kv *kv, tl_error *e) {
    tl_load_opts o = {.quiet = true, .quant_bits = 4};
    tl_model *m = tl_model_load("dummy:qwen2-0.5b", &o, e);
    CHECK(m != NULL, "%s", e->msg);
    if (!m) return NULL;
    *gpu = tl_backend_cuda_new(0.5f, e);
    const int ok = *gpu && (*gpu)->kv_alloc(*gpu, kv, &m->cfg, 16, 96, TL_BF16, e) == 0;
    CHECK(ok, "%s", e->msg);
    if (ok) return m;
    if (*gpu) (*gpu)->free(*gpu);
    tl_model_free(m);
    return NULL;
}

/* dummy:qwen2-0.5b INT4 (head_dim 64, GQA 7), bf16 KV: two steps of a mixed batch (step 1: chunks of 100 and
 * 50 tokens; step 2: a 300-token prompt, a decode on the 100, a 40-token chunk on the 50) give the same
 * logits with the tensor-core prefill attention as with attn.cu's kernel for every row (TL_CUDA_ATTN=old). */
static void prefill_attention_check(void) {
    tl_error e = {{0}};
    tl_backend *gpu;
    tl_kv kv;
    tl_model *m = mixed_setup(&gpu, &kv, &e);
    if (!m) return;
    const int V = m->cfg.n_vocab;
    int32_t bt[3][32], toks[512], pos[512], lr[3];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 32; i++) bt[s][i] = 95 - (32 * s + i); /* descending: not in position order */
    unsigned long long sd = 11;
    for (int i = 0; i < 512; i++) toks[i] = (int32_t)(tl_t_rng(&sd) % 150000);
    float *lg[4];
    for (int run = 0; run < 4; run++) { /* tensor cores (64 rows a block), attn.cu, tensor cores (128 rows),
                                          * tensor-core prefill with attn.cu's decode kernel */
        if (run == 1) setenv("TL_CUDA_ATTN", "old", 1);
        if (run == 2) setenv("TL_CUDA_ATTN_ROWS", "128", 1);
        if (run == 3) setenv("TL_CUDA_ATTN_DEC", "old", 1);
        lg[run] = tl_malloc((size_t)6 * V * 4);
        tl_batch_seq q1[2] = {{.tok_start = 0, .n_new = 100, .n_past = 0, .block_table = bt[1]},
                              {.tok_start = 100, .n_new = 50, .n_past = 0, .block_table = bt[2]}};
        for (int i = 0; i < 150; i++) pos[i] = i < 100 ? i : i - 100;
        lr[0] = 99, lr[1] = 149;
        tl_batch b1 = {.n_tok = 150, .tokens = toks, .pos = pos, .n_seq = 2, .seqs = q1, .n_logits = 2, .logit_rows = lr};
        CHECK(gpu->forward(gpu, m, &kv, &b1, lg[run], &e) == 0, "%s", e.msg);
        tl_batch_seq q2[3] = {{.tok_start = 0, .n_new = 1, .n_past = 100, .block_table = bt[1]},
                              {.tok_start = 1, .n_new = 300, .n_past = 0, .block_table = bt[0]},
                              {.tok_start = 301, .n_new = 40, .n_past = 50, .block_table = bt[2]}};
        for (int i = 0; i < 341; i++) pos[i] = i == 0 ? 100 : i <= 300 ? i - 1 : 50 + i - 301;
        lr[0] = 0, lr[1] = 300, lr[2] = 340;
        tl_batch b2 = {.n_tok = 341, .tokens = toks + 150, .pos = pos, .n_seq = 3, .seqs = q2, .n_logits = 3, .logit_rows = lr};
        CHECK(gpu->forward(gpu, m, &kv, &b2, lg[run], &e) == 0, "%s", e.msg);
        /* step 3 (12 tokens: a CUDA graph): decodes on the 100 and the 300, a 10-token chunk on the 90 */
        tl_batch_seq q3[3] = {{.tok_start = 0, .n_new = 1, .n_past = 101, .block_table = bt[1]},
                              {.tok_start = 1, .n_new = 1, .n_past = 300, .block_table = bt[0]},
                              {.tok_start = 2, .n_new = 10, .n_past = 90, .block_table = bt[2]}};
        for (int i = 0; i < 12; i++) pos[i] = i == 0 ? 101 : i == 1 ? 300 : 90 + i - 2;
        lr[0] = 0, lr[1] = 1, lr[2] = 11;
        tl_batch b3 = {.n_tok = 12, .tokens = toks + 491, .pos = pos, .n_seq = 3, .seqs = q3, .n_logits = 3, .logit_rows = lr};
        CHECK(gpu->forward(gpu, m, &kv, &b3, lg[run] + (size_t)3 * V, &e) == 0, "%s", e.msg);
        unsetenv("TL_CUDA_ATTN");
        unsetenv("TL_CUDA_ATTN_ROWS");
        setenv("TL_CUDA_ATTN_DEC", "tc", 1);
    }
    double err = tl_rel_err(lg[0], lg[1], (size_t)6 * V), err2 = tl_rel_err(lg[2], lg[1], (size_t)6 * V);
    double err3 = tl_rel_err(lg[0], lg[3], (size_t)6 * V), err4 = tl_rel_err(lg[3], lg[1], (size_t)6 * V);
    CHECK(err < 2e-2 && err2 < 2e-2 && err3 < 2e-2 && err4 < 2e-2, "tensor-core attention vs attn.cu, model logits: "
          "rel err %.3g / %.3g; tensor-core vs attn.cu decode kernel %.3g; attn.cu decode, tc prefill vs all attn.cu %.3g",
          err, err2, err3, err4);
    printf("  dummy:qwen2-0.5b int4, bf16 KV, mixed batches: tensor-core prefill+decode attention vs attn.cu logits rel "
           "err %.2e (128 rows a block: %.2e); tc decode vs attn.cu decode %.2e; tc prefill alone vs attn.cu %.2e\n",
           err, err2, err3, err4);
    free(lg[0]), free(lg[1]), free(lg[2]), free(lg[3]);
    gpu->kv_free(gpu, &kv);
    gpu->free(gpu);
    tl_model_free(m);
}

/* dummy:qwen2-0.5b INT4 (head_dim 64, GQA 7), bf16 KV: three prompts (60, 120, 250 tokens), then 20 decode
 * steps of the three together (CUDA graphs; contexts cross the 64-key tiles and the split count changes at
 * 257): each step's logits with the fused RoPE + attention kernel (default merge, TL_CUDA_ATT_MERGE=cluster,
 * =last) and the unfused kernels with the default merge equal those of the rope kernel + decode attention +
 * merge kernel (TL_CUDA_ATT_FUSE=0 TL_CUDA_ATT_MERGE=kernel), the step rerun on the same cache (every variant
 * writes the same K/V bits). */
static void fused_decode_check(void) {
    tl_error e = {{0}};
    tl_backend *gpu;
    tl_kv kv;
    tl_model *m = mixed_setup(&gpu, &kv, &e);
    if (!m) return;
    const int V = m->cfg.n_vocab, len[3] = {60, 120, 250};
    int32_t bt[3][32], toks[512], pos[512], lr[3];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 32; i++) bt[s][i] = 95 - (32 * s + i);
    unsigned long long sd = 17;
    for (int i = 0; i < 512; i++) toks[i] = (int32_t)(tl_t_rng(&sd) % 150000);
    float *lg = tl_malloc((size_t)3 * 3 * V * 4);
    int same = 1;
    tl_batch_seq q[3];
    int n = 0;
    for (int s = 0; s < 3; s++) {
        q[s] = (tl_batch_seq){.tok_start = n, .n_new = len[s], .n_past = 0, .block_table = bt[s]};
        for (int i = 0; i < len[s]; i++) pos[n + i] = i;
        lr[s] = n + len[s] - 1, n += len[s];
    }
    tl_batch b = {.n_tok = n, .tokens = toks, .pos = pos, .n_seq = 3, .seqs = q, .n_logits = 3, .logit_rows = lr};
    CHECK(gpu->forward(gpu, m, &kv, &b, lg, &e) == 0, "%s", e.msg);
    double worst = 0;
    for (int step = 0; step < 20; step++) {
        for (int s = 0; s < 3; s++) {
            q[s] = (tl_batch_seq){.tok_start = s, .n_new = 1, .n_past = len[s] + step, .block_table = bt[s]};
            pos[s] = len[s] + step, lr[s] = s;
        }
        tl_batch d = {.n_tok = 3, .tokens = toks + 3 * step, .pos = pos, .n_seq = 3, .seqs = q, .n_logits = 3,
                      .logit_rows = lr};
        /* v 0, the reference: rope + attention + merge kernels, gate/up in fp32, SiLU in down's prologue; v 5: the
         * default without gate/up pairs; v 1 (the default) is kept in the third buffer and v 5 must equal it bit
         * for bit */
        static const char *const fuse[6] = {"0", NULL, NULL, NULL, "0", NULL},
                                 *merge[6] = {"kernel", NULL, "cluster", "last", NULL, NULL},
                                 *pair[6] = {"0", NULL, NULL, NULL, NULL, "0"};
        for (int v = 0; v < 6; v++) {
            if (fuse[v]) setenv("TL_CUDA_ATT_FUSE", fuse[v], 1);
            if (merge[v]) setenv("TL_CUDA_ATT_MERGE", merge[v], 1);
            if (pair[v]) setenv("TL_CUDA_GU_PAIR", pair[v], 1);
            float *out = lg + (size_t)(v == 0 ? 0 : v == 1 ? 2 : 1) * 3 * V;
            CHECK(gpu->forward(gpu, m, &kv, &d, out, &e) == 0, "%s", e.msg);
            unsetenv("TL_CUDA_ATT_FUSE");
            unsetenv("TL_CUDA_ATT_MERGE");
            unsetenv("TL_CUDA_GU_PAIR");
            if (v) worst = fmax(worst, tl_rel_err(out, lg, (size_t)3 * V));
            if (v >= 5) same &= !memcmp(out, lg + (size_t)2 * 3 * V, (size_t)3 * V * 4);
        }
    }
    CHECK(worst < 1e-6, "fused RoPE + decode attention vs rope + attention kernels: logits rel err %.3g", worst);
    CHECK(same, "decode: gate/up pairs change the logits' bits");
    printf("  dummy:qwen2-0.5b int4, bf16 KV, 3 decodes x 20 steps: fused RoPE + attention (merges: default, "
           "cluster, last; unfused default; without gate/up pairs) vs rope + attention + merge kernels, logits rel err "
           "%.2e; gate/up pairs on / off: the same bits\n", worst);
    free(lg);
    gpu->kv_free(gpu, &kv);
    gpu->free(gpu);
    tl_model_free(m);
}

/* The bf16 prefill path (forwards of > 512 tokens: producers write bf16, gate/up leave cuBLAS in bf16) against
 * the fp32-activation path (TL_CUDA_PREFILL_BF16=0), dummy:qwen2-0.5b INT4, bf16 KV, two steps: chunks of 600 and
 * 100 tokens, then a decode on the 600 and a 600-token chunk on the 100; logits of every sequence. */
static void prefill_bf16_check(void) {
    tl_error e = {{0}};
    tl_backend *gpu;
    tl_kv kv;
    tl_model *m = mixed_setup(&gpu, &kv, &e);
    if (!m) return;
    const int V = m->cfg.n_vocab;
    int32_t bt[2][48], toks[1400], pos[1400], lr[4];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 48; i++) bt[s][i] = (i * 2 + s * 37) % 96; /* interleaved, not in position order */
    unsigned long long sd = 13;
    for (int i = 0; i < 1400; i++) toks[i] = (int32_t)(tl_t_rng(&sd) % 150000);
    float *lg[2];
    for (int run = 0; run < 2; run++) {
        if (run) setenv("TL_CUDA_PREFILL_BF16", "0", 1);
        lg[run] = tl_malloc((size_t)5 * V * 4);
        tl_batch_seq q1[2] = {{.tok_start = 0, .n_new = 600, .n_past = 0, .block_table = bt[0]},
                              {.tok_start = 600, .n_new = 100, .n_past = 0, .block_table = bt[1]}};
        for (int i = 0; i < 700; i++) pos[i] = i < 600 ? i : i - 600;
        lr[0] = 599, lr[1] = 699;
        tl_batch b1 = {.n_tok = 700, .tokens = toks, .pos = pos, .n_seq = 2, .seqs = q1, .n_logits = 2, .logit_rows = lr};
        CHECK(gpu->forward(gpu, m, &kv, &b1, lg[run], &e) == 0, "%s", e.msg);
        tl_batch_seq q2[2] = {{.tok_start = 0, .n_new = 1, .n_past = 600, .block_table = bt[0]},
                              {.tok_start = 1, .n_new = 600, .n_past = 100, .block_table = bt[1]}};
        for (int i = 0; i < 601; i++) pos[i] = i == 0 ? 600 : 100 + i - 1;
        lr[0] = 0, lr[1] = 300, lr[2] = 600;
        tl_batch b2 = {.n_tok = 601, .tokens = toks + 700, .pos = pos, .n_seq = 2, .seqs = q2, .n_logits = 3, .logit_rows = lr};
        CHECK(gpu->forward(gpu, m, &kv, &b2, lg[run] + (size_t)2 * V, &e) == 0, "%s", e.msg);
        unsetenv("TL_CUDA_PREFILL_BF16");
    }
    double err = tl_rel_err(lg[0], lg[1], (size_t)5 * V);
    CHECK(err < 2e-2, "bf16 prefill path vs fp32 activations, model logits: rel err %.3g", err);
    printf("  dummy:qwen2-0.5b int4, bf16 KV, 700/601-token steps: bf16 prefill path vs fp32 activations logits rel err "
           "%.2e\n", err);
    free(lg[0]), free(lg[1]);
    gpu->kv_free(gpu, &kv);
    gpu->free(gpu);
    tl_model_free(m);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* the CPU reference with fp32 activations above 4 tokens (its default Q4 path quantizes activations to
     * int8 at every n_tok since 47bfee7: ~0.1 relative logit error, too coarse for these tolerances) */
    setenv("TL_Q4_KERNEL", "old", 0);
    /* the tensor-core decode attention (attn_decode.cu) on every bf16-KV decode row here, whatever the backend's
     * default (prefill_attention_check compares it with attn.cu, TL_CUDA_ATTN_DEC=old) */
    setenv("TL_CUDA_ATTN_DEC", "tc", 0);
    tl_error e = {{0}};
    tl_backend *probe = tl_backend_cuda_new(0.5f, &e);
    if (!probe) {
        printf("no CUDA device (%s): skipped\n", e.msg);
        return 0;
    }
    probe->free(probe);
    static const char *models[] = {"qwen2-tied-gqa2-hd64", "qwen2-untied-gqa1-hd64-bf16", "qwen2-gqa7-hd128-f16",
                                   "llama-gqa2-sharded"};
    for (int i = 0; i < 4; i++) {
        run_hf(models[i], 0);
        run_hf(models[i], 4);
    }
    batch_invariance();
    graph_check();
    prefill_attention_check();
    fused_decode_check();
    prefill_bf16_check();
    TL_TEST_END();
}

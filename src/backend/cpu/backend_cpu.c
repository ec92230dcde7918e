/* backend_cpu.c: the CPU backend: the reference forward pass over a flat mixed batch.
 * Per layer: rmsnorm -> q/k/v (+bias) -> rope -> write K/V into paged blocks -> attention over
 * each sequence's blocks -> o_proj -> residual -> rmsnorm -> gate/up -> silu*mul -> down -> residual.
 * Then final norm and lm_head for the rows that need logits only. Activations fp32. */
#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include <math.h>

#include "core/pool.h"

typedef struct cpu_impl {
    tl_pool *pool;
    tl_attn_impl attn;
    bool mm_old;           /* TL_Q4_KERNEL=old: the previous matmul path, for A/B measurement */
    float *scratch;        /* activation arena; grows (rarely) to the largest batch seen */
    size_t scratch_floats;
} cpu_impl;

static int cpu_prepare(tl_backend *be, tl_model *m, tl_error *e) { return 0; }

static size_t cpu_kv_default_budget(tl_backend *be, const tl_model *m) { return (size_t)1 << 30; }

static int cpu_kv_alloc(tl_backend *be, tl_kv *kv, const tl_config *c, int block_size, int n_blocks, tl_dtype dt,
                        tl_error *e) {
    return tl_kv_init_host(kv, c, block_size, n_blocks, dt, e);
}
static void cpu_kv_free(tl_backend *be, tl_kv *kv) { tl_kv_free_host(kv); }

static void add_bias(float *y, const tl_tensor *b, int n_tok) {
    if (!b->data) return;
    const float *bb = b->data;
    for (int t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < b->cols; i++) y[(size_t)t * b->cols + i] += bb[i];
}

static void add_into(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* y[i] = x @ w[i]^T for weights sharing the input x: one dispatch (and one quantization of x) */
static void matmul_n(const cpu_impl *ci, const tl_tensor *const *w, float *const *y, int n, const float *x, int T) {
    if (!ci->mm_old) {
        tl_cpu_matmul_n(w, y, n, x, T, ci->pool);
        return;
    }
    for (int i = 0; i < n; i++) tl_cpu_matmul_old(w[i], x, y[i], T, ci->pool);
}

static void matmul(const cpu_impl *ci, const tl_tensor *w, const float *x, float *y, int T) {
    matmul_n(ci, &w, &y, 1, x, T);
}

static int cpu_forward(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, float *logits, tl_error *e) {
    cpu_impl *ci = be->impl;
    const tl_config *c = &m->cfg;
    const int T = b->n_tok, D = c->n_embd, QD = c->n_head * c->head_dim, KVD = c->n_head_kv * c->head_dim;
    if (T <= 0) return 0;
    for (int i = 0; i < T; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= c->n_vocab)
            return tl_errf(e, "token id %d out of range [0, %d)", b->tokens[i], c->n_vocab);
    /* arena: x, xb, xb2 [T, D]; q, att [T, QD]; k, v [T, KVD]; hb, hb2 [T, n_ff] */
    size_t need = (size_t)T * (3 * (size_t)D + 2 * (size_t)QD + 2 * (size_t)KVD + 2 * (size_t)c->n_ff);
    if (need > ci->scratch_floats) {
        tl_aligned_free(ci->scratch);
        ci->scratch = tl_aligned_alloc(need * sizeof(float));
        ci->scratch_floats = need;
    }
    float *x = ci->scratch, *xb = x + (size_t)T * D, *xb2 = xb + (size_t)T * D, *q = xb2 + (size_t)T * D,
          *att = q + (size_t)T * QD, *k = att + (size_t)T * QD, *v = k + (size_t)T * KVD, *hb = v + (size_t)T * KVD,
          *hb2 = hb + (size_t)T * c->n_ff;
    tl_pool *pool = ci->pool;
    tl_cpu_embed(&m->w.tok_embd, b->tokens, T, x);
    for (int l = 0; l < c->n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        tl_cpu_rmsnorm(x, L->attn_norm.data, xb, T, D, c->rms_eps);
        matmul_n(ci, (const tl_tensor *[]){&L->wq, &L->wk, &L->wv}, (float *[]){q, k, v}, 3, xb, T);
        add_bias(q, &L->bq, T);
        add_bias(k, &L->bk, T);
        add_bias(v, &L->bv, T);
        tl_cpu_rope(q, k, b->pos, T, c->n_head, c->n_head_kv, c->head_dim, c->rope_theta, c->rope);
        tl_cpu_kv_write(kv, l, b, k, v);
        tl_attn_args aa = {.kv = kv, .layer = l, .batch = b, .q = q, .out = att, .n_head = c->n_head,
                           .scale = 1.0f / sqrtf((float)c->head_dim)};
        if (ci->attn == TL_ATTN_NAIVE)
            tl_attn_naive(&aa, pool);
        else
            tl_attn_flash(&aa, pool);
        matmul(ci, &L->wo, att, xb2, T);
        add_into(x, xb2, (size_t)T * D);
        tl_cpu_rmsnorm(x, L->ffn_norm.data, xb, T, D, c->rms_eps);
        matmul_n(ci, (const tl_tensor *[]){&L->w_gate, &L->w_up}, (float *[]){hb, hb2}, 2, xb, T);
        tl_cpu_silu_mul(hb, hb2, (size_t)T * c->n_ff);
        matmul(ci, &L->w_down, hb, xb2, T);
        add_into(x, xb2, (size_t)T * D);
    }
    /* logits only for the rows that need them */
    for (int i = 0; i < b->n_logits; i++) {
        TL_ASSERT(b->logit_rows[i] >= 0 && b->logit_rows[i] < T);
        memcpy(xb + (size_t)i * D, x + (size_t)b->logit_rows[i] * D, (size_t)D * sizeof(float));
    }
    tl_cpu_rmsnorm(xb, m->w.out_norm.data, xb, b->n_logits, D, c->rms_eps);
    matmul(ci, &m->w.lm_head, xb, logits, b->n_logits);
    return 0;
}

static void cpu_free(tl_backend *be) {
    cpu_impl *ci = be->impl;
    tl_pool_free(ci->pool);
    tl_aligned_free(ci->scratch);
    free(ci);
    free(be);
}

tl_backend *tl_backend_cpu_new(int n_threads) {
    tl_backend *be = tl_calloc(1, sizeof *be);
    cpu_impl *ci = tl_calloc(1, sizeof *ci);
    ci->pool = tl_pool_create(n_threads);
    ci->attn = TL_ATTN_FLASH;
    const char *a = getenv("TL_ATTN");
    if (a && !strcmp(a, "naive")) ci->attn = TL_ATTN_NAIVE;
    const char *k = getenv("TL_Q4_KERNEL");
    ci->mm_old = k && !strcmp(k, "old");
    be->name = "cpu";
    be->prepare = cpu_prepare;
    be->kv_default_budget = cpu_kv_default_budget;
    be->kv_alloc = cpu_kv_alloc;
    be->kv_free = cpu_kv_free;
    be->forward = cpu_forward;
    be->free = cpu_free;
    be->impl = ci;
    return be;
}

void tl_backend_cpu_set_attn(tl_backend *be, tl_attn_impl impl) { ((cpu_impl *)be->impl)->attn = impl; }
tl_pool *tl_backend_cpu_pool(tl_backend *be) { return ((cpu_impl *)be->impl)->pool; }

/* dummy.c: models of the exact Qwen2 shapes with seeded random weights, built in memory, for
 * benchmarks and memory planning without a download: dummy:qwen2-0.5b, -1.5b, -7b, -72b, and
 * dummy:tiny (a 2-layer model with Qwen2's vocabulary, for fast tests). With --quant int4 the
 * int4 codes are drawn directly (no full-precision copy is ever held). */
#include <math.h>

#include "model/model.h"

typedef struct {
    const char *name;
    int n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_vocab, n_ctx;
    bool tied;
} dummy_spec;

/* Shapes from the published config.json files of Qwen/Qwen2-*-Instruct. */
static const dummy_spec specs[] = {
    {"qwen2-0.5b", 896, 4864, 24, 14, 2, 64, 151936, 32768, true},
    {"qwen2-1.5b", 1536, 8960, 28, 12, 2, 128, 151936, 32768, true},
    {"qwen2-7b", 3584, 18944, 28, 28, 4, 128, 152064, 32768, false},
    {"qwen2-72b", 8192, 29568, 80, 64, 8, 128, 152064, 32768, false},
    {"tiny", 64, 160, 2, 4, 2, 16, 151936, 4096, true},
};

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform weights in [-a, a], a = 1/sqrt(cols): activations keep their scale through the layers. */
static void fill_matrix(tl_tensor *t, int64_t rows, int64_t cols, tl_dtype dt, int qbits, int group, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    float a = 1.0f / sqrtf((float)cols);
    size_t n = (size_t)rows * (size_t)cols;
    uint64_t s = seed;
    if (qbits == 4 && cols % group == 0) { /* other widths stay in full precision, as tl_model_quantize does */
        t->type = TL_Q4;
        t->group = group;
        t->sb_type = TL_F16;
        size_t ng = n / (size_t)group;
        /* one block: codes [rows, cols/8] u32, then scales and biases [rows, cols/group] f16 */
        uint32_t *q = tl_aligned_alloc(n / 2 + ng * 4 + 64);
        uint16_t *sb = (uint16_t *)(q + n / 8);
        for (size_t i = 0; i < n / 8; i++) q[i] = (uint32_t)rng_next(&s);
        uint16_t sc = tl_f32_to_f16(2 * a / 15), bi = tl_f32_to_f16(-a);
        for (size_t g = 0; g < ng; g++) {
            sb[g] = sc;
            sb[ng + g] = bi;
        }
        t->data = t->owned = q;
        t->scales = sb;
        t->biases = sb + ng;
        return;
    }
    t->type = dt;
    size_t es = dt == TL_F32 ? 4 : 2;
    void *d = tl_aligned_alloc(n * es + 64);
    /* each 16 random bits index a table of values in [-a, a): a few ns per weight even for 72B */
    float *tf = tl_malloc(65536 * sizeof(float));
    uint16_t *th = tl_malloc(65536 * sizeof(uint16_t));
    for (int r = 0; r < 65536; r++) {
        tf[r] = ((float)r / 32768.0f - 1.0f) * a;
        th[r] = dt == TL_BF16 ? tl_f32_to_bf16(tf[r]) : tl_f32_to_f16(tf[r]);
    }
    for (size_t i = 0; i < n; i += 4) {
        uint64_t r = rng_next(&s);
        for (int j = 0; j < 4 && i + j < n; j++) {
            unsigned k = (unsigned)((r >> (16 * j)) & 0xffff);
            if (dt == TL_F32) ((float *)d)[i + j] = tf[k];
            else ((uint16_t *)d)[i + j] = th[k];
        }
    }
    free(tf);
    free(th);
    t->data = t->owned = d;
}

static void fill_vector(tl_tensor *t, int64_t n, float base, float spread, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->type = TL_F32;
    t->rows = 1;
    t->cols = n;
    float *f = tl_malloc((size_t)n * 4);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) f[i] = base + spread * ((float)(rng_next(&s) >> 40) / (float)(1 << 24) * 2 - 1);
    t->data = t->owned = f;
}

int tl_load_dummy(tl_model *m, const char *spec, const tl_load_opts *o, tl_error *e) {
    const dummy_spec *d = NULL;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (!strcmp(spec, specs[i].name)) d = &specs[i];
    if (!d)
        return tl_errf(e, "unknown dummy model '%s' (known: qwen2-0.5b, qwen2-1.5b, qwen2-7b, qwen2-72b, tiny)", spec);
    tl_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->arch = TL_ARCH_QWEN2;
    c->n_embd = d->n_embd;
    c->n_ff = d->n_ff;
    c->n_layer = d->n_layer;
    c->n_head = d->n_head;
    c->n_head_kv = d->n_head_kv;
    c->head_dim = d->head_dim;
    c->n_vocab = d->n_vocab;
    c->n_ctx = d->n_ctx;
    c->rms_eps = 1e-6f;
    c->rope_theta = 1e6f;
    c->rope = TL_ROPE_NEOX;
    c->qkv_bias = true;
    c->tied_embd = d->tied;
    c->bos_id = -1;
    c->eos_ids[0] = 151645; /* <|im_end|>, <|endoftext|> as in Qwen2-Instruct */
    c->eos_ids[1] = 151643;
    c->n_eos = 2;
    tl_dtype dt = o->dummy_dtype ? o->dummy_dtype : TL_BF16;
    if (!strcmp(spec, "tiny") && !o->dummy_dtype) dt = TL_F32;
    int qb = o->quant_bits, g = o->group_size ? o->group_size : 64;
    uint64_t seed = o->dummy_seed ? o->dummy_seed : 1234;
    const int64_t qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_head_kv * c->head_dim;
    tl_weights *w = &m->w;
    fill_matrix(&w->tok_embd, c->n_vocab, c->n_embd, dt, qb, g, seed + 1);
    fill_vector(&w->out_norm, c->n_embd, 1.0f, 0.1f, seed + 2);
    if (c->tied_embd) {
        w->lm_head = w->tok_embd;
        w->lm_head.owned = NULL;
    } else {
        fill_matrix(&w->lm_head, c->n_vocab, c->n_embd, dt, qb, g, seed + 3);
    }
    w->layers = tl_calloc((size_t)c->n_layer, sizeof(tl_layer));
    for (int l = 0; l < c->n_layer; l++) {
        tl_layer *L = &w->layers[l];
        uint64_t s = seed + 1000 * (uint64_t)(l + 1);
        fill_vector(&L->attn_norm, c->n_embd, 1.0f, 0.1f, s + 1);
        fill_vector(&L->ffn_norm, c->n_embd, 1.0f, 0.1f, s + 2);
        fill_matrix(&L->wq, qd, c->n_embd, dt, qb, g, s + 3);
        fill_matrix(&L->wk, kvd, c->n_embd, dt, qb, g, s + 4);
        fill_matrix(&L->wv, kvd, c->n_embd, dt, qb, g, s + 5);
        fill_matrix(&L->wo, c->n_embd, qd, dt, qb, g, s + 6);
        fill_matrix(&L->w_gate, c->n_ff, c->n_embd, dt, qb, g, s + 7);
        fill_matrix(&L->w_up, c->n_ff, c->n_embd, dt, qb, g, s + 8);
        fill_matrix(&L->w_down, c->n_embd, c->n_ff, dt, qb, g, s + 9);
        fill_vector(&L->bq, qd, 0.0f, 0.1f, s + 10);
        fill_vector(&L->bk, kvd, 0.0f, 0.1f, s + 11);
        fill_vector(&L->bv, kvd, 0.0f, 0.1f, s + 12);
    }
    snprintf(m->name, sizeof m->name, "%s (dummy, %s)", spec, qb == 4 ? "int4" : tl_dtype_name(dt));
    return 0;
}

/* test_attention.c: paged KV write + naive and flash attention (every SIMD tier) against a float64
 * softmax(q k^T * scale) v computed here, on shuffled non-contiguous block tables, GQA ratios
 * 1/2/7, head_dim 64/128, chunks of L = 1, 2, 7, 128 new tokens at offsets P = 0, 1, 15, 16, 1000,
 * several sequences per batch, f32/f16/bf16 KV. */
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/flash.h"
#include "core/cpu.h"
#include "core/pool.h"
#include "tl_test.h"

typedef struct {
    int P, L;
} seqspec;

typedef struct {
    int n_head_kv, G, head_dim, block_size;
    tl_dtype dt;
    float qamp; /* query amplitude: large values make the softmax peaky (outliers) */
} cfgspec;

static unsigned long long rng = 12345;

static float round_dt(float x, tl_dtype t) {
    if (t == TL_F16) return tl_f16_to_f32(tl_f32_to_f16(x));
    if (t == TL_BF16) return tl_bf16_to_f32(tl_f32_to_bf16(x));
    return x;
}

/* Stores x (already representable) at element index i of a KV buffer of dtype t. */
static void put(void *base, size_t i, float x, tl_dtype t) {
    if (t == TL_F32) ((float *)base)[i] = x;
    else if (t == TL_F16) ((uint16_t *)base)[i] = tl_f32_to_f16(x);
    else ((uint16_t *)base)[i] = tl_f32_to_bf16(x);
}
static float get(const void *base, size_t i, tl_dtype t) {
    if (t == TL_F32) return ((const float *)base)[i];
    if (t == TL_F16) return tl_f16_to_f32(((const uint16_t *)base)[i]);
    return tl_bf16_to_f32(((const uint16_t *)base)[i]);
}

/* Element index of (layer, block, head, row), computed here independently of kv_cache.h. */
static size_t idx(const cfgspec *c, int n_blocks, int layer, int blk, int h, int row) {
    return ((((size_t)layer * n_blocks + blk) * c->n_head_kv + h) * c->block_size + row) * c->head_dim;
}

static int n_cases;

static void run_case(const cfgspec *c, const seqspec *ss, int n_seq, tl_pool *pool) {
    const int nkv = c->n_head_kv, hd = c->head_dim, bs = c->block_size, nh = nkv * c->G, layer = 1;
    tl_config cfg = {.n_layer = 2, .n_head = nh, .n_head_kv = nkv, .head_dim = hd};
    int n_blocks = 3, n_tok = 0;
    for (int s = 0; s < n_seq; s++) {
        n_blocks += TL_CDIV(ss[s].P + ss[s].L, bs);
        n_tok += ss[s].L;
    }
    tl_kv kv;
    tl_error e;
    CHECK(tl_kv_init_host(&kv, &cfg, bs, n_blocks, c->dt, &e) == 0, "%s", e.msg);
    /* garbage everywhere, so a read of the wrong row shows */
    size_t n_el = kv.bytes / 2 / (c->dt == TL_F32 ? 4 : 2);
    for (size_t i = 0; i < n_el; i++) {
        put(kv.k, i, round_dt(50 * tl_t_randf(&rng), c->dt), c->dt);
        put(kv.v, i, round_dt(50 * tl_t_randf(&rng), c->dt), c->dt);
    }
    /* shuffled block ids */
    int *perm = malloc(sizeof(int) * n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(tl_t_rng(&rng) % (unsigned)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    tl_batch_seq *seqs = calloc(n_seq, sizeof *seqs);
    float **K = calloc(n_seq, sizeof(float *)), **V = calloc(n_seq, sizeof(float *));
    int32_t **bt = calloc(n_seq, sizeof(int32_t *));
    int next_blk = 0, tok = 0;
    /* sequences sit in the flat batch in reverse order of their index */
    for (int s = n_seq - 1; s >= 0; s--) {
        int ctx = ss[s].P + ss[s].L, nb = TL_CDIV(ctx, bs);
        bt[s] = malloc(sizeof(int32_t) * nb);
        for (int i = 0; i < nb; i++) bt[s][i] = perm[next_blk++];
        K[s] = malloc(sizeof(float) * ctx * nkv * hd);
        V[s] = malloc(sizeof(float) * ctx * nkv * hd);
        for (int i = 0; i < ctx * nkv * hd; i++) {
            K[s][i] = round_dt(tl_t_randf(&rng), c->dt);
            V[s][i] = round_dt(tl_t_randf(&rng), c->dt);
        }
        /* the past goes straight into memory */
        for (int p = 0; p < ss[s].P; p++)
            for (int h = 0; h < nkv; h++)
                for (int d = 0; d < hd; d++) {
                    size_t i = idx(c, n_blocks, layer, bt[s][p / bs], h, p % bs) + d;
                    put(kv.k, i, K[s][((size_t)p * nkv + h) * hd + d], c->dt);
                    put(kv.v, i, V[s][((size_t)p * nkv + h) * hd + d], c->dt);
                }
        seqs[s] = (tl_batch_seq){.tok_start = tok, .n_new = ss[s].L, .n_past = ss[s].P, .block_table = bt[s]};
        tok += ss[s].L;
    }
    int32_t *pos = malloc(sizeof(int32_t) * n_tok);
    float *kn = malloc(sizeof(float) * n_tok * nkv * hd), *vn = malloc(sizeof(float) * n_tok * nkv * hd);
    for (int s = 0; s < n_seq; s++)
        for (int j = 0; j < ss[s].L; j++) {
            int t = seqs[s].tok_start + j, p = ss[s].P + j;
            pos[t] = p;
            memcpy(kn + (size_t)t * nkv * hd, K[s] + (size_t)p * nkv * hd, sizeof(float) * nkv * hd);
            memcpy(vn + (size_t)t * nkv * hd, V[s] + (size_t)p * nkv * hd, sizeof(float) * nkv * hd);
        }
    tl_batch b = {.n_tok = n_tok, .pos = pos, .n_seq = n_seq, .seqs = seqs};
    tl_cpu_kv_write(&kv, layer, &b, kn, vn);
    int bad_write = 0;
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < ss[s].P + ss[s].L; p++)
            for (int h = 0; h < nkv; h++)
                for (int d = 0; d < hd; d++) {
                    size_t i = idx(c, n_blocks, layer, bt[s][p / bs], h, p % bs) + d;
                    bad_write += get(kv.k, i, c->dt) != K[s][((size_t)p * nkv + h) * hd + d];
                    bad_write += get(kv.v, i, c->dt) != V[s][((size_t)p * nkv + h) * hd + d];
                }
    CHECK(bad_write == 0, "kv_write: %d wrong elements", bad_write);

    float *q = malloc(sizeof(float) * n_tok * nh * hd);
    for (int i = 0; i < n_tok * nh * hd; i++) q[i] = c->qamp * tl_t_randf(&rng);
    const float scale = 1.0f / sqrtf((float)hd);
    /* float64 reference */
    float *ref = malloc(sizeof(float) * n_tok * nh * hd);
    int max_ctx = 1;
    for (int s = 0; s < n_seq; s++) max_ctx = TL_MAX(max_ctx, ss[s].P + ss[s].L);
    double *w = malloc(sizeof(double) * max_ctx), *acc = malloc(sizeof(double) * hd);
    for (int s = 0; s < n_seq; s++)
        for (int j = 0; j < ss[s].L; j++) {
            int t = seqs[s].tok_start + j, n_vis = ss[s].P + j + 1;
            for (int h = 0; h < nh; h++) {
                int g = h / c->G;
                const float *qr = q + ((size_t)t * nh + h) * hd;
                double mx = -1e300, sum = 0;
                for (int p = 0; p < n_vis; p++) {
                    double dot = 0;
                    for (int d = 0; d < hd; d++) dot += (double)qr[d] * K[s][((size_t)p * nkv + g) * hd + d];
                    w[p] = dot * scale;
                    if (w[p] > mx) mx = w[p];
                }
                for (int p = 0; p < n_vis; p++) sum += (w[p] = exp(w[p] - mx));
                for (int d = 0; d < hd; d++) acc[d] = 0;
                for (int p = 0; p < n_vis; p++)
                    for (int d = 0; d < hd; d++) acc[d] += w[p] / sum * V[s][((size_t)p * nkv + g) * hd + d];
                for (int d = 0; d < hd; d++) ref[((size_t)t * nh + h) * hd + d] = (float)acc[d];
            }
        }
    float *out = malloc(sizeof(float) * n_tok * nh * hd);
    tl_attn_args a = {.kv = &kv, .layer = layer, .batch = &b, .q = q, .out = out, .n_head = nh, .scale = scale};
    char label[160];
    int off = snprintf(label, sizeof label, "nkv=%d G=%d hd=%d bs=%d %s qamp=%g seqs:", nkv, c->G, hd, bs,
                       tl_dtype_name(c->dt), c->qamp);
    for (int s = 0; s < n_seq && off < (int)sizeof label - 16; s++)
        off += snprintf(label + off, sizeof label - off, " %d+%d", ss[s].P, ss[s].L);
    const double tol = 2e-5;

    memset(out, 0xff, sizeof(float) * n_tok * nh * hd);
    tl_attn_naive(&a, pool);
    double err = tl_rel_err(out, ref, (size_t)n_tok * nh * hd);
    CHECK(err < tol, "naive %s: rel err %.3g", label, err);
    for (int isa = TL_ISA_SCALAR; isa <= (int)tl_cpu_isa(); isa++)
        for (int use_pool = 0; use_pool < 2; use_pool++) {
            memset(out, 0xff, sizeof(float) * n_tok * nh * hd);
            tl_attn_flash_isa(&a, use_pool ? pool : NULL, (tl_isa)isa);
            err = tl_rel_err(out, ref, (size_t)n_tok * nh * hd);
            CHECK(err < tol, "flash[%s]%s %s: rel err %.3g", tl_isa_name((tl_isa)isa), use_pool ? " pool" : "",
                  label, err);
        }
    n_cases++;

    free(out), free(ref), free(w), free(acc), free(q), free(pos), free(kn), free(vn);
    for (int s = 0; s < n_seq; s++) free(bt[s]), free(K[s]), free(V[s]);
    free(bt), free(K), free(V), free(seqs), free(perm);
    tl_kv_free_host(&kv);
}

/* tl_cpu_kv_write's f16/bf16 rounding (every tier) against core's scalar conversions, on values
 * that are not representable: ties, overflow to inf, f16 subnormals and underflow, NaN; head_dim
 * 36 leaves a tail after the 8-wide loop. */
static void test_kv_rounding(void) {
    const int hd = 36, n_tok = 16;
    tl_config cfg = {.n_layer = 1, .n_head = 1, .n_head_kv = 1, .head_dim = hd};
    float *x = malloc(sizeof(float) * n_tok * hd);
    static const float special[] = {1.00048828125f, 1.00146484375f, 65504.f, 65519.f, 65520.f, 1e5f, -7e4f,
                                    1e-8f, 2.98023224e-8f, 3e-8f, 6.1e-5f, 1e-40f, 0.f, -0.f, 1.00390625f,
                                    1.01171875f, 3.4e38f, -3.4e38f, NAN, INFINITY, -INFINITY};
    const int n_special = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < n_tok * hd; i++) {
        int e2 = (int)(tl_t_rng(&rng) % 60) - 40;
        x[i] = i < n_special ? special[i] : ldexpf(tl_t_randf(&rng), e2);
    }
    int32_t bt[1] = {0}, pos[16];
    for (int j = 0; j < n_tok; j++) pos[j] = j;
    tl_batch_seq sq = {.tok_start = 0, .n_new = n_tok, .n_past = 0, .block_table = bt};
    tl_batch b = {.n_tok = n_tok, .pos = pos, .n_seq = 1, .seqs = &sq};
    for (int di = 1; di <= 2; di++)
        for (int isa = TL_ISA_SCALAR; isa <= (int)tl_cpu_isa() && isa <= TL_ISA_AVX2; isa++) {
            tl_dtype dt = di == 1 ? TL_F16 : TL_BF16;
            tl_kv kv;
            tl_error e;
            CHECK(tl_kv_init_host(&kv, &cfg, 16, 1, dt, &e) == 0, "%s", e.msg);
            setenv("TL_CPU", tl_isa_name((tl_isa)isa), 1);
            tl_cpu_kv_write(&kv, 0, &b, x, x);
            unsetenv("TL_CPU");
            const uint16_t *k = kv.k, *v = kv.v;
            int bad = 0;
            for (int i = 0; i < n_tok * hd; i++) {
                uint16_t want = dt == TL_F16 ? tl_f32_to_f16(x[i]) : tl_f32_to_bf16(x[i]);
                if (k[i] != want || v[i] != want) {
                    if (bad++ < 3) fprintf(stderr, "  %s[%s] x=%.9g: got %04x want %04x\n", tl_dtype_name(dt),
                                           tl_isa_name((tl_isa)isa), x[i], k[i], want);
                }
            }
            CHECK(bad == 0, "kv_write %s rounding [%s]: %d of %d wrong", tl_dtype_name(dt),
                  tl_isa_name((tl_isa)isa), bad, n_tok * hd);
            tl_kv_free_host(&kv);
        }
    free(x);
}

static const char *name_of(tl_dtype t) { return tl_dtype_name(t); }

int main(void) {
    tl_pool *pool = tl_pool_create(3);
    test_kv_rounding();
    static const int Ps[] = {0, 1, 15, 16, 1000}, Ls[] = {1, 2, 7, 128};
    static const int Gs[] = {1, 2, 7}, HDs[] = {64, 128};
    static const tl_dtype DTs[] = {TL_F32, TL_F16, TL_BF16};
    /* 1) every (P, L) pair as its own single-sequence batch, f32, hd 64, each GQA ratio */
    for (int gi = 0; gi < 3; gi++)
        for (int pi = 0; pi < 5; pi++)
            for (int li = 0; li < 4; li++) {
                cfgspec c = {.n_head_kv = Gs[gi] == 7 ? 1 : 2, .G = Gs[gi], .head_dim = 64, .block_size = 16,
                             .dt = TL_F32, .qamp = 1};
                seqspec s = {Ps[pi], Ls[li]};
                run_case(&c, &s, 1, pool);
            }
    /* 2) mixed batches (prefill chunks and decodes together), every dtype x head_dim x ratio,
     *    block sizes that do not divide the tile sizes, contexts off every multiple */
    for (int di = 0; di < 3; di++)
        for (int hi = 0; hi < 2; hi++)
            for (int gi = 0; gi < 3; gi++) {
                cfgspec c = {.n_head_kv = Gs[gi] == 7 ? 1 : 2, .G = Gs[gi], .head_dim = HDs[hi],
                             .block_size = (di + hi + gi) % 2 ? 16 : 7, .dt = DTs[di], .qamp = 1};
                seqspec s[5] = {{Ps[(di + gi) % 5], 7}, {1000, 1}, {15, 2}, {Ps[(hi + gi + 2) % 5], 1}, {33, 128}};
                int n = (gi % 2) ? 5 : 4;
                if (n == 4) s[3] = (seqspec){Ps[(di + hi) % 5], 128};
                run_case(&c, s, n, pool);
            }
    /* 3) outliers: a peaky softmax (large query amplitude) */
    for (int di = 0; di < 3; di++) {
        cfgspec c = {.n_head_kv = 2, .G = 2, .head_dim = 128, .block_size = 16, .dt = DTs[di], .qamp = 30};
        seqspec s[3] = {{1000, 1}, {16, 128}, {1, 2}};
        run_case(&c, s, 3, pool);
    }
    /* 4) long decode (flash-decoding split over threads) */
    {
        cfgspec c = {.n_head_kv = 2, .G = 7, .head_dim = 128, .block_size = 16, .dt = TL_F16, .qamp = 1};
        seqspec s = {3001, 1};
        run_case(&c, &s, 1, pool);
    }
    /* 5) split key ranges where some rows of a query tile see nothing of a chunk (G = 1: a tile of
     *    128 tokens at P = 172 splits its 300 keys at 192; rows j < 20 end before that) */
    for (int di = 0; di < 2; di++) {
        cfgspec c = {.n_head_kv = 1, .G = 1, .head_dim = 64, .block_size = 16, .dt = DTs[di], .qamp = 1};
        seqspec s = {172, 128};
        run_case(&c, &s, 1, pool);
    }
    printf("%d cases (isa %s, dtypes %s/%s/%s)\n", n_cases, tl_isa_name(tl_cpu_isa()), name_of(TL_F32),
           name_of(TL_F16), name_of(TL_BF16));
    tl_pool_free(pool);
    TL_TEST_END();
}

/* int4.c: affine group-wise INT4 quantization (MLX layout), Q4 tensors from checkpoint parts,
 * and quantizing a loaded model in place. See int4.h for the format and the error bound. */
#include "quant/int4.h"

#include <math.h>

#include "core/pool.h"

static inline float src_load(const void *p, tl_dtype t, int64_t i) {
    if (t == TL_F32) return ((const float *)p)[i];
    if (t == TL_BF16) return tl_bf16_to_f32(((const uint16_t *)p)[i]);
    return tl_f16_to_f32(((const uint16_t *)p)[i]);
}

static inline uint16_t sb_store(float v, tl_dtype t) { return t == TL_BF16 ? tl_f32_to_bf16(v) : tl_f32_to_f16(v); }
static inline float sb_back(uint16_t h, tl_dtype t) { return t == TL_BF16 ? tl_bf16_to_f32(h) : tl_f16_to_f32(h); }

/* One row: codes [cols/8], scales/biases [cols/group]. Returns -1 on a non-finite weight. */
static int quantize_row(const void *src, tl_dtype st, int64_t off, int64_t cols, int group, tl_dtype sb,
                        uint32_t *codes, uint16_t *scales, uint16_t *biases) {
    float v[128];
    for (int64_t g0 = 0; g0 < cols; g0 += group) {
        float mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < group; i++) {
            v[i] = src_load(src, st, off + g0 + i);
            if (!isfinite(v[i])) return -1;
            mn = fminf(mn, v[i]);
            mx = fmaxf(mx, v[i]);
        }
        uint16_t hs = sb_store((mx - mn) / 15.0f, sb), hb = sb_store(mn, sb);
        float s = sb_back(hs, sb), b = sb_back(hb, sb);
        scales[g0 / group] = hs;
        biases[g0 / group] = hb;
        for (int i = 0; i < group; i += 8) {
            uint32_t word = 0;
            for (int j = 0; j < 8; j++) {
                long q = s > 0 ? lrintf((v[i + j] - b) / s) : 0;
                q = q < 0 ? 0 : q > 15 ? 15 : q;
                word |= (uint32_t)q << (4 * j);
            }
            codes[(g0 + i) / 8] = word;
        }
    }
    return 0;
}

static int check_args(int64_t rows, int64_t cols, int group, tl_dtype st, tl_dtype sb, tl_error *e) {
    if (group != 32 && group != 64 && group != 128) return tl_errf(e, "int4: group size %d (use 32, 64 or 128)", group);
    if (rows <= 0 || cols <= 0 || cols % group)
        return tl_errf(e, "int4: shape [%lld, %lld] (cols must be a positive multiple of the group size %d)",
                       (long long)rows, (long long)cols, group);
    if (st != TL_F32 && st != TL_F16 && st != TL_BF16) return tl_errf(e, "int4: cannot quantize %s", tl_dtype_name(st));
    if (sb != TL_F16 && sb != TL_BF16) return tl_errf(e, "int4: scales must be f16 or bf16");
    return 0;
}

int tl_q4_quantize(const void *src, tl_dtype src_type, int64_t rows, int64_t cols, int group, tl_dtype sb_type,
                   uint32_t *codes, uint16_t *scales, uint16_t *biases, tl_error *e) {
    if (check_args(rows, cols, group, src_type, sb_type, e)) return -1;
    int64_t ng = cols / group;
    for (int64_t r = 0; r < rows; r++)
        if (quantize_row(src, src_type, r * cols, cols, group, sb_type, codes + r * (cols / 8), scales + r * ng,
                         biases + r * ng))
            return tl_errf(e, "int4: non-finite weight in row %lld", (long long)r);
    return 0;
}

/* ---- threaded tensor quantization ---- */
typedef struct {
    const tl_tensor *src;
    tl_tensor *dst;
    int64_t rows_per_task;
    float *maxabs; /* [n_tasks] */
    int pass;      /* 0: scan max |w|, 1: quantize */
    _Atomic int bad;
} qctx;

static void q_task(void *arg, int task, int thread) {
    qctx *c = arg;
    const tl_tensor *s = c->src;
    int64_t r0 = task * c->rows_per_task, r1 = TL_MIN(s->rows, r0 + c->rows_per_task);
    if (c->pass == 0) {
        float m = 0;
        for (int64_t i = r0 * s->cols; i < r1 * s->cols; i++) {
            float v = fabsf(src_load(s->data, s->type, i));
            if (v != v) {
                m = NAN;
                break;
            }
            m = fmaxf(m, v);
        }
        c->maxabs[task] = m;
        return;
    }
    tl_tensor *d = c->dst;
    int64_t ng = s->cols / d->group;
    for (int64_t r = r0; r < r1; r++)
        if (quantize_row(s->data, s->type, r * s->cols, s->cols, d->group, d->sb_type,
                         (uint32_t *)d->data + r * (s->cols / 8), (uint16_t *)d->scales + r * ng,
                         (uint16_t *)d->biases + r * ng))
            c->bad = 1;
    (void)thread;
}

static int quantize_tensor(const tl_tensor *src, int group, tl_tensor *out, tl_pool *pool, tl_error *e) {
    if (check_args(src->rows, src->cols, group, src->type, TL_F16, e)) return -1;
    if (!src->data) return tl_errf(e, "int4: tensor has no data");
    qctx c = {.src = src, .dst = out, .rows_per_task = TL_MAX((int64_t)1, 65536 / src->cols)};
    int n_tasks = (int)TL_CDIV(src->rows, c.rows_per_task);
    c.maxabs = tl_malloc((size_t)n_tasks * sizeof(float));
    tl_pool_run(pool, q_task, &c, n_tasks);
    float m = 0;
    for (int i = 0; i < n_tasks; i++)
        m = c.maxabs[i] != c.maxabs[i] || m != m ? NAN : fmaxf(m, c.maxabs[i]);
    free(c.maxabs);
    if (!isfinite(m)) return tl_errf(e, "int4: tensor has NaN/Inf weights");
    int64_t ncode = src->rows * src->cols / 8, nsb = src->rows * (src->cols / group);
    void *blk = tl_aligned_alloc((size_t)ncode * 4 + (size_t)nsb * 4); /* free() releases it */
    memset(out, 0, sizeof *out);
    out->type = TL_Q4;
    out->rows = src->rows;
    out->cols = src->cols;
    out->group = group;
    out->sb_type = m > 65504.0f ? TL_BF16 : TL_F16;
    out->data = blk;
    out->scales = (uint32_t *)blk + ncode;
    out->biases = (uint16_t *)out->scales + nsb;
    out->owned = blk;
    c.pass = 1;
    tl_pool_run(pool, q_task, &c, n_tasks);
    TL_ASSERT(!c.bad); /* finiteness checked above */
    return 0;
}

int tl_q4_quantize_tensor(const tl_tensor *src, int group, tl_tensor *out, tl_error *e) {
    return quantize_tensor(src, group, out, NULL, e);
}

int tl_q4_from_parts(tl_tensor *out, const void *codes, int64_t rows, int64_t packed_cols, const void *scales,
                     const void *biases, tl_dtype sb_type, int64_t n_groups, tl_error *e) {
    if (!codes || !scales || !biases) return tl_errf(e, "int4: missing weight, scales or biases");
    if (rows <= 0 || packed_cols <= 0 || n_groups <= 0)
        return tl_errf(e, "int4: bad shapes: weight [%lld, %lld], scales [%lld, %lld]", (long long)rows,
                       (long long)packed_cols, (long long)rows, (long long)n_groups);
    int64_t cols = packed_cols * 8;
    if (cols % n_groups) return tl_errf(e, "int4: %lld columns do not split into %lld groups", (long long)cols,
                                        (long long)n_groups);
    int64_t g = cols / n_groups;
    if (g != 32 && g != 64 && g != 128) return tl_errf(e, "int4: group size %lld unsupported (32, 64, 128)", (long long)g);
    if (sb_type != TL_F16 && sb_type != TL_BF16 && sb_type != TL_F32)
        return tl_errf(e, "int4: scales/biases dtype %s unsupported", tl_dtype_name(sb_type));
    memset(out, 0, sizeof *out);
    out->type = TL_Q4;
    out->rows = rows;
    out->cols = cols;
    out->group = (int)g;
    out->sb_type = sb_type;
    out->data = (void *)codes;
    out->scales = (void *)scales;
    out->biases = (void *)biases;
    return 0;
}

/* ---- whole model ---- */
static void progress_bar(int done, int total, int group) {
    int w = 30, f = total ? done * w / total : w;
    fprintf(stderr, "\rquantizing to int4 (group %d) [", group);
    for (int i = 0; i < w; i++) fputc(i < f ? '#' : ' ', stderr);
    fprintf(stderr, "] %3d%% %d/%d", total ? done * 100 / total : 100, done, total);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

int tl_model_quantize(tl_model *m, int group, bool progress, tl_error *e) {
    if (group == 0) group = 64;
    if (group != 32 && group != 64 && group != 128) return tl_errf(e, "int4: group size %d (use 32, 64 or 128)", group);
    int nl = m->cfg.n_layer, total = nl * 7 + 2;
    tl_tensor **list = tl_malloc((size_t)total * sizeof *list);
    int n = 0;
    bool tied = m->w.lm_head.data == m->w.tok_embd.data;
    list[n++] = &m->w.tok_embd;
    for (int l = 0; l < nl; l++) {
        tl_layer *L = &m->w.layers[l];
        tl_tensor *t[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) list[n++] = t[i];
    }
    if (!tied) list[n++] = &m->w.lm_head;
    tl_pool *pool = tl_pool_create(0);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        tl_tensor *t = list[i];
        if (progress) progress_bar(i, n, group);
        if (t->type == TL_Q4 || t->type == TL_Q8 || !t->data) continue; /* already quantized / absent */
        if (t->cols % group) {
            if (progress) fputc('\n', stderr);
            tl_warn("int4: a [%lld, %lld] weight is not a multiple of group %d wide; left in %s", (long long)t->rows,
                    (long long)t->cols, group, tl_dtype_name(t->type));
            continue;
        }
        tl_tensor q;
        if (quantize_tensor(t, group, &q, pool, e)) {
            rc = -1;
            break;
        }
        free(t->owned); /* quantizing happens at load, before a backend prepares (packs) anything */
        *t = q;
    }
    if (rc == 0 && tied) m->w.lm_head = m->w.tok_embd; /* shares the Q4 tensor (owned once, by tok_embd) */
    if (rc == 0 && progress) progress_bar(n, n, group);
    tl_pool_free(pool);
    free(list);
    return rc;
}

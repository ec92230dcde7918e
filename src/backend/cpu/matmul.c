/* matmul.c: y[n_tok, rows] = x[n_tok, cols] @ W^T for every weight dtype.
 * The scalar reference, the scalar kernel table, and the threaded driver that picks the direct
 * (decode) or panel (prefill) path and a kernel table by tl_mm_isa(). See matmul_impl.h. */
#include <math.h>

#include "backend/cpu/matmul_impl.h"

/* ---- reference: dequantize one row at a time, accumulate in double ---- */
void tl_cpu_matmul_ref(const tl_tensor *w, const float *x, float *y, int n_tok) {
    int64_t rows = w->rows, cols = w->cols;
    float *row = tl_malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        tl_tensor_row_f32(w, r, row);
        for (int t = 0; t < n_tok; t++) {
            const float *xt = x + (int64_t)t * cols;
            double acc = 0;
            for (int64_t k = 0; k < cols; k++) acc += (double)xt[k] * row[k];
            y[(int64_t)t * rows + r] = (float)acc;
        }
    }
    free(row);
}

/* ---- scalar kernels ---- */
static inline float sb_load(tl_dtype t, const void *p, int64_t i) {
    const uint16_t *h = p;
    return t == TL_BF16 ? tl_bf16_to_f32(h[i]) : t == TL_F16 ? tl_f16_to_f32(h[i]) : ((const float *)p)[i];
}

static void deq_scalar(const tl_tensor *w, int64_t r, int64_t k0, int n, float *out) {
    int64_t cols = w->cols;
    switch (w->type) {
    case TL_F32: memcpy(out, (const float *)w->data + r * cols + k0, (size_t)n * sizeof(float)); return;
    case TL_F16:
    case TL_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + r * cols + k0;
        for (int i = 0; i < n; i++) out[i] = sb_load(w->type, p, i);
        return;
    }
    case TL_Q4: {
        const uint32_t *q = (const uint32_t *)w->data + r * (cols / 8);
        int64_t ng = cols / w->group;
        for (int i = 0; i < n; i++) {
            int64_t k = k0 + i, g = r * ng + k / w->group;
            int code = (int)((q[k / 8] >> (4 * (k % 8))) & 15);
            out[i] = (float)code * sb_load(w->sb_type, w->scales, g) + sb_load(w->sb_type, w->biases, g);
        }
        return;
    }
    case TL_Q8: {
        const int8_t *q = (const int8_t *)w->data + r * cols;
        const float *s = (const float *)w->scales + r * (cols / w->group);
        for (int i = 0; i < n; i++) out[i] = (float)q[k0 + i] * s[(k0 + i) / w->group];
        return;
    }
    }
    TL_ASSERT(0 && "unknown dtype");
}

static void gemm_scalar(const float *x, int64_t ldx, const float *p, int ldp, float *y, int64_t ldy, int nt, int nr,
                        int n) {
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < nr; i++) {
            float acc = 0;
            for (int k = 0; k < n; k++) acc += x[t * ldx + k] * p[(int64_t)i * ldp + k];
            y[t * ldy + i] += acc;
        }
}

static void dot_dense_scalar(const tl_tensor *w, int64_t r0, int64_t r1, const float *x, int64_t ldx, int nt, float *y,
                             int64_t ldy) {
    int64_t cols = w->cols;
    for (int64_t r = r0; r < r1; r++)
        for (int t = 0; t < nt; t++) {
            float acc = 0;
            if (w->type == TL_F32) {
                const float *p = (const float *)w->data + r * cols;
                for (int64_t k = 0; k < cols; k++) acc += x[t * ldx + k] * p[k];
            } else {
                const uint16_t *p = (const uint16_t *)w->data + r * cols;
                for (int64_t k = 0; k < cols; k++) acc += x[t * ldx + k] * sb_load(w->type, p, k);
            }
            y[t * ldy + r] = acc;
        }
}

/* Index of column k in the permuted int8 layout of tl_mm_xq (see matmul_impl.h). */
static inline int64_t xq_index(int64_t k, int64_t cols) {
    int64_t c = k / 64, j = k % 64, blk = j / 32, m = j % 32;
    int odd = (int)(m & 1);
    if (c * 64 + 64 <= cols) return c * 64 + odd * 32 + blk * 16 + m / 2;
    return c * 64 + odd * 16 + m / 2; /* last half chunk of 32 */
}

/* The exact specification of the int8-activation Q4 product: integer sums per 32-block. */
static void dot_q4i8_scalar(const tl_tensor *w, int64_t r0, int64_t r1, const tl_mm_xq *xq, int nt, float *y,
                            int64_t ldy) {
    int64_t cols = w->cols, ng = cols / w->group;
    int bpg = w->group / TL_MM_QB;
    for (int64_t r = r0; r < r1; r++) {
        const uint32_t *q = (const uint32_t *)w->data + r * (cols / 8);
        for (int t = 0; t < nt; t++) {
            const int8_t *xqt = xq->q + (int64_t)t * cols;
            const float *dt = xq->d + (int64_t)t * (cols / TL_MM_QB);
            const float *gs = xq->gsum + (int64_t)t * ng;
            float acc = 0;
            for (int64_t g = 0; g < ng; g++) {
                float sg = sb_load(w->sb_type, w->scales, r * ng + g), bg = sb_load(w->sb_type, w->biases, r * ng + g);
                float part = 0;
                for (int b = 0; b < bpg; b++) {
                    int64_t k0 = g * w->group + (int64_t)b * TL_MM_QB;
                    int32_t isum = 0;
                    for (int64_t k = k0; k < k0 + TL_MM_QB; k++)
                        isum += (int32_t)((q[k / 8] >> (4 * (k % 8))) & 15) * xqt[xq_index(k, cols)];
                    part += (float)isum * dt[k0 / TL_MM_QB];
                }
                acc += sg * part + bg * gs[g];
            }
            y[t * ldy + r] = acc;
        }
    }
}

const tl_mm_kernels tl_mm_scalar = {"scalar", deq_scalar, gemm_scalar, dot_dense_scalar, dot_q4i8_scalar,
                                    tl_mm_quantize_x, 0};

const tl_mm_kernels *tl_mm_for_isa(tl_isa isa) {
    if (isa >= TL_ISA_AVX512) return &tl_mm_avx512;
    if (isa >= TL_ISA_AVX2) return &tl_mm_avx2;
    return &tl_mm_scalar;
}

tl_isa tl_mm_isa(void) {
    tl_isa isa = tl_cpu_isa();
    const tl_cpu_features *f = tl_cpu();
    const char *cap = getenv("TL_CPU"); /* the same caps as tl_cpu_isa */
    bool capped = cap && (!strcmp(cap, "scalar") || !strcmp(cap, "avx2"));
    if (isa == TL_ISA_AVX2 && !capped && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512vnni)
        return TL_ISA_AVX512;
    return isa;
}

/* ---- activation quantization for the int8 path ---- */
void tl_mm_quantize_x(const float *x, int n_tok, int64_t cols, int group, tl_mm_xq *xq) {
    int64_t nb = cols / TL_MM_QB, ng = cols / group, nc = TL_CDIV(cols, 64);
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (int64_t)t * cols;
        int8_t *qt = xq->q + (int64_t)t * cols;
        float *d8 = xq->d8 + (int64_t)t * nc * 8;
        for (int64_t c = 0; c < nc; c++) {
            int nblk = c * 64 + 64 <= cols ? 2 : 1; /* a last chunk may hold one 32-block */
            for (int b = 0; b < 2; b++) {
                float d = 0;
                if (b < nblk) {
                    const float *xb = xt + c * 64 + b * 32;
                    float amax = 0;
                    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
                    d = amax / 127.0f;
                    float id = amax > 0 ? 127.0f / amax : 0.0f;
                    int8_t *qb = qt + c * 64 + b * 16; /* even columns here, odd ones nblk*16 further */
                    for (int m = 0; m < 32; m++) qb[(m & 1) * nblk * 16 + m / 2] = (int8_t)lrintf(xb[m] * id);
                    xq->d[t * nb + c * 2 + b] = d;
                }
                for (int l = 0; l < 4; l++) d8[c * 8 + b * 4 + l] = d;
            }
        }
        for (int64_t g = 0; g < ng; g++) {
            float s = 0;
            for (int i = 0; i < group; i++) s += xt[g * group + i];
            xq->gsum[t * ng + g] = s;
        }
    }
    xq->cols = cols;
    xq->group = group;
}

/* ---- threaded driver ---- */
enum { MODE_DENSE, MODE_Q4I8, MODE_PANEL };

/* One dispatch over the concatenated rows of n parts (weights sharing x). Task ids run over
 * part 0's row tasks x token blocks, then part 1's, ... */
typedef struct {
    const tl_mm_kernels *k;
    const tl_tensor *w[TL_MM_MAX_PARTS];
    float *y[TL_MM_MAX_PARTS]; /* [n_tok, w[i]->rows] */
    int task0[TL_MM_MAX_PARTS + 1]; /* first task id of each part */
    int n_parts;
    const float *x; /* [n_tok, cols] */
    int n_tok, mode, rpt, tb, n_tb; /* rows per task, tokens per task (token block), token blocks */
    int64_t cols;
    const tl_mm_xq *xq;
} mm_ctx;

/* Which part, rows [r0, r1) and tokens [t0, t1) task `task` covers. */
static int task_range(const mm_ctx *c, int task, int64_t *r0, int64_t *r1, int *t0, int *t1) {
    int p = 0;
    while (task >= c->task0[p + 1]) p++;
    int i = task - c->task0[p], rb = i / c->n_tb, tbk = i % c->n_tb;
    *r0 = (int64_t)rb * c->rpt;
    *r1 = TL_MIN(c->w[p]->rows, *r0 + c->rpt);
    *t0 = tbk * c->tb;
    *t1 = TL_MIN(c->n_tok, *t0 + c->tb);
    return p;
}

static void task_direct(void *arg, int task, int thread) {
    const mm_ctx *c = arg;
    int64_t r0, r1;
    int ta, tz;
    int p = task_range(c, task, &r0, &r1, &ta, &tz);
    const tl_tensor *w = c->w[p];
    int64_t rows = w->rows, cols = c->cols;
    int tile = c->mode == MODE_DENSE ? TL_MM_DIRECT_T : c->k->q4_tile > 0 ? c->k->q4_tile : tz - ta;
    for (int t0 = ta; t0 < tz; t0 += tile) {
        int nt = TL_MIN(tile, tz - t0);
        float *yt = c->y[p] + (int64_t)t0 * rows;
        if (c->mode == MODE_DENSE) {
            c->k->dot_dense(w, r0, r1, c->x + (int64_t)t0 * cols, cols, nt, yt, rows);
        } else {
            tl_mm_xq v = tl_mm_xq_at(c->xq, t0);
            c->k->dot_q4i8(w, r0, r1, &v, nt, yt, rows);
        }
    }
    (void)thread;
}

static void task_panel(void *arg, int task, int thread) {
    const mm_ctx *c = arg;
    _Alignas(64) float panel[TL_MM_RB * TL_MM_KC]; /* [TL_MM_RB rows, TL_MM_KC cols] fp32 */
    int64_t r0, r1;
    int ta, tz;
    int p = task_range(c, task, &r0, &r1, &ta, &tz);
    const tl_tensor *w = c->w[p];
    int64_t rows = w->rows, cols = c->cols;
    int nr = (int)(r1 - r0);
    float *y = c->y[p] + (int64_t)ta * rows;
    for (int t = 0; t < tz - ta; t++) memset(y + t * rows + r0, 0, (size_t)nr * sizeof(float));
    for (int64_t kc = 0; kc < cols; kc += TL_MM_KC) {
        int n = (int)TL_MIN((int64_t)TL_MM_KC, cols - kc);
        for (int i = 0; i < nr; i++) c->k->dequant(w, r0 + i, kc, n, panel + i * TL_MM_KC);
        c->k->gemm(c->x + (int64_t)ta * cols + kc, cols, panel, TL_MM_KC, y + r0, rows, tz - ta, nr, n);
    }
    (void)thread;
}

static bool q4_simd_ok(const tl_tensor *w) {
    return (w->group == 32 || w->group == 64 || w->group == 128) && w->cols % w->group == 0 &&
           (w->sb_type == TL_F16 || w->sb_type == TL_BF16);
}

/* Parts can share one dispatch (and one quantized x) when the kernels and mode are the same. */
static bool parts_agree(const tl_tensor *a, const tl_tensor *b) {
    if (a->type != b->type || a->cols != b->cols) return false;
    if (a->type == TL_Q4 || a->type == TL_Q8) return a->group == b->group && q4_simd_ok(a) == q4_simd_ok(b);
    return true;
}

/* int8 activations per task (token block): about 256 KiB of int8 x, so that x stays in L2 while
 * a kernel runs each 4-row block of weights (in L1) over all of the block's tokens; the weights
 * are read again per token block. */
#define TL_MM_XQ_BLOCK (256 * 1024)

void tl_mm_run_n(const tl_mm_kernels *k, tl_mm_q4_path q4, const tl_tensor *const *w, float *const *y, int n,
                 const float *x, int n_tok, tl_pool *pool) {
    TL_ASSERT(n >= 1 && n <= TL_MM_MAX_PARTS && n_tok >= 0);
    for (int i = 1; i < n; i++)
        if (!parts_agree(w[0], w[i])) {
            for (int j = 0; j < n; j++) tl_mm_run_n(k, q4, &w[j], &y[j], 1, x, n_tok, pool);
            return;
        }
    if (n_tok == 0) return;
    const tl_tensor *w0 = w[0];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        TL_ASSERT(w[i]->rows > 0 && w[i]->cols > 0);
        total += w[i]->rows;
    }
    mm_ctx c = {.k = k, .n_parts = n, .x = x, .n_tok = n_tok, .cols = w0->cols};
    for (int i = 0; i < n; i++) {
        c.w[i] = w[i];
        c.y[i] = y[i];
    }
    if (w0->type == TL_Q4 || w0->type == TL_Q8) TL_ASSERT(w0->group > 0 && w0->cols % w0->group == 0);
    if (w0->type == TL_Q4 && !q4_simd_ok(w0)) k = c.k = &tl_mm_scalar; /* odd group/sb type: plain code */
    bool small = n_tok <= TL_MM_DIRECT_T;
    bool i8 = q4 == TL_MM_Q4_AUTO || q4 == TL_MM_Q4_I8 || (q4 == TL_MM_Q4_LEGACY && small);
    if (w0->type == TL_Q4 && i8 && w0->group % TL_MM_QB == 0)
        c.mode = MODE_Q4I8;
    else if ((w0->type == TL_F32 || w0->type == TL_F16 || w0->type == TL_BF16) && small)
        c.mode = MODE_DENSE;
    else
        c.mode = MODE_PANEL;

    int nth = pool ? tl_pool_size(pool) : 1;
    c.tb = n_tok;
    if (c.mode == MODE_PANEL) {
        c.rpt = TL_MM_RB;
    } else { /* ~8 tasks per thread for balance, at least 4 rows each */
        int64_t rpt = TL_CDIV(total, (int64_t)nth * 8);
        c.rpt = (int)TL_MIN((int64_t)256, TL_MAX((int64_t)4, (rpt + 3) & ~(int64_t)3));
        if (c.mode == MODE_Q4I8) /* token blocks of a multiple of TL_MM_DIRECT_T */
            c.tb = (int)TL_MAX((int64_t)TL_MM_DIRECT_T, (TL_MM_XQ_BLOCK / c.cols) & ~(int64_t)(TL_MM_DIRECT_T - 1));
    }
    c.tb = TL_MIN(c.tb, n_tok);
    c.n_tb = TL_CDIV(n_tok, c.tb);
    c.task0[0] = 0;
    for (int i = 0; i < n; i++) c.task0[i + 1] = c.task0[i] + (int)TL_CDIV(w[i]->rows, (int64_t)c.rpt) * c.n_tb;

    tl_mm_xq xq = {0};
    void *buf = NULL;
    if (c.mode == MODE_Q4I8) {
        size_t nq = (size_t)n_tok * (size_t)c.cols, nb = nq / TL_MM_QB, ng = nq / (size_t)w0->group;
        size_t n8 = (size_t)n_tok * (size_t)TL_CDIV(c.cols, 64) * 8;
        buf = tl_aligned_alloc(nq + (n8 + nb + ng) * sizeof(float) + 64);
        xq.d8 = buf; /* first: 32-byte aligned for the SIMD loads */
        xq.d = xq.d8 + n8;
        xq.gsum = xq.d + nb;
        xq.q = (int8_t *)(xq.gsum + ng);
        (k->quantize_x ? k->quantize_x : tl_mm_quantize_x)(x, n_tok, c.cols, w0->group, &xq);
        c.xq = &xq;
    }
    tl_pool_run(pool, c.mode == MODE_PANEL ? task_panel : task_direct, &c, c.task0[n]);
    if (buf) tl_aligned_free(buf);
}

void tl_mm_run(const tl_mm_kernels *k, tl_mm_q4_path q4, const tl_tensor *w, const float *x, float *y, int n_tok,
               tl_pool *pool) {
    tl_mm_run_n(k, q4, &w, &y, 1, x, n_tok, pool);
}

void tl_cpu_matmul(const tl_tensor *w, const float *x, float *y, int n_tok, tl_pool *pool) {
    tl_mm_run(tl_mm_for_isa(tl_mm_isa()), TL_MM_Q4_AUTO, w, x, y, n_tok, pool);
}

void tl_cpu_matmul_n(const tl_tensor *const *w, float *const *y, int n, const float *x, int n_tok, tl_pool *pool) {
    tl_mm_run_n(tl_mm_for_isa(tl_mm_isa()), TL_MM_Q4_AUTO, w, y, n, x, n_tok, pool);
}

void tl_cpu_matmul_old(const tl_tensor *w, const float *x, float *y, int n_tok, tl_pool *pool) {
    tl_isa isa = tl_mm_isa();
    const tl_mm_kernels *k = isa == TL_ISA_AVX512 ? &tl_mm_avx512_rows
                             : isa == TL_ISA_AVX2 ? &tl_mm_avx2_rows
                                                  : &tl_mm_scalar;
    tl_mm_run(k, TL_MM_Q4_LEGACY, w, x, y, n_tok, pool);
}

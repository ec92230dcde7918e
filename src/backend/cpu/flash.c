/* flash.c: FlashAttention-2 style paged attention on the CPU.
 *
 * Work item = (sequence, kv head g, tile of query tokens [j0, j1), key range [k0, k1)). The tile's
 * rows are all G = n_head / n_head_kv query heads of kv head g for each of its tokens
 * (row m = (j - j0) * G + hh), so each K/V tile is read from the paged cache once per item and
 * used by M = (j1 - j0) * G rows; no K/V is ever copied per query head.
 * The item's query rows are transposed once (QT [head_dim][M], pre-scaled); for each key tile of
 * BK keys (row pointers through the block table: straight into an fp32 cache, or a converted
 * copy of the tile for f16/bf16):
 *   S^T = K QT (vectorized over the M rows); causal mask (token j at position P + j sees keys
 *   0..P+j) on diagonal tiles only; online softmax per row (running max m and sum l in fp32,
 *   vectorized over rows); acc = acc * exp(m_old - m) + P V.
 * Key tiles past the last token's position are never visited (fully masked tiles are skipped).
 * Memory: per thread a few tiles (O(BK * head_dim + M * head_dim)), never n x n scores.
 *
 * Flash-decoding: an item that alone is more than 1/(4 n_threads) of the batch's work (a lone
 * decode against a long context, one long sequence among short ones) has its key range split in
 * chunks; each chunk leaves a partial (m, l, acc) and a second pass merges them exactly:
 *   m* = max m_s, l = sum l_s e^(m_s - m*), out = sum acc_s e^(m_s - m*) / l. */
#include <math.h>

#include "backend/cpu/flash.h"

enum {
    BK = 64,          /* keys per tile */
    M_TARGET = 128,   /* query rows per tile (tokens x heads of one group) */
    MPAD_MAX = 16,    /* the widest tier's row padding */
    SPLIT_MIN = 256,  /* shortest key chunk worth a split of its own */
};

typedef struct {
    int s, g, j0, j1; /* sequence, kv head, query tokens [j0, j1) of the sequence's new tokens */
    int k0, k1;       /* key positions [k0, k1) */
    int64_t part;     /* float offset of this chunk's partial (m[M], l[M], acc[M][hd]) or -1 */
} item;

typedef struct {
    int s, g, j0, j1, n_split;
    int64_t part; /* first chunk's partial; chunks follow each other */
} merge_item;

typedef struct {
    const tl_attn_args *a;
    const tl_flash_kern *k;
    int G, bq, max_m;
    item *items;
    int n_items;
    merge_item *merges;
    int n_merges;
    float *part;        /* partial results of split items */
    int64_t part_len;   /* floats */
    float *scratch;     /* [n_threads][per_thread] */
    size_t per_thread;  /* floats */
} plan;

static size_t thread_floats(int max_m, int hd) {
    /* QT[hd][Mp] + ST[BK][Mp] + acc[Mp][hd] + Kbuf[BK][hd] + Vbuf[BK][hd] + m, l, corr [Mp] */
    size_t mp = (size_t)TL_CDIV(max_m, MPAD_MAX) * MPAD_MAX;
    return mp * hd * 2 + (size_t)BK * mp + (size_t)BK * hd * 2 + 3 * mp;
}

/* Heaviest items first, so the pool's counter hands out the long ones early. */
static int item_cmp(const void *x, const void *y) {
    const item *a = x, *b = y;
    int64_t ca = (int64_t)(a->j1 - a->j0) * (a->k1 - a->k0), cb = (int64_t)(b->j1 - b->j0) * (b->k1 - b->k0);
    return ca < cb ? 1 : ca > cb ? -1 : 0;
}

/* Builds the work list. n_threads: how many threads will take items. */
static void plan_build(plan *pl, const tl_attn_args *a, int n_threads) {
    const tl_batch *b = a->batch;
    const int nkv = a->kv->n_head_kv, hd = a->kv->head_dim;
    pl->G = a->n_head / nkv;
    pl->bq = TL_MAX(1, M_TARGET / pl->G);
    pl->max_m = pl->bq * pl->G;
    /* Split an item's key range when it alone is more than 1/(4 n_threads) of the batch's work
     * (rows x visible keys): a lone decode spreads over every thread, and one long sequence among
     * short ones does not become the tail. Chunks stay >= SPLIT_MIN keys; one thread never splits. */
    double total = 0;
    for (int s = 0; s < b->n_seq; s++) {
        const tl_batch_seq *sq = &b->seqs[s];
        for (int j0 = 0; j0 < sq->n_new; j0 += pl->bq) {
            int j1 = TL_MIN(sq->n_new, j0 + pl->bq);
            total += (double)nkv * (j1 - j0) * (sq->n_past + j1);
        }
    }
    const double target = n_threads > 1 ? total / (4.0 * n_threads) : 0;
    int cap = 0;
    for (int pass = 0; pass < 2; pass++) {
        int ni = 0, nm = 0;
        int64_t part = 0;
        for (int s = 0; s < b->n_seq; s++) {
            const tl_batch_seq *sq = &b->seqs[s];
            int nt = TL_CDIV(sq->n_new, pl->bq);
            for (int t = nt - 1; t >= 0; t--)
                for (int g = 0; g < nkv; g++) {
                    int j0 = t * pl->bq, j1 = TL_MIN(sq->n_new, j0 + pl->bq);
                    int vis = sq->n_past + j1; /* keys 0..P+j1-1 */
                    int ns = 1;
                    if (target > 0) {
                        double want = ceil((double)(j1 - j0) * vis / target);
                        ns = (int)TL_MIN(want, (double)TL_CDIV(vis, SPLIT_MIN));
                        ns = TL_MAX(ns, 1);
                    }
                    int chunk = ns > 1 ? TL_CDIV(TL_CDIV(vis, ns), BK) * BK : vis;
                    ns = TL_CDIV(vis, chunk);
                    int m = (j1 - j0) * pl->G;
                    if (pass) {
                        if (ns > 1) pl->merges[nm] = (merge_item){s, g, j0, j1, ns, part};
                        for (int c = 0; c < ns; c++)
                            pl->items[ni + c] =
                                (item){s, g, j0, j1, c * chunk, TL_MIN(vis, (c + 1) * chunk),
                                       ns > 1 ? part + (int64_t)c * m * (hd + 2) : -1};
                    }
                    ni += ns;
                    if (ns > 1) {
                        nm++;
                        part += (int64_t)ns * m * (hd + 2);
                    }
                }
        }
        if (!pass) {
            cap = ni;
            pl->items = tl_malloc(sizeof(item) * (size_t)TL_MAX(cap, 1));
            pl->merges = tl_malloc(sizeof(merge_item) * (size_t)TL_MAX(nm, 1));
        }
        pl->n_items = ni;
        pl->n_merges = nm;
        pl->part_len = part;
    }
    TL_ASSERT(pl->n_items == cap);
    qsort(pl->items, (size_t)pl->n_items, sizeof(item), item_cmp);
    pl->per_thread = thread_floats(pl->max_m, hd);
}

static void plan_free(plan *pl) {
    free(pl->items);
    free(pl->merges);
}

size_t tl_attn_flash_scratch_bytes(const tl_attn_args *a, int n_threads) {
    plan pl = {0};
    plan_build(&pl, a, n_threads);
    size_t bytes = (pl.per_thread * (size_t)n_threads + (size_t)pl.part_len) * sizeof(float) +
                   (size_t)pl.n_items * sizeof(item) + (size_t)pl.n_merges * sizeof(merge_item);
    plan_free(&pl);
    return bytes;
}

static void item_task(void *vctx, int task, int thread) {
    const plan *pl = vctx;
    const item *it = &pl->items[task];
    const tl_attn_args *a = pl->a;
    const tl_flash_kern *K = pl->k;
    const tl_kv *kv = a->kv;
    const tl_batch_seq *sq = &a->batch->seqs[it->s];
    const int hd = kv->head_dim, bs = kv->block_size, G = pl->G, n_head = a->n_head, P = sq->n_past;
    const int M = (it->j1 - it->j0) * G, Mp = TL_CDIV(M, K->mpad) * K->mpad, g = it->g;
    const size_t mpmax = (size_t)TL_CDIV(pl->max_m, MPAD_MAX) * MPAD_MAX;
    const size_t esz = kv->dtype == TL_F32 ? 4 : 2;
    float *QT = pl->scratch + pl->per_thread * (size_t)thread;
    float *ST = QT + mpmax * hd, *acc = ST + (size_t)BK * mpmax, *Kbuf = acc + mpmax * hd;
    float *Vbuf = Kbuf + (size_t)BK * hd, *mrow = Vbuf + (size_t)BK * hd, *lrow = mrow + mpmax, *corr = lrow + mpmax;
    const float *krow[BK], *vrow[BK];

    for (int m = 0; m < Mp; m++) { /* the tile's query rows, transposed and pre-scaled */
        mrow[m] = -INFINITY;
        lrow[m] = 0;
        if (m >= M) {
            for (int d = 0; d < hd; d++) QT[(size_t)d * Mp + m] = 0;
            continue;
        }
        int t = sq->tok_start + it->j0 + m / G, h = g * G + m % G;
        const float *q = a->q + ((size_t)t * n_head + h) * hd;
        for (int d = 0; d < hd; d++) QT[(size_t)d * Mp + m] = q[d] * a->scale;
    }
    memset(acc, 0, sizeof(float) * (size_t)M * hd);
    const char *kbase = kv->k, *vbase = kv->v;
    for (int kt = it->k0; kt < it->k1; kt += BK) {
        const int nk = TL_MIN(BK, it->k1 - kt);
        for (int c = 0; c < nk; c++) { /* the key/value tile through the block table */
            int p = kt + c;
            size_t off = tl_kv_offset(kv, a->layer, sq->block_table[p / bs], g, p % bs) * esz;
            if (kv->dtype == TL_F32) {
                krow[c] = (const float *)(kbase + off);
                vrow[c] = (const float *)(vbase + off);
            } else {
                K->load(Kbuf + (size_t)c * hd, kbase + off, hd, kv->dtype);
                K->load(Vbuf + (size_t)c * hd, vbase + off, hd, kv->dtype);
                krow[c] = Kbuf + (size_t)c * hd;
                vrow[c] = Vbuf + (size_t)c * hd;
            }
        }
        K->qk(krow, nk, QT, Mp, hd, ST, Mp);
        if (kt + nk - 1 > P + it->j0) /* diagonal tile: row m (token j0 + m/G) sees keys <= P + j */
            for (int c = 0; c < nk; c++)
                for (int m = 0; m < M; m++)
                    if (kt + c > P + it->j0 + m / G) ST[(size_t)c * Mp + m] = -INFINITY;
        K->softmax(ST, nk, Mp, Mp, mrow, lrow, corr);
        for (int m = 0; m < M; m++)
            if (corr[m] != 1.0f) {
                float *ar = acc + (size_t)m * hd, cm = corr[m];
                for (int d = 0; d < hd; d++) ar[d] *= cm;
            }
        K->pv(acc, M, ST, Mp, vrow, nk, hd);
    }
    if (it->part < 0) { /* whole key range: normalize into out */
        for (int m = 0; m < M; m++) {
            int t = sq->tok_start + it->j0 + m / G, h = g * G + m % G;
            float *o = a->out + ((size_t)t * n_head + h) * hd, inv = lrow[m] > 0 ? 1.0f / lrow[m] : 0;
            for (int d = 0; d < hd; d++) o[d] = acc[(size_t)m * hd + d] * inv;
        }
    } else { /* partial: m[M], l[M], acc[M][hd] */
        float *pp = pl->part + it->part;
        memcpy(pp, mrow, sizeof(float) * M);
        memcpy(pp + M, lrow, sizeof(float) * M);
        memcpy(pp + 2 * M, acc, sizeof(float) * (size_t)M * hd);
    }
}

/* Merges the chunks of one split item exactly (see the top of the file). */
static void merge_task(void *vctx, int task, int thread) {
    const plan *pl = vctx;
    const merge_item *mi = &pl->merges[task];
    const tl_attn_args *a = pl->a;
    const tl_batch_seq *sq = &a->batch->seqs[mi->s];
    const int hd = a->kv->head_dim, G = pl->G, M = (mi->j1 - mi->j0) * G;
    const int64_t stride = (int64_t)M * (hd + 2);
    for (int m = 0; m < M; m++) {
        int t = sq->tok_start + mi->j0 + m / G, h = mi->g * G + m % G;
        float *o = a->out + ((size_t)t * a->n_head + h) * hd;
        float mx = -INFINITY, l = 0;
        for (int c = 0; c < mi->n_split; c++) mx = TL_MAX(mx, pl->part[mi->part + c * stride + m]);
        memset(o, 0, sizeof(float) * hd);
        for (int c = 0; c < mi->n_split; c++) {
            const float *pp = pl->part + mi->part + c * stride;
            if (pp[m] == -INFINITY) continue; /* this chunk saw nothing of the row */
            float w = expf(pp[m] - mx);
            l += pp[M + m] * w;
            const float *ar = pp + 2 * M + (size_t)m * hd;
            for (int d = 0; d < hd; d++) o[d] += ar[d] * w;
        }
        float inv = l > 0 ? 1.0f / l : 0;
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}

static const tl_flash_kern *pick(tl_isa isa, int hd) {
    tl_isa have = tl_cpu_isa();
    if (isa > have) isa = have;
    const tl_flash_kern *k = isa == TL_ISA_AVX512 ? tl_flash_kern_avx512()
                             : isa == TL_ISA_AVX2 ? tl_flash_kern_avx2()
                                                  : tl_flash_kern_scalar();
    if (hd % k->dpad || MPAD_MAX % k->mpad) k = tl_flash_kern_scalar();
    return k;
}

void tl_attn_flash_isa(const tl_attn_args *a, tl_pool *pool, tl_isa isa) {
    const tl_batch *b = a->batch;
    TL_ASSERT(a->n_head > 0 && a->kv->n_head_kv > 0 && a->n_head % a->kv->n_head_kv == 0);
    if (b->n_tok <= 0) return;
    /* tokens no sequence claims attend to nothing */
    int *tok_seq = tl_malloc(sizeof(int) * (size_t)b->n_tok);
    tl_attn_map_tokens(b, tok_seq);
    for (int t = 0; t < b->n_tok; t++)
        if (tok_seq[t] < 0) memset(a->out + (size_t)t * a->n_head * a->kv->head_dim, 0,
                                   sizeof(float) * a->n_head * a->kv->head_dim);
    free(tok_seq);
    const int n_threads = tl_pool_size(pool);
    plan pl = {.a = a, .k = pick(isa, a->kv->head_dim)};
    plan_build(&pl, a, n_threads);
    pl.scratch = tl_aligned_alloc(sizeof(float) * pl.per_thread * n_threads);
    pl.part = pl.part_len ? tl_aligned_alloc(sizeof(float) * (size_t)pl.part_len) : NULL;
    tl_pool_run(pool, item_task, &pl, pl.n_items);
    if (pl.n_merges) tl_pool_run(pool, merge_task, &pl, pl.n_merges);
    tl_aligned_free(pl.part);
    tl_aligned_free(pl.scratch);
    plan_free(&pl);
}

void tl_attn_flash(const tl_attn_args *a, tl_pool *pool) { tl_attn_flash_isa(a, pool, tl_cpu_isa()); }

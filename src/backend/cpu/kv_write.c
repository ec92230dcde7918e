/* kv_write.c: stores the new tokens' K/V rows into their paged blocks (fp32 in, kv->dtype out). */
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/flash.h"

/* dst[n] (dtype t) = src[n] (fp32); the scalar loops are the reference of kv_write_avx2.c */
static void store_row(void *dst, const float *src, int n, tl_dtype t, bool avx2) {
    if (t == TL_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (avx2) {
        tl_kv_store_row_avx2(dst, src, n, t);
    } else if (t == TL_BF16) {
        uint16_t *d = dst;
        for (int i = 0; i < n; i++) d[i] = tl_f32_to_bf16(src[i]);
    } else {
        uint16_t *d = dst;
        for (int i = 0; i < n; i++) d[i] = tl_f32_to_f16(src[i]);
    }
}

/* k, v: [n_tok, n_head_kv, head_dim] fp32. Token j of sequence s sits at position n_past + j,
 * i.e. block block_table[(n_past + j) / block_size], row (n_past + j) % block_size. */
void tl_cpu_kv_write(tl_kv *kv, int layer, const tl_batch *b, const float *k, const float *v) {
    const int hd = kv->head_dim, nkv = kv->n_head_kv, bs = kv->block_size;
    const size_t esz = kv->dtype == TL_F32 ? 4 : 2;
    const bool avx2 = tl_cpu_isa() >= TL_ISA_AVX2;
    TL_ASSERT(layer >= 0 && layer < kv->n_layer);
    for (int s = 0; s < b->n_seq; s++) {
        const tl_batch_seq *sq = &b->seqs[s];
        for (int j = 0; j < sq->n_new; j++) {
            int p = sq->n_past + j, t = sq->tok_start + j;
            int blk = sq->block_table[p / bs];
            TL_ASSERT(blk >= 0 && blk < kv->n_blocks);
            for (int h = 0; h < nkv; h++) {
                size_t off = tl_kv_offset(kv, layer, blk, h, p % bs);
                store_row((char *)kv->k + off * esz, k + ((size_t)t * nkv + h) * hd, hd, kv->dtype, avx2);
                store_row((char *)kv->v + off * esz, v + ((size_t)t * nkv + h) * hd, hd, kv->dtype, avx2);
            }
        }
    }
}

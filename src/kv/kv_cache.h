/* kv_cache.h: the KV memory pool. One allocation for all layers, split in fixed-size blocks.
 * Sequences own block indices (engine/block manager); the pool owns the memory.
 *
 * Layout (chosen for the attention kernels' reads: a head's keys of one block are contiguous):
 *   k, v: [n_layer][n_blocks][n_head_kv][block_size][head_dim] elements of `dtype`.
 * Token at position p of a sequence lives in block block_table[p / block_size], row p % block_size. */
#ifndef TL_KV_CACHE_H
#define TL_KV_CACHE_H

#include "model/model.h"

typedef struct tl_kv {
    int n_layer, n_head_kv, head_dim;
    int block_size;                /* tokens per block */
    int n_blocks;
    tl_dtype dtype;                /* TL_F32, TL_F16 or TL_BF16 */
    void *k, *v;                   /* backend memory (host memory for the CPU backend) */
    size_t bytes;                  /* k + v */
} tl_kv;

/* Bytes one block takes over all layers, K and V. */
size_t tl_kv_block_bytes(const tl_config *c, int block_size, tl_dtype dtype);
/* Number of blocks a memory budget buys (at least 1 if budget allows any). */
int tl_kv_blocks_for_budget(const tl_config *c, int block_size, tl_dtype dtype, size_t budget);
/* Host allocation (CPU backend). */
int tl_kv_init_host(tl_kv *kv, const tl_config *c, int block_size, int n_blocks, tl_dtype dtype, tl_error *e);
void tl_kv_free_host(tl_kv *kv);

/* Element offset of (layer, block, head, row) in k or v. */
static inline size_t tl_kv_offset(const tl_kv *kv, int layer, int block, int head, int row) {
    return ((((size_t)layer * kv->n_blocks + block) * kv->n_head_kv + head) * kv->block_size + row) *
           kv->head_dim;
}

#endif

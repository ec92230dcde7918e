/* kv_cache.c: sizing and host allocation of the KV pool. */
#include "kv/kv_cache.h"

static size_t dtype_size(tl_dtype t) { return t == TL_F32 ? 4 : 2; }

size_t tl_kv_block_bytes(const tl_config *c, int block_size, tl_dtype dtype) {
    return 2 * (size_t)c->n_layer * c->n_head_kv * block_size * c->head_dim * dtype_size(dtype);
}

int tl_kv_blocks_for_budget(const tl_config *c, int block_size, tl_dtype dtype, size_t budget) {
    size_t per = tl_kv_block_bytes(c, block_size, dtype);
    size_t n = per ? budget / per : 0;
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

int tl_kv_init_host(tl_kv *kv, const tl_config *c, int block_size, int n_blocks, tl_dtype dtype, tl_error *e) {
    memset(kv, 0, sizeof *kv);
    if (dtype != TL_F32 && dtype != TL_F16 && dtype != TL_BF16)
        return tl_errf(e, "kv cache dtype must be f32, f16 or bf16");
    if (block_size <= 0 || n_blocks <= 0) return tl_errf(e, "kv cache: need block_size > 0 and n_blocks > 0");
    kv->n_layer = c->n_layer;
    kv->n_head_kv = c->n_head_kv;
    kv->head_dim = c->head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->dtype = dtype;
    size_t half = tl_kv_block_bytes(c, block_size, dtype) / 2 * (size_t)n_blocks;
    kv->k = tl_aligned_alloc(half);
    kv->v = tl_aligned_alloc(half);
    kv->bytes = 2 * half;
    return 0;
}

void tl_kv_free_host(tl_kv *kv) {
    tl_aligned_free(kv->k);
    tl_aligned_free(kv->v);
    kv->k = kv->v = NULL;
}

/* flash.c: FlashAttention-2 style paged attention (placeholder: runs the naive kernel until the
 * tiled kernels land). */
#include "backend/cpu/flash.h"

size_t tl_attn_flash_scratch_bytes(const tl_attn_args *a, int n_threads) {
    return tl_attn_naive_scratch_bytes(a, n_threads);
}

void tl_attn_flash_isa(const tl_attn_args *a, tl_pool *pool, tl_isa isa) {
    (void)isa;
    tl_attn_naive(a, pool);
}

void tl_attn_flash(const tl_attn_args *a, tl_pool *pool) { tl_attn_flash_isa(a, pool, tl_cpu_isa()); }

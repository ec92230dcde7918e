/* flash.h: private to the CPU attention kernels (attention.c, flash*.c) and their tests/bench. */
#ifndef TL_FLASH_H
#define TL_FLASH_H

#include "backend/cpu/cpu_ops.h"
#include "core/cpu.h"

/* tok_seq[n_tok] = index of the sequence each token belongs to (-1 if none); returns the longest
 * visible context over the batch's sequences. */
int tl_attn_map_tokens(const tl_batch *b, int *tok_seq);

/* Heap scratch (bytes) each kernel allocates for one call with a pool of n_threads threads. */
size_t tl_attn_naive_scratch_bytes(const tl_attn_args *a, int n_threads);
size_t tl_attn_flash_scratch_bytes(const tl_attn_args *a, int n_threads);

/* tl_attn_flash with an explicit kernel tier (tests compare every tier; an unsupported tier
 * falls back to the best one the CPU has). */
void tl_attn_flash_isa(const tl_attn_args *a, tl_pool *pool, tl_isa isa);

#endif

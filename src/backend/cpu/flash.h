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

/* The tier-specific inner kernels of the flash driver (flash.c). Tiles are fp32 and contiguous:
 *   Q  [M][head_dim]         the tile's query rows (pre-scaled)
 *   KT [head_dim][ldk]       the key tile transposed; columns [nk, nkp) are zero
 *   V  [nkp][head_dim]       the value tile; rows [nk, nkp) are zero
 *   S  [M][lds]              scores, then probabilities
 *   acc[M][head_dim]         running output rows
 * nkp is nk rounded up to kpad; a tier is used only when head_dim % dpad == 0. */
typedef struct tl_flash_kern {
    const char *name;
    int kpad, dpad;
    /* S[M][0..nkp) = Q @ KT */
    void (*qk)(const float *Q, const float *KT, float *S, int M, int nkp, int hd, int ldk, int lds);
    /* acc[M][hd] += S[M][0..nkp) @ V */
    void (*pv)(float *acc, const float *S, const float *V, int M, int nkp, int hd, int lds);
    /* x[i] = exp(x[i] - m) for i < n (exp(-inf) = 0); returns the sum */
    float (*expsum)(float *x, int n, float m);
    /* dst[n] = src[n] (f32, f16 or bf16) as fp32 */
    void (*load)(float *dst, const void *src, int n, tl_dtype t);
} tl_flash_kern;
const tl_flash_kern *tl_flash_kern_scalar(void);
const tl_flash_kern *tl_flash_kern_avx2(void);
const tl_flash_kern *tl_flash_kern_avx512(void);

#endif

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

/* dst[n] (f16 or bf16) = src[n] fp32, rounded to nearest even (kv_write_avx2.c). */
void tl_kv_store_row_avx2(void *dst, const float *src, int n, tl_dtype t);

/* tl_attn_flash with an explicit kernel tier (tests compare every tier; an unsupported tier
 * falls back to the best one the CPU has). */
void tl_attn_flash_isa(const tl_attn_args *a, tl_pool *pool, tl_isa isa);

/* The tier-specific inner kernels of the flash driver (flash.c). Per key tile of nk keys:
 *   krow[c], vrow[c]  pointers to the tile's K and V rows [head_dim] fp32 (straight into an fp32
 *                     cache; into a converted copy for f16/bf16)
 *   QT [head_dim][ldq] the item's query rows transposed and pre-scaled; columns [M, Mp) are zero
 *   ST [nk][ldq]      scores of key c for row m at ST[c * ldq + m], then probabilities
 *   acc[M][head_dim]  running output rows
 * Mp = M rounded up to mpad; a tier is used only when head_dim % dpad == 0. */
typedef struct tl_flash_kern {
    const char *name;
    int mpad, dpad;
    /* ST[c][m] = krow[c] . QT[:, m] for c < nk, m < Mp */
    void (*qk)(const float *const *krow, int nk, const float *QT, int Mp, int hd, float *ST, int ldq);
    /* Online softmax over the tile for every row m < Mp (masked scores are -inf): with
     * mx = max(mrow[m], max_c ST[c][m]): ST[c][m] = exp(ST[c][m] - mx), corr[m] = exp(mrow[m] - mx),
     * lrow[m] = lrow[m] * corr[m] + sum_c ST[c][m], mrow[m] = mx. A row still without any visible
     * key keeps mrow = -inf, lrow = 0 and gets zeros. */
    void (*softmax)(float *ST, int nk, int Mp, int ldq, float *mrow, float *lrow, float *corr);
    /* acc[m][:] += sum_c ST[c][m] * vrow[c][:] for m < M */
    void (*pv)(float *acc, int M, const float *ST, int ldq, const float *const *vrow, int nk, int hd);
    /* dst[n] = src[n] (f16 or bf16) as fp32 */
    void (*load)(float *dst, const void *src, int n, tl_dtype t);
} tl_flash_kern;
const tl_flash_kern *tl_flash_kern_scalar(void);
const tl_flash_kern *tl_flash_kern_avx2(void);
const tl_flash_kern *tl_flash_kern_avx512(void);

#endif

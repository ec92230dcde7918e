/* ggml_types.h: GGUF tensor types (ggml's block formats): sizes, and a scalar dequantizer per type.
 *
 * A quantized row of n elements is n / block_elems blocks of block_bytes bytes each. Layouts
 * (little-endian; d, m, dmin are fp16; QK_K = 256):
 *   Q4_0  [32 | 18 B]  d, qs[16]            x[j] = (lo(qs[j]) - 8) * d, x[j+16] = (hi(qs[j]) - 8) * d
 *   Q4_1  [32 | 20 B]  d, m, qs[16]         x[j] = lo(qs[j]) * d + m,   x[j+16] = hi(qs[j]) * d + m
 *   Q5_0  [32 | 22 B]  d, qh[4], qs[16]     5th bit j of the uint32 qh; x = (q - 16) * d
 *   Q5_1  [32 | 24 B]  d, m, qh[4], qs[16]  x = q * d + m
 *   Q8_0  [32 | 34 B]  d, int8 qs[32]       x = qs * d
 *   Q4_K  [256 | 144 B] d, dmin, scales[12], qs[128]: 8 sub-blocks of 32 with 6-bit scale sc and
 *         min mn packed in scales[12]; x = d*sc*q - dmin*mn; each 64-run of output takes 32 bytes of
 *         qs, low nibbles first (sub-block 2i) then high nibbles (sub-block 2i+1)
 *   Q5_K  [256 | 176 B] d, dmin, scales[12], qh[32], qs[128]: as Q4_K with a 5th bit: bit 2i of qh[l]
 *         for sub-block 2i, bit 2i+1 for sub-block 2i+1
 *   Q6_K  [256 | 210 B] ql[128], qh[64], int8 scales[16], d: 16 sub-blocks of 16,
 *         x = d * scales[s] * (q - 32), q = 4 low bits from ql, 2 high bits from qh
 * tl_ggml_dequant_ref is the specification the tests check against hand-computed blocks. */
#ifndef TL_GGML_TYPES_H
#define TL_GGML_TYPES_H

#include "core/core.h"
#include "model/model.h"

typedef enum {
    TL_GGML_F32 = 0,
    TL_GGML_F16 = 1,
    TL_GGML_Q4_0 = 2,
    TL_GGML_Q4_1 = 3,
    TL_GGML_Q5_0 = 6,
    TL_GGML_Q5_1 = 7,
    TL_GGML_Q8_0 = 8,
    TL_GGML_Q8_1 = 9,
    TL_GGML_Q2_K = 10,
    TL_GGML_Q3_K = 11,
    TL_GGML_Q4_K = 12,
    TL_GGML_Q5_K = 13,
    TL_GGML_Q6_K = 14,
    TL_GGML_Q8_K = 15,
    TL_GGML_BF16 = 30,
    TL_GGML_TYPE_MAX = 40, /* ids at or above this are rejected */
} tl_ggml_type;

typedef struct tl_ggml_type_info {
    const char *name;  /* "q4_K", ...; NULL for an id we do not know */
    int block_elems;   /* elements per block (1 for plain types) */
    int block_bytes;   /* bytes per block */
    bool dequant;      /* tl_ggml_dequant_ref handles it */
} tl_ggml_type_info;

/* Info for a type id; name == NULL when the id is unknown. */
tl_ggml_type_info tl_ggml_type_get(uint32_t type);

/* Bytes of n elements of the type; -1 if n is not a multiple of the block or on overflow. */
int64_t tl_ggml_nbytes(uint32_t type, int64_t n);

/* Dequantizes n elements (a multiple of the block) from src into dst. Returns -1 for a type it
 * does not handle (dst untouched). Scalar, obviously right; used for conversion at load. */
int tl_ggml_dequant_ref(uint32_t type, const void *src, float *dst, int64_t n);

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the packed scales[12]. */
void tl_ggml_k_scale_min(const uint8_t *scales, int j, int *sc, int *mn);

/* Conversion of a quantized ggml matrix [rows, cols] (row-major, cols a multiple of the block)
 * into tinyllm's layouts (model.h), group 32 (16 for Q6_K), in one owned tl_aligned_alloc block (out->owned):
 *   Q8_0            -> TL_Q8: same int8 codes, fp32 scale = d                       (exact)
 *   Q4_0, Q4_1      -> TL_Q4: same 4-bit codes, f16 scale d, bias -8d or m          (exact)
 *   Q4_K            -> TL_Q4: same codes, f16 scale d*sc, bias -dmin*mn per 32      (f16 rounding)
 *   Q5_0            -> TL_Q8: codes q - 16, fp32 scale d                            (exact)
 *   Q6_K            -> TL_Q8 with group 16: codes q - 32, fp32 scale d * sc         (exact)
 *   Q5_1, Q5_K      -> TL_Q8: requantized from the exact values, scale max|w|/127 per 32
 * err (may be NULL): filled with the error of the result against tl_ggml_dequant_ref's values. */
typedef struct tl_ggml_conv_err {
    double max_abs;   /* max |converted - exact| */
    double max_ref;   /* max |exact| */
    double rel_rms;   /* sqrt(sum (converted - exact)^2 / sum exact^2) */
} tl_ggml_conv_err;
bool tl_ggml_convertible(uint32_t type);
struct tl_pool;
/* pool: rows are split over its threads (NULL: the caller's thread); the result is the same. */
int tl_ggml_convert(uint32_t type, const void *src, int64_t rows, int64_t cols, tl_tensor *out, tl_ggml_conv_err *err,
                    struct tl_pool *pool, tl_error *e);

#endif

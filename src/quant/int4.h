/* int4.h: the quant module: affine group-wise INT4 in MLX's layout, quantizing a loaded model,
 * building TL_Q4 tensors from checkpoint parts, and the safetensors writer `tinyllm quantize` uses.
 *
 * Format (DESIGN.md): for each output row, each group of G consecutive input weights has a scale
 * and a bias; w = q * scale + bias, q in 0..15; eight 4-bit codes per uint32, lowest bits first.
 * Tensors: codes uint32 [rows, cols/8]; scales, biases [rows, cols/G] in fp16 or bf16.
 * Our quantizer: scale = (max - min) / 15, bias = min, both rounded to fp16 (10 mantissa bits vs
 * bf16's 7: 8x finer scale/bias rounding; weights never come near fp16's 65504 range limit, and a
 * tensor that does falls back to bf16); codes are rounded against the *rounded* scale and bias,
 * so |w - deq| <= scale'/2 + 15*|scale - scale'| + |bias - bias'| (' = stored value). */
#ifndef TL_INT4_H
#define TL_INT4_H

#include "model/model.h"

/* Quantize src [rows, cols] (src_type F32, F16 or BF16, row-major) with group size `group`
 * (32, 64 or 128; cols % group == 0). Writes codes [rows, cols/8] and scales/biases
 * [rows, cols/group] as sb_type (TL_F16 or TL_BF16). Returns 0, or -1 on bad input (NaN/Inf
 * weights, bad shapes). */
int tl_q4_quantize(const void *src, tl_dtype src_type, int64_t rows, int64_t cols, int group, tl_dtype sb_type,
                   uint32_t *codes, uint16_t *scales, uint16_t *biases, tl_error *e);

/* Quantize a 2-D dense tensor into a new TL_Q4 tensor that owns one heap block (out->owned, free()
 * it) holding codes, scales and biases. Scales/biases fp16 unless |w| > 65504 somewhere (bf16). */
int tl_q4_quantize_tensor(const tl_tensor *src, int group, tl_tensor *out, tl_error *e);

/* Build a TL_Q4 tensor over a checkpoint's `<name>.weight` (uint32 [rows, packed_cols]),
 * `<name>.scales` and `<name>.biases` ([rows, n_groups], sb_type F16, BF16 or F32). Pointers are
 * used in place (e.g. into an mmap; out->owned = NULL). cols = packed_cols * 8, group =
 * cols / n_groups, which must be 32, 64 or 128. The HF loader calls this for MLX-style folders. */
int tl_q4_from_parts(tl_tensor *out, const void *codes, int64_t rows, int64_t packed_cols, const void *scales,
                     const void *biases, tl_dtype sb_type, int64_t n_groups, tl_error *e);

/* Quantizes every linear weight (q/k/v/o, gate/up/down), tok_embd and lm_head of m to INT4 in
 * place (a tied lm_head keeps sharing tok_embd's Q4 tensor). Tensors whose cols are not a
 * multiple of `group` stay as they are, with a warning. Frees the replaced tensors' owned blocks.
 * progress: a progress bar on stderr. group 0 means 64. */
int tl_model_quantize(tl_model *m, int group, bool progress, tl_error *e);

/* ---- safetensors writer ---- */
typedef struct tl_st_writer tl_st_writer;
tl_st_writer *tl_st_writer_new(void);
void tl_st_writer_free(tl_st_writer *w);
/* Adds a tensor (dtype "F32", "F16", "BF16", "U32", "I8"); data is referenced until write. */
int tl_st_add(tl_st_writer *w, const char *name, const char *dtype, const int64_t *shape, int ndim, const void *data,
              size_t nbytes, tl_error *e);
/* Writes all added tensors (sorted by name) to path. */
int tl_st_write(tl_st_writer *w, const char *path, tl_error *e);

/* Writes m as an HF-style folder: config.json (+ "quantization": {"group_size", "bits"} when m is
 * INT4), model.safetensors, and copies of tokenizer/generation files found in src_dir (may be
 * NULL). Written to a temporary folder next to out_dir and renamed at the end, so a failed run
 * never leaves something that looks like a model. Fails if out_dir exists. */
int tl_q4_save_hf(const tl_model *m, const char *src_dir, const char *out_dir, tl_error *e);

#endif

/* model.h: architecture parameters, weight tensors, the loaded model, and the flat mixed batch
 * that one forward pass runs (vLLM's "varlen" contract: many sequences, each a contiguous run of
 * new tokens at its own offset, prefill chunks and decodes together).
 *
 * Dimension vocabulary (STYLE.md): n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_tok, n_seq.
 * Matrices are row-major [out, in] as in HF nn.Linear: y[n_tok, out] = x[n_tok, in] @ W^T. */
#ifndef TL_MODEL_H
#define TL_MODEL_H

#include "core/core.h"

typedef enum { TL_ARCH_QWEN2 = 0, TL_ARCH_LLAMA = 1 } tl_arch;

/* RoPE pairing is a property of the loaded weights, never a guess:
 * NEOX pairs x[i] with x[i + head_dim/2] (HF Qwen2/Llama checkpoints, GGUF qwen2);
 * NORM pairs x[2i] with x[2i+1] (GGUF llama files, whose q/k rows are permuted for it). */
typedef enum { TL_ROPE_NEOX = 0, TL_ROPE_NORM = 1 } tl_rope_kind;

#define TL_MAX_EOS 8
typedef struct tl_config {
    tl_arch arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_ctx;             /* max_position_embeddings */
    float rms_eps, rope_theta;
    tl_rope_kind rope;
    bool qkv_bias;         /* Qwen2: true; Llama: false */
    bool tied_embd;        /* lm_head shares tok_embd */
    int bos_id;            /* -1 if none */
    int eos_ids[TL_MAX_EOS];
    int n_eos;
} tl_config;

typedef enum {
    TL_F32 = 0,
    TL_F16 = 1,
    TL_BF16 = 2,
    TL_Q4 = 3, /* affine group-wise int4, MLX layout (see quant/int4.h) */
    TL_Q8 = 4, /* symmetric int8 per group with an fp32 scale, used for converted GGUF types */
} tl_dtype;
const char *tl_dtype_name(tl_dtype t);

/* A 1-D or 2-D weight. 2-D: rows = out features, cols = in features; 1-D: rows = 1.
 * F32/F16/BF16: data is rows*cols elements, row-major, possibly pointing into an mmap.
 * Q4: data = uint32 codes [rows, cols/8] (8 codes per word, lowest bits first);
 *     scales, biases = [rows, cols/group] in sb_type (TL_F16 or TL_BF16); w = q*scale + bias.
 * Q8: data = int8 codes [rows, cols]; scales = fp32 [rows, cols/group]; w = q*scale (biases NULL).
 * `packed` is a backend's private repacked copy (NULL until prepared). */
typedef struct tl_tensor {
    tl_dtype type;
    int64_t rows, cols;
    void *data;
    int group;             /* Q4/Q8 group size */
    tl_dtype sb_type;      /* Q4: dtype of scales and biases */
    void *scales, *biases;
    void *packed;          /* backend-owned repacked layout, or NULL */
    void *owned;           /* heap block this tensor owns (freed with the model), or NULL if mapped */
} tl_tensor;

typedef struct tl_layer {
    tl_tensor attn_norm;           /* [n_embd] f32 */
    tl_tensor wq, wk, wv;          /* [n_head*head_dim, n_embd], [n_head_kv*head_dim, n_embd] x2 */
    tl_tensor bq, bk, bv;          /* [n_head*head_dim], [n_head_kv*head_dim] x2, f32; data NULL if none */
    tl_tensor wo;                  /* [n_embd, n_head*head_dim] */
    tl_tensor ffn_norm;            /* [n_embd] f32 */
    tl_tensor w_gate, w_up;        /* [n_ff, n_embd] */
    tl_tensor w_down;              /* [n_embd, n_ff] */
} tl_layer;

typedef struct tl_weights {
    tl_tensor tok_embd;            /* [n_vocab, n_embd] */
    tl_layer *layers;              /* [n_layer] */
    tl_tensor out_norm;            /* [n_embd] f32 */
    tl_tensor lm_head;             /* [n_vocab, n_embd]; a copy of tok_embd's fields when tied */
} tl_weights;

struct tl_tokenizer;
struct tl_backend;

/* Defaults a model folder suggests (generation_config.json); the CLI/server may override. */
typedef struct tl_gen_defaults {
    float temperature, top_p, repetition_penalty;
    int top_k;
} tl_gen_defaults;

typedef struct tl_mapping {
    void *addr;
    size_t len;
} tl_mapping;

typedef struct tl_model {
    tl_config cfg;
    tl_weights w;
    struct tl_tokenizer *tok;      /* NULL when the model came without tokenizer files */
    tl_gen_defaults gen;
    char *path;                    /* what the user passed */
    char name[128];                /* e.g. "qwen2-0.5b (dummy)" or the folder name */
    tl_mapping *maps;              /* [n_maps] mmapped weight files */
    int n_maps;
} tl_model;

/* Load options. quant: 0 keep file dtypes; 4 quantize linear layers + embeddings to int4 at load. */
typedef struct tl_load_opts {
    int quant_bits;                /* 0 or 4 */
    int group_size;                /* int4 group size (32, 64, 128); 0 = 64 */
    tl_dtype dummy_dtype;          /* dtype of dummy: weights (TL_BF16 default) */
    uint64_t dummy_seed;
    bool quiet;                    /* no progress bar */
    const char *tokenizer_path;    /* tokenizer.json or folder overriding the model's own (NULL: the model's) */
} tl_load_opts;

/* path: a HF folder, a .gguf file, or "dummy:qwen2-0.5b|1.5b|7b|72b" (also "dummy:tiny"). */
tl_model *tl_model_load(const char *path, const tl_load_opts *opts, tl_error *e);
void tl_model_free(tl_model *m);

/* Loaders (one per source); each fills cfg and w. tl_model_load dispatches to them. */
int tl_load_hf(tl_model *m, const char *dir, const tl_load_opts *o, tl_error *e);
int tl_load_gguf(tl_model *m, const char *file, const tl_load_opts *o, tl_error *e);
int tl_load_dummy(tl_model *m, const char *spec, const tl_load_opts *o, tl_error *e);
/* Checks every tensor's shape against cfg; names the tensor on mismatch. */
int tl_model_check_shapes(const tl_model *m, tl_error *e);
/* Bytes of one tensor's data (+ scales/biases). */
size_t tl_tensor_bytes(const tl_tensor *t);
/* Bytes of all weights (counting lm_head once when tied). */
size_t tl_model_weight_bytes(const tl_model *m);

/* ---- the flat mixed batch ---- */
typedef struct tl_batch_seq {
    int tok_start;                 /* index of this sequence's first new token in the flat batch */
    int n_new;                     /* L: new tokens this step (1 for a decode) */
    int n_past;                    /* P: tokens already in the KV cache; new positions are P..P+L-1 */
    const int32_t *block_table;    /* [ceil((P+L)/block_size)] KV block indices */
} tl_batch_seq;

typedef struct tl_batch {
    int n_tok;
    const int32_t *tokens;         /* [n_tok] */
    const int32_t *pos;            /* [n_tok] absolute positions */
    int n_seq;
    const tl_batch_seq *seqs;      /* [n_seq]; seqs[s] covers tokens[tok_start .. tok_start+n_new) */
    int n_logits;
    const int32_t *logit_rows;     /* [n_logits] ascending indices into tokens that need logits */
} tl_batch;

#endif

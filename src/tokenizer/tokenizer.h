/* tokenizer.h: text <-> token ids. Byte-level BPE from HF tokenizer.json (Qwen2), and a
 * SentencePiece-style vocab from GGUF (llama). Chat templates and streaming detokenization. */
#ifndef TL_TOKENIZER_H
#define TL_TOKENIZER_H

#include "core/core.h"

typedef struct tl_tokenizer tl_tokenizer;

/* path: a tokenizer.json file, or a model folder holding tokenizer.json (+ tokenizer_config.json,
 * generation_config.json when present). */
tl_tokenizer *tl_tokenizer_load(const char *path, tl_error *e);
void tl_tokenizer_free(tl_tokenizer *t);

/* Build from arrays, as a GGUF file carries them (formats/gguf.c fills this and calls it).
 * model "gpt2": byte-level BPE (tokens are byte-level strings, merges "a b", pre-tokenizer by `pre`);
 * model "llama": SentencePiece style (tokens with scores, U+2581 for spaces, <0xNN> byte-fallback tokens). */
typedef struct tl_vocab_spec {
    const char *model;              /* tokenizer.ggml.model */
    const char *pre;                /* tokenizer.ggml.pre (e.g. "qwen2"), or NULL */
    int n_tokens;
    const char *const *tokens;      /* [n_tokens] NUL-terminated UTF-8 */
    const float *scores;            /* [n_tokens] or NULL */
    const int32_t *token_types;     /* [n_tokens] GGUF types (1 normal 2 unknown 3 control 4 user 5 unused 6 byte) or NULL */
    int n_merges;
    const char *const *merges;      /* [n_merges] "a b", or NULL */
    int bos, eos, unk, pad;         /* -1 when absent */
    bool add_bos, add_eos;
    const char *chat_template;      /* tokenizer.chat_template or NULL */
    bool no_space_prefix;           /* llama: tokenizer.ggml.add_space_prefix == false (default: add) */
} tl_vocab_spec;
tl_tokenizer *tl_tokenizer_from_vocab(const tl_vocab_spec *s, tl_error *e);
/* Reads a GGUF file's tokenizer.* keys (formats/gguf.h) and calls tl_tokenizer_from_vocab, with
 * llama.cpp's defaults (llama: add_bos and add_space_prefix unless the file says otherwise). */
struct tl_gguf;
tl_tokenizer *tl_tokenizer_from_gguf(const struct tl_gguf *g, tl_error *e);

int tl_tokenizer_n_vocab(const tl_tokenizer *t); /* highest id + 1 */
/* Encodes text[0..len). parse_special: added/special tokens in the text become their ids (HF default).
 * Returns the number of ids and sets *ids (free()), or -1 with e filled. */
int tl_tokenizer_encode(const tl_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
                        tl_error *e);
/* Encodes a prompt as a model expects it: parse_special, and bos first when tl_tokenizer_add_bos()
 * (tl_tokenizer_encode never adds bos). Same return as tl_tokenizer_encode. */
int tl_tokenizer_encode_prompt(const tl_tokenizer *t, const char *text, size_t len, int32_t **ids, tl_error *e);
/* Raw bytes of one token (after byte-level decoding); NULL for an unknown id. */
const char *tl_tokenizer_piece(const tl_tokenizer *t, int32_t id, size_t *len);
bool tl_tokenizer_is_special(const tl_tokenizer *t, int32_t id);
/* Decodes ids to a malloc'd NUL-terminated string. Invalid UTF-8 becomes U+FFFD. */
char *tl_tokenizer_decode(const tl_tokenizer *t, const int32_t *ids, int n, bool skip_special);
/* The same, with the length in *len (the text may hold U+0000). */
char *tl_tokenizer_decode_n(const tl_tokenizer *t, const int32_t *ids, int n, bool skip_special, size_t *len);

/* Streaming: push one id, get back the bytes that are now complete UTF-8 (never a partial sequence).
 * Invalid bytes come out as U+FFFD as soon as they are known to be invalid. Concatenated outputs of
 * push..flush equal tl_tokenizer_decode of the same ids, except that decode of a llama (SentencePiece)
 * vocab drops the leading space of the first token, which a stream of continuation tokens must keep;
 * both drop it after a pushed bos (push bos first when generating from bos). */
typedef struct tl_detok tl_detok;
tl_detok *tl_detok_new(const tl_tokenizer *t, bool skip_special);
/* Returns a pointer to the new text (valid until the next call) and its length in *len. */
const char *tl_detok_push(tl_detok *d, int32_t id, size_t *len);
const char *tl_detok_flush(tl_detok *d, size_t *len); /* at end: leftovers as U+FFFD */
void tl_detok_free(tl_detok *d);

/* Special ids: -1 when absent. eos: the ids that end generation (from generation_config.json /
 * tokenizer_config.json, e.g. <|im_end|> and <|endoftext|> for Qwen2-Instruct). */
int tl_tokenizer_bos(const tl_tokenizer *t);
int tl_tokenizer_eos(const tl_tokenizer *t, int32_t *ids, int max); /* returns count */
bool tl_tokenizer_add_bos(const tl_tokenizer *t); /* prepend bos when encoding a prompt (llama GGUF) */

/* Chat template (ChatML family). */
typedef struct tl_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} tl_chat_msg;
/* Renders messages with the model's template; the model's default system prompt is added when
 * none is given. Returns a malloc'd string. */
char *tl_chat_render(const tl_tokenizer *t, const tl_chat_msg *msgs, int n, bool add_generation_prompt);

#endif

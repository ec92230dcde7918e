/* tinyllm.h: the public C API of libtinyllm.
 *
 *   tinyllm_params p; tinyllm_params_default(&p); p.model = "Qwen2-0.5B-Instruct";
 *   char err[512]; tinyllm *t = tinyllm_load(&p, err, sizeof err);
 *   int32_t *ids; int n = tinyllm_tokenize(t, "Hello", 1, &ids);     // 1: apply the chat template
 *   tinyllm_sampling s; tinyllm_sampling_default(&s); s.max_tokens = 64;
 *   tinyllm_generate(t, ids, n, &s, on_token, user, NULL);            // on_token gets UTF-8 text pieces
 *   free(ids); tinyllm_free(t);
 *
 * Link with `pkg-config --libs tinyllm`. Serving many requests at once is the engine's job
 * (`tinyllm serve`); this API runs one sequence at a time and keeps its KV cache between calls,
 * so a multi-turn chat does not recompute the conversation so far. */
#ifndef TINYLLM_H
#define TINYLLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tinyllm tinyllm;

typedef struct tinyllm_params {
    const char *model;      /* HF folder, .gguf file, or "dummy:qwen2-0.5b" */
    const char *tokenizer;  /* optional tokenizer.json / folder overriding the model's */
    const char *backend;    /* "cpu", "cuda" or "auto" (default) */
    int n_threads;          /* CPU threads (0: all cores) */
    int quant_bits;         /* 0: as stored; 4: quantize to int4 at load */
    int group_size;         /* int4 group size (0: 64) */
    int n_ctx;              /* context to reserve KV for (0: 4096, capped by the model) */
    float gpu_mem_util;     /* CUDA: fraction of free memory to use (0: 0.9) */
} tinyllm_params;
void tinyllm_params_default(tinyllm_params *p);

/* NULL on failure with a one-line message in err. */
tinyllm *tinyllm_load(const tinyllm_params *p, char *err, size_t errlen);
void tinyllm_free(tinyllm *t);
const char *tinyllm_model_name(const tinyllm *t);
int tinyllm_has_tokenizer(const tinyllm *t);
int tinyllm_n_vocab(const tinyllm *t);
/* Tokens of context reserved (n_ctx, capped by the model): prompt + generated tokens fit in it. */
int tinyllm_n_ctx(const tinyllm *t);

/* Text -> ids (malloc'd, caller frees). chat: wrap text as one user message with the model's chat
 * template (default system prompt included). Returns the count or -1. */
int tinyllm_tokenize(tinyllm *t, const char *text, int chat, int32_t **ids);
/* A conversation -> prompt text with the chat template and the assistant prefix (malloc'd). */
char *tinyllm_chat_prompt(tinyllm *t, const char *const *roles, const char *const *contents, int n);

typedef struct tinyllm_sampling {
    float temperature;       /* 0: greedy */
    int top_k;               /* 0: off */
    float top_p, min_p;      /* 1 / 0: off */
    float repetition_penalty, presence_penalty, frequency_penalty;
    uint64_t seed;
    int max_tokens;          /* default 256 (<= 0: 256); capped by the context reserved (n_ctx) */
    int ignore_eos;
} tinyllm_sampling;
void tinyllm_sampling_default(tinyllm_sampling *s);

/* Called per generated token with its complete UTF-8 text (len may be 0 while a multi-byte
 * character is still incomplete; a final call with token -1 may flush leftovers). Return
 * non-zero to stop. */
typedef int (*tinyllm_token_fn)(int32_t token, const char *text, size_t len, void *user);

typedef struct tinyllm_stats {
    int n_prompt;            /* prompt tokens */
    int n_reused;            /* of which served from the KV cache of earlier calls (the prefix cache: whole
                              * blocks of 16 tokens, the last prompt token always computed) */
    int n_generated;
    double prefill_s, decode_s; /* to the first generated token, then to the end */
} tinyllm_stats;

/* Generates from prompt ids; returns the number of tokens generated or -1 (message via
 * tinyllm_last_error). */
int tinyllm_generate(tinyllm *t, const int32_t *prompt, int n_prompt, const tinyllm_sampling *s, tinyllm_token_fn fn,
                     void *user, tinyllm_stats *stats);
const char *tinyllm_last_error(const tinyllm *t);

#ifdef __cplusplus
}
#endif
#endif

/* sampler.h: next-token selection for one sequence (the engine's internal interface; tests use it).
 *
 * Order (as HF transformers / vLLM): repetition penalty (HF: over prompt + generated, logit > 0 divided,
 * else multiplied) -> presence / frequency penalties (OpenAI: over generated tokens,
 * logit -= count * frequency + (count > 0) * presence) -> greedy argmax when temperature == 0, else
 * logits / temperature -> softmax -> top-k -> top-p (smallest set of most likely tokens whose mass
 * reaches top_p) -> min-p (keep p >= min_p * p_max) -> one draw from the per-request RNG.
 * Log-probabilities are those of the unmodified model distribution (log_softmax of the raw logits; a backend that
 * applies the penalties itself reports those of its rows without top-n logprobs under the penalized logits:
 * engine.h tl_token_event). */
#ifndef TL_SAMPLER_H
#define TL_SAMPLER_H

#include "engine/engine.h"

typedef struct tl_cand {
    float p;
    int32_t id;
} tl_cand;

/* Scratch memory sized once for a vocabulary (the engine owns one; sampling is sequential). */
typedef struct tl_sampler {
    int n_vocab;
    float *work;     /* [n_vocab] modified logits */
    float *probs;    /* [n_vocab] */
    tl_cand *cand;   /* [n_vocab] candidates (probability, id) */
    int32_t *count;  /* [n_vocab] occurrences in the generated tokens (kept all-zero between calls) */
    uint32_t *mark;  /* [n_vocab] stamp of the last call that saw the token in the history */
    uint32_t stamp;
} tl_sampler;

void tl_sampler_init(tl_sampler *sp, int n_vocab);
void tl_sampler_free(tl_sampler *sp);

/* The per-request RNG (splitmix64): state starts at the seed; same seed, same draws. */
uint64_t tl_rng_next(uint64_t *state);
double tl_rng_uniform(uint64_t *state); /* [0, 1) with 53 bits */

/* Picks the next token from logits[n_vocab] (not modified). hist: the sequence so far, prompt first
 * (hist[0..n_prompt) prompt, hist[n_prompt..n_hist) generated). rng: advanced by one draw when
 * temperature > 0. ev (may be NULL): gets logprob, and n_top/top_ids/top_logprobs when
 * s->n_logprobs > 0. Returns the token id. */
int32_t tl_sampler_sample(tl_sampler *sp, const tl_sampling *s, const float *logits, const int32_t *hist, int n_hist,
                          int n_prompt, uint64_t *rng, tl_token_event *ev);

/* The penalties' view of a history for a backend that applies them (backend.h tl_row_sampling.pen): the distinct
 * tokens of hist[0..n_hist) in order of first occurrence, out[2j] the token and out[2j + 1] its count among the
 * generated ones (hist[n_prompt..)); with the repetition penalty off only the generated tokens. out: room for
 * 2 * n_hist int32. Returns the number of entries. Ids outside [0, n_vocab) are left out (as the sampler does).
 * tl_sampler_sample keeps its own walk over the history (apply_penalties): the reference the lists are tested against. */
int tl_sampler_pen_list(tl_sampler *sp, const tl_sampling *s, const int32_t *hist, int n_hist, int n_prompt,
                        int32_t *out);

#endif

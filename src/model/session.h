/* session.h: one sequence evaluated without the batching engine: its own KV blocks, a running
 * position, logits for every evaluated token or only the last. Used by `score`, simple greedy
 * generation, and tests that compare whole models against reference logits. */
#ifndef TL_SESSION_H
#define TL_SESSION_H

#include "backend/backend.h"

typedef struct tl_session tl_session;
/* max_ctx: tokens this session may hold (KV blocks allocated up front). */
tl_session *tl_session_new(tl_model *m, tl_backend *be, int max_ctx, tl_error *e);
void tl_session_free(tl_session *s);
/* Appends ids[0..n) to the sequence (chunked internally). all_logits: keep logits of every one
 * of the n tokens, else only the last. Returns 0 or -1 (context full, ...). */
int tl_session_eval(tl_session *s, const int32_t *ids, int n, bool all_logits, tl_error *e);
/* Logits [n_vocab] of the i-th token of the last eval (i = -1: the last one). */
const float *tl_session_logits(const tl_session *s, int i);
int tl_session_pos(const tl_session *s); /* tokens held */
void tl_session_reset(tl_session *s);
/* Greedy: evaluates prompt, then generates up to n_gen tokens into out (stops at an EOS id unless
 * ignore_eos). Returns the number generated or -1. */
int tl_session_greedy(tl_session *s, const int32_t *prompt, int n_prompt, int n_gen, bool ignore_eos, int32_t *out,
                      tl_error *e);

#endif

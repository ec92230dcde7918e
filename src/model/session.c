/* session.c: one sequence, its own contiguous run of KV blocks, evaluated in chunks. */
#include "model/session.h"

#define SESSION_BLOCK 16
#define SESSION_CHUNK 256 /* tokens per forward: bounds the activation arena */

struct tl_session {
    tl_model *m;
    tl_backend *be;
    tl_kv kv;
    int max_ctx, n_past;
    int32_t *blocks;      /* [max_ctx / SESSION_BLOCK] = 0, 1, 2, ... */
    float *logits;        /* [cap_logits, n_vocab] */
    int cap_logits, n_logits;
    int32_t *pos, *rows;  /* scratch [SESSION_CHUNK] */
};

tl_session *tl_session_new(tl_model *m, tl_backend *be, int max_ctx, tl_error *e) {
    if (max_ctx <= 0 || max_ctx > m->cfg.n_ctx) max_ctx = m->cfg.n_ctx;
    tl_session *s = tl_calloc(1, sizeof *s);
    s->m = m;
    s->be = be;
    s->max_ctx = max_ctx;
    int nb = TL_CDIV(max_ctx, SESSION_BLOCK);
    if (be->kv_alloc(be, &s->kv, &m->cfg, SESSION_BLOCK, nb, TL_F32, e)) {
        free(s);
        return NULL;
    }
    s->blocks = tl_malloc((size_t)nb * sizeof(int32_t));
    for (int i = 0; i < nb; i++) s->blocks[i] = i;
    s->pos = tl_malloc(SESSION_CHUNK * sizeof(int32_t));
    s->rows = tl_malloc(SESSION_CHUNK * sizeof(int32_t));
    return s;
}

void tl_session_free(tl_session *s) {
    if (!s) return;
    s->be->kv_free(s->be, &s->kv);
    free(s->blocks);
    free(s->logits);
    free(s->pos);
    free(s->rows);
    free(s);
}

int tl_session_eval(tl_session *s, const int32_t *ids, int n, bool all_logits, tl_error *e) {
    if (n <= 0) return tl_errf(e, "nothing to evaluate");
    if (s->n_past + n > s->max_ctx)
        return tl_errf(e, "context full: %d tokens held + %d new > limit %d", s->n_past, n, s->max_ctx);
    const int V = s->m->cfg.n_vocab;
    int want = all_logits ? n : 1;
    if (want > s->cap_logits) {
        free(s->logits);
        s->logits = tl_malloc((size_t)want * V * sizeof(float));
        s->cap_logits = want;
    }
    s->n_logits = want;
    for (int off = 0; off < n; off += SESSION_CHUNK) {
        int L = TL_MIN(SESSION_CHUNK, n - off);
        for (int i = 0; i < L; i++) s->pos[i] = s->n_past + i;
        int nl = 0;
        if (all_logits)
            for (int i = 0; i < L; i++) s->rows[nl++] = i;
        else if (off + L == n)
            s->rows[nl++] = L - 1;
        tl_batch_seq seq = {.tok_start = 0, .n_new = L, .n_past = s->n_past, .block_table = s->blocks};
        tl_batch b = {.n_tok = L, .tokens = ids + off, .pos = s->pos, .n_seq = 1, .seqs = &seq,
                      .n_logits = nl, .logit_rows = s->rows};
        float *out = s->logits + (all_logits ? (size_t)off * V : 0);
        if (s->be->forward(s->be, s->m, &s->kv, &b, out, e)) return -1;
        s->n_past += L;
    }
    return 0;
}

const float *tl_session_logits(const tl_session *s, int i) {
    if (i < 0) i = s->n_logits - 1;
    TL_ASSERT(i >= 0 && i < s->n_logits);
    return s->logits + (size_t)i * s->m->cfg.n_vocab;
}

int tl_session_pos(const tl_session *s) { return s->n_past; }
void tl_session_reset(tl_session *s) { s->n_past = 0; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int tl_session_greedy(tl_session *s, const int32_t *prompt, int n_prompt, int n_gen, bool ignore_eos, int32_t *out,
                      tl_error *e) {
    if (tl_session_eval(s, prompt, n_prompt, false, e)) return -1;
    const tl_config *c = &s->m->cfg;
    int n = 0;
    while (n < n_gen) {
        int32_t t = argmax(tl_session_logits(s, -1), c->n_vocab);
        out[n++] = t;
        bool eos = false;
        for (int i = 0; i < c->n_eos; i++) eos |= c->eos_ids[i] == t;
        if ((eos && !ignore_eos) || n == n_gen) break;
        if (s->n_past >= s->max_ctx) break;
        if (tl_session_eval(s, &t, 1, false, e)) return -1;
    }
    return n;
}

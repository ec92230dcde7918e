/* cmd_score.c: `tinyllm score`: teacher-forced scoring. For each position i prints
 * {"pos": i, "top": [[id, logprob], ...]}: the top-K next-token log-probabilities after
 * tokens[0..i]; then {"perplexity": P, "n": N} over tokens[1..]. For comparing engines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

#define SCORE_CHUNK 64

int cmd_score(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    const char *tokens = NULL, *text = NULL;
    int top = 5;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        static const char *const valued[] = {"--tokens", "-p", "--text", "--top", NULL};
        if (cli_missing_value(argc, argv, i, valued)) return 2;
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--text")) && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--top") && i + 1 < argc) top = atoi(argv[++i]);
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            if (!help) fprintf(stderr, "tinyllm score: unknown option '%s'\n", argv[i]);
            fprintf(stderr, "usage: tinyllm score -m MODEL (--tokens 1,2,3 | -p TEXT) [--top K]\n\n%s", cli_model_help);
            return help ? 0 : 2;
        }
    }
    if (!mo.model) {
        cli_no_model_hint("score");
        return 2;
    }
    if ((!tokens && !text) || top < 1 || top > 100) {
        fprintf(stderr, "tinyllm score: give --tokens IDS or -p TEXT, and --top in 1..100\n");
        return 2;
    }
    tl_backend *be;
    tl_model *m = cli_load("score", &mo, &be, NULL);
    if (!m) return 1;
    int32_t *ids = NULL;
    int n;
    tl_error e = {{0}};
    if (tokens) {
        n = cli_parse_ids(tokens, &ids);
    } else if (!m->tok) {
        fprintf(stderr, "tinyllm score: this model has no tokenizer; use --tokens\n");
        n = -1;
    } else {
        n = tl_tokenizer_encode(m->tok, text, strlen(text), true, &ids, &e);
    }
    int rc = 1;
    const int V = m->cfg.n_vocab;
    if (n < 1) {
        fprintf(stderr, "tinyllm score: no tokens (%s)\n", e.msg[0] ? e.msg : "bad --tokens");
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            fprintf(stderr, "tinyllm score: token id %d out of range [0, %d)\n", ids[i], V);
            goto out;
        }
    if (n > m->cfg.n_ctx) {
        fprintf(stderr, "tinyllm score: %d tokens exceed the model's context of %d\n", n, m->cfg.n_ctx);
        goto out;
    }
    tl_session *s = tl_session_new(m, be, n, &e);
    if (!s) {
        fprintf(stderr, "tinyllm: %s\n", e.msg);
        goto out;
    }
    double nll = 0;
    int *best = tl_malloc((size_t)top * sizeof(int));
    for (int off = 0; off < n; off += SCORE_CHUNK) {
        int L = TL_MIN(SCORE_CHUNK, n - off);
        if (tl_session_eval(s, ids + off, L, true, &e)) {
            fprintf(stderr, "tinyllm: %s\n", e.msg);
            tl_session_free(s);
            free(best);
            goto out;
        }
        for (int j = 0; j < L; j++) {
            const float *lg = tl_session_logits(s, j);
            double mx = lg[0], sum = 0;
            for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
            double lse = mx + log(sum);
            int k = 0; /* top-K by insertion (K small) */
            for (int v = 0; v < V; v++) {
                if (k < top || lg[v] > lg[best[k - 1]]) {
                    int p = k < top ? k++ : k - 1;
                    while (p > 0 && lg[best[p - 1]] < lg[v]) {
                        best[p] = best[p - 1];
                        p--;
                    }
                    best[p] = v;
                }
            }
            printf("{\"pos\": %d, \"top\": [", off + j);
            for (int q = 0; q < k; q++) printf("%s[%d, %.6f]", q ? ", " : "", best[q], lg[best[q]] - lse);
            printf("]}\n");
            if (off + j + 1 < n) nll -= lg[ids[off + j + 1]] - lse;
        }
    }
    printf("{\"perplexity\": %.6f, \"n\": %d}\n", n > 1 ? exp(nll / (n - 1)) : 1.0, n - 1);
    free(best);
    tl_session_free(s);
    rc = 0;
out:
    free(ids);
    be->free(be);
    tl_model_free(m);
    return rc;
}

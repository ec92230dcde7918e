/* simple.c: the smallest program on libtinyllm's public API: greedy-generate token ids.
 * Build: cc simple.c $(pkg-config --cflags --libs tinyllm) -o simple
 * Run:   ./simple MODEL_DIR_OR_GGUF */
#include <stdio.h>
#include <stdlib.h>
#include <tinyllm.h>

static int on_token(int32_t token, const char *text, size_t len, void *user) {
    (void)text;
    (void)len;
    if (token >= 0) printf("%d ", token);
    ++*(int *)user;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    tinyllm_params p;
    tinyllm_params_default(&p);
    p.model = argv[1];
    p.backend = "cpu";
    char err[512];
    tinyllm *t = tinyllm_load(&p, err, sizeof err);
    if (!t) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int32_t prompt[3] = {5, 6, 7};
    tinyllm_sampling s;
    tinyllm_sampling_default(&s);
    s.max_tokens = 8;
    int n = 0;
    int rc = tinyllm_generate(t, prompt, 3, &s, on_token, &n, NULL);
    printf("\n%d tokens\n", n);
    tinyllm_free(t);
    return rc < 0;
}

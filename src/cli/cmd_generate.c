/* cmd_generate.c: `tinyllm generate`: one completion streamed to stdout, timings to stderr.
 * Uses the public API (include/tinyllm.h): the CLI is the library's first user. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "tinyllm.h"

static int on_token(int32_t token, const char *text, size_t len, void *user) {
    int ids_only = *(int *)user;
    if (ids_only) {
        if (token >= 0) printf("%d ", token);
    } else {
        fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: tinyllm generate -m MODEL [-p TEXT | --tokens IDS] [options]\n\n%s%s"
            "  -p, --prompt TEXT       prompt (the chat template is applied unless --raw)\n"
            "  --system TEXT           system message (chat template only)\n"
            "  --raw                   feed TEXT as is, no chat template\n"
            "  --tokens IDS            prompt as token ids, e.g. 1,2,3\n"
            "  -n, --max-tokens N      tokens to generate (default 128)\n"
            "  --ignore-eos            keep going past end-of-sequence\n"
            "  --ctx N                 context to reserve (default 4096)\n",
            cli_model_help, cli_sampling_help);
}

int cmd_generate(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    tl_sampling sp;
    tl_sampling_default(&sp);
    sp.seed = cli_random_seed(); /* without --seed each run samples differently, as llama.cpp and the server */
    const uint64_t drawn_seed = sp.seed;
    const char *prompt = NULL, *system = NULL, *tokens = NULL;
    int raw = 0, max_tokens = 128, ignore_eos = 0, n_ctx = 4096;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (!r) r = cli_parse_sampling_opt(&sp, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i];
        static const char *const valued[] = {"-p",         "--prompt", "--system", "--tokens", "-n",
                                             "--max-tokens", "--ctx",    NULL};
        if (cli_missing_value(argc, argv, i, valued)) return 2;
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) prompt = argv[++i];
        else if (!strcmp(a, "--system") && i + 1 < argc) system = argv[++i];
        else if (!strcmp(a, "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--ctx") && i + 1 < argc) n_ctx = atoi(argv[++i]);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "tinyllm generate: unknown option '%s'\n", a);
            usage();
            return 2;
        }
    }
    if (!mo.model) {
        cli_no_model_hint("generate");
        return 2;
    }
    if (max_tokens <= 0 || n_ctx <= 0) {
        fprintf(stderr, "tinyllm generate: -n and --ctx must be positive\n");
        return 2;
    }
    tinyllm_params p;
    cli_to_params(&mo, &p);
    p.n_ctx = n_ctx;
    char err[512];
    double t0 = tl_now();
    tinyllm *t = tinyllm_load(&p, err, sizeof err);
    if (!t) {
        fprintf(stderr, "tinyllm: %s\n", err);
        cli_model_not_found_hint("generate", mo.model);
        return 1;
    }
    fprintf(stderr, "loaded %s in %.2f s\n", tinyllm_model_name(t), tl_now() - t0);
    int32_t *ids = NULL;
    int n = 0, ids_only = !tinyllm_has_tokenizer(t);
    if (tokens) {
        n = cli_parse_ids(tokens, &ids);
        if (n <= 0) {
            fprintf(stderr, "tinyllm generate: bad --tokens '%s'\n", tokens);
            tinyllm_free(t);
            return 2;
        }
    } else if (ids_only) {
        /* dummy models and bare checkpoints: no tokenizer; a fixed prompt of ids, ids printed */
        fprintf(stderr, "%s has no tokenizer: generating from a fixed 16-token prompt and printing token ids "
                        "(use --tokens IDS or --tokenizer PATH)\n", tinyllm_model_name(t));
        n = 16;
        ids = malloc(n * sizeof(int32_t));
        for (int i = 0; i < n; i++) ids[i] = (100 + 37 * i) % tinyllm_n_vocab(t);
    } else {
        if (!prompt) prompt = "Hello";
        if (raw) {
            n = tinyllm_tokenize(t, prompt, 0, &ids);
        } else {
            const char *roles[2] = {"system", "user"}, *contents[2] = {system, prompt};
            int off = system ? 0 : 1;
            char *text = tinyllm_chat_prompt(t, roles + off, contents + off, 2 - off);
            n = text ? tinyllm_tokenize(t, text, 0, &ids) : -1;
            free(text);
        }
        if (n < 0) {
            fprintf(stderr, "tinyllm: %s\n", tinyllm_last_error(t));
            tinyllm_free(t);
            return 1;
        }
    }
    cli_note_random_seed(&sp, drawn_seed, "run");
    tinyllm_sampling s;
    cli_to_sampling(&sp, &s);
    s.max_tokens = max_tokens;
    s.ignore_eos = ignore_eos;
    tinyllm_stats st;
    int g = tinyllm_generate(t, ids, n, &s, on_token, &ids_only, &st);
    printf("\n");
    free(ids);
    if (g < 0) {
        fprintf(stderr, "tinyllm: %s\n", tinyllm_last_error(t));
        tinyllm_free(t);
        return 1;
    }
    /* The library caps -n at the context reserved and ends such a run as one that reached -n; a run that
     * stopped at EOS instead spent that slot on the EOS, which is not counted, so it never fills the context. */
    const int n_ctx_used = tinyllm_n_ctx(t);
    if (st.n_generated < max_tokens && st.n_prompt + st.n_generated >= n_ctx_used)
        fprintf(stderr, "stopped: the context of %d tokens is full (%d prompt + %d generated, short of -n %d); %s\n",
                n_ctx_used, st.n_prompt, st.n_generated, max_tokens,
                n_ctx_used < n_ctx ? "that is the model's limit" : "raise --ctx");
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %d tokens in %.3f s (%.2f tok/s)\n", st.n_prompt,
            st.prefill_s, st.prefill_s > 0 ? st.n_prompt / st.prefill_s : 0, st.n_generated, st.decode_s,
            st.decode_s > 0 && st.n_generated > 1 ? (st.n_generated - 1) / st.decode_s : 0);
    tinyllm_free(t);
    return 0;
}

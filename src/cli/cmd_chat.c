/* cmd_chat.c: `tinyllm chat`: interactive multi-turn chat in the terminal. The conversation is
 * re-rendered with the chat template each turn; the KV cache of the common prefix is reused, so a
 * turn costs only its new tokens. Commands: /reset clears the history, /quit (or EOF) leaves. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "tinyllm.h"

typedef struct reply {
    char *buf;
    size_t len, cap;
} reply;

static int on_token(int32_t token, const char *text, size_t len, void *user) {
    reply *r = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->len + len + 1 > r->cap) r->buf = tl_realloc(r->buf, r->cap = 2 * (r->len + len + 1));
    memcpy(r->buf + r->len, text, len);
    r->len += len;
    r->buf[r->len] = 0;
    return 0;
}

int cmd_chat(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    tl_sampling sp;
    tl_sampling_default(&sp);
    sp.temperature = 0.7f;
    sp.top_p = 0.8f;
    sp.repetition_penalty = 1.05f;
    sp.seed = cli_random_seed(); /* without --seed each session samples differently, as llama.cpp */
    const uint64_t drawn_seed = sp.seed;
    const char *system = NULL;
    int max_tokens = 512;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (!r) r = cli_parse_sampling_opt(&sp, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        static const char *const valued[] = {"--system", "-n", "--max-tokens", NULL};
        if (cli_missing_value(argc, argv, i, valued)) return 2;
        if (!strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if ((!strcmp(argv[i], "-n") || !strcmp(argv[i], "--max-tokens")) && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else {
            bool help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            if (!help) fprintf(stderr, "tinyllm chat: unknown option '%s'\n", argv[i]);
            fprintf(stderr,
                    "usage: tinyllm chat -m MODEL [--system TEXT] [-n MAX_TOKENS] [options]\n\n%s%s"
                    "Defaults: --temp 0.7 --top-p 0.8 --repeat-penalty 1.05. Type /reset to start over, /quit to leave.\n",
                    cli_model_help, cli_sampling_help);
            return help ? 0 : 2;
        }
    }
    if (!mo.model) {
        cli_no_model_hint("chat");
        return 2;
    }
    if (max_tokens <= 0) { /* the library would quietly take 256 for it */
        fprintf(stderr, "tinyllm chat: -n must be a positive number of tokens\n");
        return 2;
    }
    tinyllm_params p;
    cli_to_params(&mo, &p);
    p.n_ctx = 8192;
    char err[512];
    tinyllm *t = tinyllm_load(&p, err, sizeof err);
    if (!t) {
        fprintf(stderr, "tinyllm: %s\n", err);
        cli_model_not_found_hint("chat", mo.model);
        return 1;
    }
    if (!tinyllm_has_tokenizer(t)) {
        fprintf(stderr, "tinyllm chat: %s has no tokenizer; pass --tokenizer PATH (a tokenizer.json)\n",
                tinyllm_model_name(t));
        tinyllm_free(t);
        return 1;
    }
    tinyllm_sampling s;
    cli_to_sampling(&sp, &s);
    s.max_tokens = max_tokens;
    /* history: roles[i], contents[i] (owned) */
    int n = 0, cap = 16;
    const char **roles = tl_malloc(cap * sizeof(char *));
    char **contents = tl_malloc(cap * sizeof(char *));
    if (system) {
        roles[n] = "system";
        contents[n++] = tl_strdup(system);
    }
    int n_fixed = n;
    fprintf(stderr, "chatting with %s (/reset, /quit)\n", tinyllm_model_name(t));
    cli_note_random_seed(&sp, drawn_seed, "session");
    char *line = NULL; /* getline: a long pasted line stays one message (a fixed buffer split it into turns) */
    size_t line_cap = 0;
    for (;;) {
        fprintf(stdout, "\n> ");
        fflush(stdout);
        if (getline(&line, &line_cap, stdin) < 0) break;
        size_t L = strlen(line);
        while (L && (line[L - 1] == '\n' || line[L - 1] == '\r')) line[--L] = 0;
        if (!L) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            while (n > n_fixed) free(contents[--n]);
            fprintf(stderr, "(history cleared)\n");
            continue;
        }
        if (n + 2 > cap) {
            cap *= 2;
            roles = tl_realloc(roles, cap * sizeof(char *));
            contents = tl_realloc(contents, cap * sizeof(char *));
        }
        roles[n] = "user";
        contents[n++] = tl_strdup(line);
        char *prompt = tinyllm_chat_prompt(t, roles, (const char *const *)contents, n);
        int32_t *ids = NULL;
        int ni = prompt ? tinyllm_tokenize(t, prompt, 0, &ids) : -1;
        free(prompt);
        reply r = {0};
        tinyllm_stats st;
        int g = ni > 0 ? tinyllm_generate(t, ids, ni, &s, on_token, &r, &st) : -1;
        free(ids);
        if (g < 0) {
            fprintf(stderr, "\ntinyllm: %s\n", tinyllm_last_error(t));
            if (ni >= tinyllm_n_ctx(t)) /* the history only grows: every later turn would fail the same way */
                fprintf(stderr, "(the conversation is over the context: type /reset to start a new conversation)\n");
            free(contents[--n]);
            free(r.buf);
            continue;
        }
        fprintf(stderr, "\n[%d prompt tokens (%d reused), %d generated, %.1f tok/s]\n", st.n_prompt, st.n_reused,
                st.n_generated, st.decode_s > 0 ? st.n_generated / st.decode_s : 0);
        roles[n] = "assistant";
        contents[n++] = r.buf ? r.buf : tl_strdup("");
    }
    free(line);
    while (n > 0) free(contents[--n]);
    free(roles);
    free(contents);
    tinyllm_free(t);
    return 0;
}

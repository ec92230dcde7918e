/* main.c: the tinyllm command-line tool: dispatches to subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const tl_cmd commands[] = {
    {"generate", cmd_generate, "generate a completion for a prompt"},
    {"chat", cmd_chat, "interactive multi-turn chat in the terminal"},
    {"score", cmd_score, "teacher-forced top-K log-probabilities and perplexity of a token sequence"},
    {"info", cmd_info, "show a model's configuration and memory plan"},
    {"tokenize", cmd_tokenize, "print the token ids of a text (JSON array)"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"quantize", cmd_quantize, "write an INT4 (MLX-layout) copy of a model as an HF folder"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server"},
    {"bench", cmd_bench, "offline serving throughput: many requests through the batching engine"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(void) {
    fprintf(stderr, "tinyllm: LLM inference and serving for the Qwen2 family\n\nusage: tinyllm COMMAND [options]\n\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(stderr, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(stderr, "\nRun 'tinyllm COMMAND --help' for a command's options.\n");
}

/* Weights are mmap'ed: if the model file is truncated while in use, touching a page past its new end
 * raises SIGBUS. Say why before dying (the default action then ends the process with SIGBUS). */
static void on_sigbus(int sig) {
    static const char msg[] = "tinyllm: SIGBUS: a memory-mapped model file was truncated or changed on disk while "
                              "in use; replace model files by rename, never in place (docs/SECURITY.md)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r, (void)sig; /* SA_RESETHAND: the faulting access repeats and takes the default action */
}

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tinyllm: unknown command '%s'\n\n", argv[1]);
    usage();
    return 2;
}

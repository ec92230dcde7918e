/* cli.h: subcommands of the tinyllm executable. Each lives in its own cmd_*.c and is listed in
 * main.c's table. A command returns the process exit code. */
#ifndef TL_CLI_H
#define TL_CLI_H

typedef struct tl_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *help;
} tl_cmd;

int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

#endif

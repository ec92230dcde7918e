/* cmd_info.c: placeholder until the model loader lands. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tinyllm info: not built yet\n");
    return 1;
}

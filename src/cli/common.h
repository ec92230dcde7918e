/* common.h: option parsing and model loading shared by the CLI commands. */
#ifndef TL_CLI_COMMON_H
#define TL_CLI_COMMON_H

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tinyllm.h"

typedef struct cli_model_opts {
    const char *model;      /* -m */
    const char *tokenizer;  /* --tokenizer */
    const char *backend;    /* --backend cpu|cuda|auto */
    int threads;            /* --threads */
    int quant_bits, group;  /* --quant int4[:G] */
    float gpu_util;         /* --gpu-mem-util */
} cli_model_opts;

void cli_model_opts_default(cli_model_opts *o);
/* If argv[*i] is a model option, consumes it (and its value), returns 1; 0 if not one; -1 on a bad value. */
int cli_parse_model_opt(cli_model_opts *o, int argc, char **argv, int *i);
/* If argv[*i] is a sampling option (--temp --top-p --top-k --min-p --repeat-penalty --presence-penalty
 * --frequency-penalty --seed), consumes it. */
int cli_parse_sampling_opt(tl_sampling *s, int argc, char **argv, int *i);
extern const char *cli_model_help;
extern const char *cli_sampling_help;
/* Loads the model and creates the backend; prints what it did to stderr. NULL + message on failure
 * (naming cmd, the command, when the path is not there). */
tl_model *cli_load(const char *cmd, const cli_model_opts *o, tl_backend **be, double *load_s);
/* The parsed options as the public API's load parameters / sampling settings. */
void cli_to_params(const cli_model_opts *o, tinyllm_params *p);
void cli_to_sampling(const tl_sampling *sp, tinyllm_sampling *s);
/* Prints how to get a model when -m is missing. */
void cli_no_model_hint(const char *cmd);
/* After a failed load: when path is not there, says so and how to get a model; else nothing. */
void cli_model_not_found_hint(const char *cmd, const char *path);
/* A fresh seed for a run without --seed (from the OS's random source; the clock if that fails). */
uint64_t cli_random_seed(void);
/* Names the seed on stderr when a sampled run (temperature > 0) still has the one drawn before the options were
 * read, so that `--seed N` repeats it; what: "run", "session". */
void cli_note_random_seed(const tl_sampling *sp, uint64_t drawn, const char *what);
/* For a command's own options: argv[i] is one of names (NULL-terminated) given last, without its
 * value; says so on stderr and returns 1 (the caller exits 2), else 0. */
int cli_missing_value(int argc, char **argv, int i, const char *const *names);
/* A whole decimal number in [lo, hi] ("2.5", "1e5", "12abc" are refused, not read up to their first
 * odd character): 0, or -1 without a word (the caller names the option). */
int cli_parse_int(const char *s, int lo, int hi, int *out);
/* Parses "1,2,3" or "[1, 2, 3]" into ids (malloc'd). Returns count or -1. */
int cli_parse_ids(const char *s, int32_t **ids);

#endif

/* common.c: shared CLI option parsing and model loading. */
#include "cli/common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

const char *cli_model_help =
    "  -m, --model PATH        model: a Hugging Face folder, a .gguf file, or dummy:qwen2-0.5b|1.5b|7b|72b\n"
    "  --quant int4[:G]        quantize weights to int4 at load (group size G = 32, 64 or 128; default 64)\n"
    "  --tokenizer PATH        tokenizer.json (or folder) to use instead of the model's own\n"
    "  --backend NAME          cpu, cuda or auto (default auto)\n"
    "  --threads N             CPU threads (default: all cores)\n"
    "  --gpu-mem-util F        fraction of free GPU memory to use (default 0.9)\n";
const char *cli_sampling_help =
    "  --temp T                temperature (0 = greedy; default 0)\n"
    "  --top-k K --top-p P --min-p P\n"
    "  --repeat-penalty R --presence-penalty P --frequency-penalty F\n"
    "  --seed S                random seed (same seed, same output; default: a fresh one, printed)\n";

void cli_model_opts_default(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    o->gpu_util = 0.9f;
}

static int need(int argc, char **argv, int i) {
    if (i + 1 >= argc) {
        fprintf(stderr, "tinyllm: option %s needs a value\n", argv[i]);
        return 0;
    }
    return 1;
}

static int parse_num(const char *s, double lo, double hi, double *out, const char *opt) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "tinyllm: bad value '%s' for %s (expected a number in [%g, %g])\n", s, opt, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A seed is a whole decimal number, all 64 bits of it (a double would round large ones); "1e5" or
 * "0x10" are refused rather than read up to their first odd character. */
static int parse_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || errno) {
        fprintf(stderr, "tinyllm: bad value '%s' for --seed (expected an integer in [0, %llu])\n", s, ULLONG_MAX);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_model_opt(cli_model_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    double v;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!need(argc, argv, *i)) return -1;
        o->model = argv[++*i];
    } else if (!strcmp(a, "--tokenizer")) {
        if (!need(argc, argv, *i)) return -1;
        o->tokenizer = argv[++*i];
    } else if (!strcmp(a, "--backend")) {
        if (!need(argc, argv, *i)) return -1;
        o->backend = argv[++*i];
    } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
        if (!need(argc, argv, *i) || parse_num(argv[++*i], 1, 1024, &v, a)) return -1;
        o->threads = (int)v;
    } else if (!strcmp(a, "--gpu-mem-util")) {
        if (!need(argc, argv, *i) || parse_num(argv[++*i], 0.05, 0.99, &v, a)) return -1;
        o->gpu_util = (float)v;
    } else if (!strcmp(a, "--quant")) {
        if (!need(argc, argv, *i)) return -1;
        const char *q = argv[++*i];
        if (strncmp(q, "int4", 4) || (q[4] && q[4] != ':')) {
            fprintf(stderr, "tinyllm: --quant takes int4 or int4:G, not '%s'\n", q);
            return -1;
        }
        o->quant_bits = 4;
        o->group = 64;
        if (q[4] == ':') {
            if (parse_num(q + 5, 32, 128, &v, "--quant int4:G")) return -1;
            o->group = (int)v;
            if (o->group != 32 && o->group != 64 && o->group != 128) {
                fprintf(stderr, "tinyllm: int4 group size must be 32, 64 or 128\n");
                return -1;
            }
        }
    } else {
        return 0;
    }
    return 1;
}

int cli_parse_sampling_opt(tl_sampling *s, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    static const struct {
        const char *name;
        double lo, hi;
    } opts[] = {{"--temp", 0, 100},          {"--top-k", 0, 1e9},           {"--top-p", 0, 1},
                {"--min-p", 0, 1},           {"--repeat-penalty", 0.01, 100}, {"--presence-penalty", -2, 2},
                {"--frequency-penalty", -2, 2}, {"--seed", 0, 1.8e19}};
    for (int k = 0; k < 8; k++) {
        if (strcmp(a, opts[k].name)) continue;
        double v = 0;
        if (!need(argc, argv, *i)) return -1;
        if (k == 1) { /* a count, read as a whole number: '2.5' was truncated to 2 without a word */
            if (!cli_parse_int(argv[++*i], 0, (int)opts[k].hi, &s->top_k)) return 1;
            fprintf(stderr, "tinyllm: bad value '%s' for %s (expected an integer in [0, %d])\n", argv[*i], a,
                    (int)opts[k].hi);
            return -1;
        }
        if (k == 7 ? parse_seed(argv[++*i], &s->seed) : parse_num(argv[++*i], opts[k].lo, opts[k].hi, &v, a)) return -1;
        switch (k) {
        case 0: s->temperature = (float)v; break;
        case 1: break; /* set above */
        case 2: s->top_p = (float)v; break;
        case 3: s->min_p = (float)v; break;
        case 4: s->repetition_penalty = (float)v; break;
        case 5: s->presence_penalty = (float)v; break;
        case 6: s->frequency_penalty = (float)v; break;
        case 7: break; /* parse_seed set it */
        }
        return 1;
    }
    return 0;
}

static void how_to_get_a_model(const char *cmd) {
    fprintf(stderr,
            "Get a model folder from Hugging Face, for example:\n"
            "  huggingface-cli download Qwen/Qwen2-0.5B-Instruct --local-dir Qwen2-0.5B-Instruct\n"
            "  tinyllm %s -m Qwen2-0.5B-Instruct\n\n"
            "Or a dry run without a download (random weights of the real shape; shows the speed):\n"
            "  tinyllm generate -m dummy:qwen2-0.5b -n 64\n",
            cmd);
}

void cli_no_model_hint(const char *cmd) {
    fprintf(stderr, "tinyllm %s: needs a model (-m PATH).\n\n", cmd);
    how_to_get_a_model(cmd);
}

void cli_model_not_found_hint(const char *cmd, const char *path) {
    if (!strncmp(path, "dummy:", 6) || access(path, F_OK) == 0) return; /* there: the load error says what is wrong */
    fprintf(stderr, "tinyllm %s: %s was not found.\n\n", cmd, path);
    how_to_get_a_model(cmd);
}

uint64_t cli_random_seed(void) {
    uint64_t v;
    if (getrandom(&v, sizeof v, 0) == (ssize_t)sizeof v) return v;
    return (uint64_t)(tl_now() * 1e9) ^ ((uint64_t)getpid() << 32);
}

void cli_note_random_seed(const tl_sampling *sp, uint64_t drawn, const char *what) {
    if (sp->temperature > 0 && sp->seed == drawn)
        fprintf(stderr, "sampling with a random seed (--seed %llu repeats this %s)\n", (unsigned long long)sp->seed, what);
}

int cli_missing_value(int argc, char **argv, int i, const char *const *names) {
    if (i + 1 < argc) return 0;
    for (; *names; names++)
        if (!strcmp(argv[i], *names)) return !need(argc, argv, i);
    return 0;
}

tl_model *cli_load(const char *cmd, const cli_model_opts *o, tl_backend **be, double *load_s) {
    double t0 = tl_now();
    tl_error e = {{0}};
    tl_load_opts lo = {.quant_bits = o->quant_bits, .group_size = o->group, .tokenizer_path = o->tokenizer};
    tl_model *m = tl_model_load(o->model, &lo, &e);
    if (!m) {
        fprintf(stderr, "tinyllm: %s\n", e.msg);
        cli_model_not_found_hint(cmd, o->model);
        return NULL;
    }
    *be = tl_backend_new(o->backend, o->threads, o->gpu_util, &e);
    if (!*be || (*be)->prepare(*be, m, &e)) {
        fprintf(stderr, "tinyllm: %s\n", e.msg);
        if (*be) (*be)->free(*be);
        tl_model_free(m);
        return NULL;
    }
    double dt = tl_now() - t0;
    if (load_s) *load_s = dt;
    const tl_config *c = &m->cfg;
    fprintf(stderr, "loaded %s: %d layers, n_embd %d, %d/%d heads, vocab %d, %.2f GB of weights (%s), %.2f s, backend %s\n",
            m->name, c->n_layer, c->n_embd, c->n_head, c->n_head_kv, c->n_vocab, tl_model_weight_bytes(m) / 1e9,
            tl_dtype_name(m->w.layers[0].wq.type), dt, (*be)->name);
    return m;
}

int cli_parse_ids(const char *s, int32_t **ids) {
    size_t cap = 16;
    int n = 0;
    *ids = tl_malloc(cap * sizeof(int32_t));
    const char *p = s;
    while (*p) {
        while (*p && (isspace((unsigned char)*p) || *p == ',' || *p == '[' || *p == ']')) p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) {
            free(*ids);
            *ids = NULL;
            return -1;
        }
        if ((size_t)n == cap) *ids = tl_realloc(*ids, (cap *= 2) * sizeof(int32_t));
        (*ids)[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

void cli_to_params(const cli_model_opts *o, tinyllm_params *p) {
    tinyllm_params_default(p);
    p->model = o->model;
    p->tokenizer = o->tokenizer;
    p->backend = o->backend;
    p->n_threads = o->threads;
    p->quant_bits = o->quant_bits;
    p->group_size = o->group;
    p->gpu_mem_util = o->gpu_util;
}

void cli_to_sampling(const tl_sampling *sp, tinyllm_sampling *s) {
    tinyllm_sampling_default(s);
    s->temperature = sp->temperature;
    s->top_k = sp->top_k;
    s->top_p = sp->top_p;
    s->min_p = sp->min_p;
    s->repetition_penalty = sp->repetition_penalty;
    s->presence_penalty = sp->presence_penalty;
    s->frequency_penalty = sp->frequency_penalty;
    s->seed = sp->seed;
}

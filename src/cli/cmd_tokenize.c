/* cmd_tokenize.c: `tinyllm tokenize` (text -> JSON array of ids) and `tinyllm detokenize` (ids -> text).
 * --lines: batch mode for tests: each stdin line is a JSON value (a string to encode, or an array of ids
 * to decode); one JSON result per line on stdout. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

static void tok_usage(void) {
    fprintf(stderr,
            "usage: tinyllm tokenize -m PATH [--chat] [--no-special] [--no-bos] [--lines] [TEXT]\n"
            "  PATH: a model folder, a tokenizer.json or a .gguf file. Prints the ids as a JSON array.\n"
            "  --chat        wrap TEXT as one user message in the model's chat template (+ generation prompt)\n"
            "  --no-special  special tokens in TEXT are plain text (default: they become their ids)\n"
            "  --no-bos      never prepend bos (default: when the vocab asks for it)\n"
            "  --lines       read one JSON string per stdin line, print one JSON array per line\n"
            "usage: tinyllm detokenize -m PATH [--skip-special] [--lines] IDS\n"
            "  IDS: \"1,2,3\" or a JSON array. Prints the text.\n"
            "  --lines       read one JSON array per stdin line, print one JSON string per line\n");
}

typedef struct opts {
    const char *model, *arg;
    bool chat, no_special, no_bos, lines, skip_special;
} opts;

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) o->model = argv[++i];
        else if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--no-special")) o->no_special = true;
        else if (!strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--lines")) o->lines = true;
        else if (!strcmp(a, "--skip-special")) o->skip_special = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return tok_usage(), 1;
        else if (a[0] == '-' && a[1] && !o->arg) return fprintf(stderr, "tinyllm: unknown option '%s'\n", a), tok_usage(), 2;
        else if (!o->arg) o->arg = a;
        else return fprintf(stderr, "tinyllm: unexpected argument '%s'\n", a), 2;
    }
    if (!o->model) return fprintf(stderr, "tinyllm: -m PATH is required\n"), tok_usage(), 2;
    if (!o->lines && !o->arg) return fprintf(stderr, "tinyllm: nothing to do (give TEXT/IDS or --lines)\n"), 2;
    return 0;
}

static tl_tokenizer *open_tok(const char *path) {
    tl_error e = {{0}};
    size_t n = strlen(path);
    tl_tokenizer *t = NULL;
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) {
        tl_gguf *g = tl_gguf_open(path, &e);
        if (g) t = tl_tokenizer_from_gguf(g, &e);
        tl_gguf_free(g);
    } else {
        t = tl_tokenizer_load(path, &e);
    }
    if (!t) fprintf(stderr, "tinyllm: %s\n", e.msg);
    return t;
}

static int encode_one(const tl_tokenizer *t, const opts *o, const char *text, size_t len, FILE *out) {
    char *chat = NULL;
    if (o->chat) {
        tl_chat_msg m = {"user", text};
        chat = tl_chat_render(t, &m, 1, true);
        text = chat, len = strlen(chat);
    }
    tl_error e = {{0}};
    int32_t *ids;
    int n = o->no_bos ? tl_tokenizer_encode(t, text, len, !o->no_special, &ids, &e)
                      : tl_tokenizer_encode_prompt(t, text, len, &ids, &e);
    if (!o->no_bos && o->no_special && n >= 0) { /* encode_prompt parses specials: redo without */
        int32_t *v;
        int m = tl_tokenizer_encode(t, text, len, false, &v, &e);
        int b = tl_tokenizer_add_bos(t);
        free(ids);
        ids = NULL, n = m;
        if (m >= 0) {
            ids = malloc(sizeof *ids * (size_t)(m + b + 1));
            if (b) ids[0] = tl_tokenizer_bos(t);
            memcpy(ids + b, v, sizeof *ids * (size_t)m);
            n = m + b;
        }
        free(v);
    }
    free(chat);
    if (n < 0) return fprintf(stderr, "tinyllm: %s\n", e.msg), 1;
    fputc('[', out);
    for (int i = 0; i < n; i++) fprintf(out, i ? ", %d" : "%d", ids[i]);
    fputs("]\n", out);
    free(ids);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    tl_tokenizer *t = open_tok(o.model);
    if (!t) return 1;
    rc = 0;
    if (!o.lines) {
        rc = encode_one(t, &o, o.arg, strlen(o.arg), stdout);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        for (long ln = 1; !rc && (n = getline(&line, &cap, stdin)) > 0; ln++) {
            json_error_t je;
            json_t *v = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!json_is_string(v)) {
                fprintf(stderr, "tinyllm: stdin line %ld: expected a JSON string (%s)\n", ln, v ? "not a string" : je.text);
                rc = 1;
            } else {
                rc = encode_one(t, &o, json_string_value(v), json_string_length(v), stdout);
            }
            json_decref(v);
        }
        free(line);
    }
    tl_tokenizer_free(t);
    return rc;
}

/* "1,2,3" or "[1, 2, 3]" -> ids; -1 on a bad list */
static int parse_ids(const char *s, int32_t **ids) {
    int n = 0, cap = 16;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    const char *p = s;
    while (*p == ' ' || *p == '[') p++;
    while (*p && *p != ']') {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < -1 || x > 0x7fffffff) return free(v), -1;
        if (n == cap) v = realloc(v, sizeof *v * (size_t)(cap *= 2));
        v[n++] = (int32_t)x;
        p = end;
        while (*p == ' ' || *p == '\n' || *p == '\t') p++;
        if (*p == ',') p++;
        else if (*p && *p != ']') return free(v), -1;
        while (*p == ' ' || *p == '\n' || *p == '\t') p++;
    }
    *ids = v;
    return n;
}

/* The index of the first id outside [0, n_vocab) after saying so on stderr, or -1. The decoder drops
 * such ids without a word (as HF does), so '999999999' printed nothing; /detokenize refuses them with a 400. */
static int bad_id(const tl_tokenizer *t, const int32_t *ids, int n, long line) {
    int nv = tl_tokenizer_n_vocab(t);
    for (int i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < nv) continue;
        if (line) fprintf(stderr, "tinyllm: stdin line %ld: ", line);
        else fprintf(stderr, "tinyllm: ");
        fprintf(stderr, "token id %d is outside the vocabulary [0, %d)\n", (int)ids[i], nv);
        return i;
    }
    return -1;
}

int cmd_detokenize(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    tl_tokenizer *t = open_tok(o.model);
    if (!t) return 1;
    if (!o.lines) {
        int32_t *ids;
        int n = parse_ids(o.arg, &ids);
        if (n < 0) {
            fprintf(stderr, "tinyllm: IDS must be like 1,2,3 or [1, 2, 3]: '%s'\n", o.arg);
            rc = 2;
        } else if (bad_id(t, ids, n, 0) >= 0) {
            free(ids);
            rc = 2;
        } else {
            size_t len;
            char *s = tl_tokenizer_decode_n(t, ids, n, o.skip_special, &len);
            fwrite(s, 1, len, stdout);
            free(s);
            free(ids);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        for (long ln = 1; !rc && getline(&line, &cap, stdin) > 0; ln++) {
            int32_t *ids;
            int n = parse_ids(line, &ids);
            if (n < 0) {
                fprintf(stderr, "tinyllm: stdin line %ld: expected a JSON array of ids\n", ln);
                rc = 1;
                break;
            }
            if (bad_id(t, ids, n, ln) >= 0) {
                free(ids);
                rc = 1;
                break;
            }
            size_t len;
            char *s = tl_tokenizer_decode_n(t, ids, n, o.skip_special, &len);
            json_t *js = json_stringn(s, len);
            char *dump = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
            puts(dump ? dump : "null");
            free(dump);
            json_decref(js);
            free(s);
            free(ids);
        }
        free(line);
    }
    tl_tokenizer_free(t);
    return rc;
}

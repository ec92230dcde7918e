/* cmd_serve.c: `tinyllm serve -m PATH [options]`: the OpenAI-compatible HTTP server (server/server.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "server/server.h"

static void serve_usage(void) {
    fprintf(stderr,
            "usage: tinyllm serve -m PATH [options]\n\n%s"
            "  --host ADDR                address to bind (default 127.0.0.1: loopback only)\n"
            "  --port N                   port (default 8000; 0: any free port, printed)\n"
            "  --api-key KEY              require 'Authorization: Bearer KEY' (also $TINYLLM_API_KEY)\n"
            "  --served-model-name NAME   model id in the API (default: PATH)\n"
            "  --max-queue N              waiting requests at most; beyond: 429 (default 256)\n"
            "  --max-batch-tokens N       token budget per engine step (default 2048)\n"
            "  --max-seqs N               running sequences at most (default 64)\n"
            "  --prefill-chunk N          longest prefill piece per sequence per step\n"
            "  --kv-cache-mem SIZE        KV pool size, e.g. 512M, 4G (default: backend's)\n"
            "  --max-body BYTES           request body limit (default 4M)\n"
            "  --max-connections N        open connections at most (default 256)\n"
            "  --http-threads N           HTTP worker threads (default 2)\n"
            "  --timeout S                idle connection timeout in seconds (default 60)\n"
            "  --shutdown-grace S         on SIGINT/SIGTERM, wait S seconds for requests, then cancel (default 10)\n",
            cli_model_help);
}

/* "512M", "4G", "1048576" -> bytes; 0 on error. */
static size_t parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) return 0;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    return *end ? 0 : (size_t)v;
}

int cmd_serve(int argc, char **argv) {
    tl_server_opts o;
    tl_server_opts_default(&o);
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    o.eng.max_queue = 256;
    o.api_key = getenv("TINYLLM_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage();
            return 0;
        }
        int k = cli_parse_model_opt(&mo, argc, argv, &i);
        if (k < 0) return 2;
        if (k > 0) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "tinyllm serve: unknown option or missing value: %s\n", a);
            serve_usage();
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0, x = 0;
        if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) bad = cli_parse_int(v, 0, 65535, &o.port);
        else if (!strcmp(a, "--api-key")) o.api_key = *v ? v : NULL;
        else if (!strcmp(a, "--served-model-name")) o.served_name = v;
        else if (!strcmp(a, "--max-queue")) bad = cli_parse_int(v, 1, 1 << 20, &o.eng.max_queue);
        else if (!strcmp(a, "--max-batch-tokens")) bad = cli_parse_int(v, 1, 1 << 20, &o.eng.max_batch_tokens);
        else if (!strcmp(a, "--max-seqs")) bad = cli_parse_int(v, 1, 1 << 16, &o.eng.max_seqs);
        else if (!strcmp(a, "--prefill-chunk")) bad = cli_parse_int(v, 1, 1 << 20, &o.eng.prefill_chunk);
        else if (!strcmp(a, "--kv-cache-mem")) bad = (o.eng.kv_mem = parse_size(v)) == 0;
        else if (!strcmp(a, "--max-body")) bad = (o.max_body = parse_size(v)) == 0;
        else if (!strcmp(a, "--max-connections")) bad = cli_parse_int(v, 1, 1 << 16, &o.max_connections);
        else if (!strcmp(a, "--http-threads")) bad = cli_parse_int(v, 1, 256, &o.http_threads);
        else if (!strcmp(a, "--timeout")) bad = cli_parse_int(v, 1, 86400, &o.conn_timeout_s);
        else if (!strcmp(a, "--shutdown-grace")) {
            bad = cli_parse_int(v, 0, 86400, &x);
            o.shutdown_grace_s = x;
        }
        else {
            fprintf(stderr, "tinyllm serve: unknown option %s\n", a);
            serve_usage();
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tinyllm serve: bad value for %s: '%s'\n", a, v);
            return 2;
        }
    }
    if (!mo.model) {
        cli_no_model_hint("serve");
        return 2;
    }
    o.model_path = mo.model;
    o.load.tokenizer_path = mo.tokenizer;
    o.load.quant_bits = mo.quant_bits;
    o.load.group_size = mo.group;
    o.backend = mo.backend;
    o.n_threads = mo.threads;
    o.gpu_mem_util = mo.gpu_util;
    o.load.quiet = true;
    return tl_server_run(&o);
}

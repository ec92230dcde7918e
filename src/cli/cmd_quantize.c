/* cmd_quantize.c: `tinyllm quantize -m IN -o OUT [--group-size G]`: loads a bf16/f16/f32 model
 * (HF folder or dummy:), quantizes every linear layer, the embeddings and lm_head to INT4 (MLX
 * layout), and writes an HF-style folder that `-m OUT` loads directly (docs/QUANT.md). */
#include <stdio.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "model/model.h"
#include "quant/int4.h"

static int usage(int rc) {
    fprintf(stderr, "usage: tinyllm quantize -m IN -o OUT [--group-size G]\n"
                    "  -m IN            HF folder (bf16/f16/f32 safetensors) or dummy:NAME\n"
                    "  -o OUT           output folder (must not exist); written under a temporary name, then renamed\n"
                    "  --group-size G   int4 group size: 32, 64 (default) or 128\n");
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int group = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(0);
        if (i + 1 >= argc) return usage(2);
        if (!strcmp(argv[i], "-m")) in = argv[++i];
        else if (!strcmp(argv[i], "-o")) out = argv[++i];
        else if (!strcmp(argv[i], "--group-size")) {
            group = atoi(argv[++i]);
            if (group != 32 && group != 64 && group != 128) {
                fprintf(stderr, "tinyllm quantize: --group-size must be 32, 64 or 128, not '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "tinyllm quantize: unknown option '%s'\n", argv[i]);
            return usage(2);
        }
    }
    if (!in || !out) return usage(2);
    tl_error e = {{0}};
    double t0 = tl_now();
    tl_load_opts lo = {.dummy_dtype = TL_BF16};
    tl_model *m = tl_model_load(in, &lo, &e);
    if (!m) {
        fprintf(stderr, "tinyllm quantize: %s\n", e.msg);
        return 1;
    }
    size_t before = tl_model_weight_bytes(m);
    if (tl_model_quantize(m, group, true, &e)) {
        fprintf(stderr, "tinyllm quantize: %s\n", e.msg);
        tl_model_free(m);
        return 1;
    }
    struct stat st;
    const char *src_dir = stat(in, &st) == 0 && S_ISDIR(st.st_mode) ? in : NULL;
    if (tl_q4_save_hf(m, src_dir, out, &e)) {
        fprintf(stderr, "tinyllm quantize: %s\n", e.msg);
        tl_model_free(m);
        return 1;
    }
    fprintf(stderr, "tinyllm quantize: %s -> %s: weights %.1f MB -> %.1f MB (int4, group %d) in %.1f s\n", in, out,
            before / 1e6, tl_model_weight_bytes(m) / 1e6, group, tl_now() - t0);
    tl_model_free(m);
    return 0;
}

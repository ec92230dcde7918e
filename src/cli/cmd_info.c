/* cmd_info.c: `tinyllm info -m MODEL`: configuration, weight memory, KV cost per token. */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "kv/kv_cache.h"

int cmd_info(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.backend = "cpu";
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (!r) {
            fprintf(stderr, "usage: tinyllm info -m MODEL [--quant int4[:G]]\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (!mo.model) {
        cli_no_model_hint("info");
        return 2;
    }
    tl_backend *be;
    tl_model *m = cli_load("info", &mo, &be, NULL);
    if (!m) return 1;
    const tl_config *c = &m->cfg;
    printf("model        %s\narch         %s\nlayers       %d\nn_embd       %d\nheads        %d (kv %d, head_dim %d)\n"
           "n_ff         %d\nvocab        %d\ncontext      %d\nrope         %s, theta %g\nrms_eps      %g\n"
           "qkv bias     %s\ntied embd    %s\nweights      %s, %.3f GB\nkv per token %zu bytes (f32), %zu (bf16)\n"
           "eos ids     ",
           m->name, c->arch == TL_ARCH_QWEN2 ? "qwen2" : "llama", c->n_layer, c->n_embd, c->n_head, c->n_head_kv,
           c->head_dim, c->n_ff, c->n_vocab, c->n_ctx, c->rope == TL_ROPE_NEOX ? "neox (half-split)" : "adjacent pairs",
           c->rope_theta, c->rms_eps, c->qkv_bias ? "yes" : "no", c->tied_embd ? "yes" : "no",
           tl_dtype_name(m->w.layers[0].wq.type), tl_model_weight_bytes(m) / 1e9, tl_kv_block_bytes(c, 1, TL_F32),
           tl_kv_block_bytes(c, 1, TL_BF16));
    for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_ids[i]);
    printf("\ntokenizer    %s\n", m->tok ? "yes" : "none");
    be->free(be);
    tl_model_free(m);
    return 0;
}

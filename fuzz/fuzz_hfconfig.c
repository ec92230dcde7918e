/* fuzz_hfconfig.c: libFuzzer target for config.json parsing (tl_hf_parse_config).
 * Run: build-fuzz/fuzz_hfconfig -max_total_time=60 fuzz/corpus/hfconfig   (scripts/fuzz.sh)
 * Invariants checked on accepted configs: the ranges the model code relies on. */
#include <stdint.h>

#include "formats/hfconfig.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tl_config c;
    tl_hf_quant q;
    tl_error e;
    e.msg[0] = 0;
    if (tl_hf_parse_config((const char *)data, size, "fuzz/config.json", &c, &q, &e) != 0) {
        if (!e.msg[0]) __builtin_trap();
        return 0;
    }
    if (c.n_embd < 1 || c.n_head < 1 || c.n_head_kv < 1 || c.n_head % c.n_head_kv || c.head_dim < 1 ||
        c.head_dim % 2 || c.n_layer < 1 || c.n_vocab < 1 || c.n_ctx < 1 || c.n_ff < 1 || c.n_eos < 0 ||
        c.n_eos > TL_MAX_EOS || (q.bits != 0 && q.bits != 4))
        __builtin_trap();
    return 0;
}

/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser (tl_st_parse, in memory)
 * and, for images it accepts, the HF model loader over them (tl_model_load on a folder holding a
 * fixed tiny config.json and the input as model.safetensors: tensor lookup, shape checks, dtype
 * conversion, MLX int4 parts).
 * Build: CC=clang cmake -S . -B build-fuzz -DTL_FUZZ=ON && cmake --build build-fuzz --target fuzz_safetensors
 * Run:   build-fuzz/fuzz_safetensors -max_total_time=60 fuzz/corpus/safetensors   (scripts/fuzz.sh)
 * Invariant checked: every accepted tensor lies inside the image and nbytes = prod(shape) * dtype size. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "model/model.h"

static char g_dir[128];
static volatile unsigned g_sink;

/* The tiny Qwen2 shape fuzz/make_corpus.py writes its loader seeds for. */
static const char CONFIG[] =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 16,"
    " \"max_position_embeddings\": 64, \"tie_word_embeddings\": true, \"rms_norm_eps\": 1e-6}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    snprintf(g_dir, sizeof g_dir, "/tmp/tl_fuzz_st.%d", (int)getpid());
    mkdir(g_dir, 0700);
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", g_dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(CONFIG, 1, sizeof CONFIG - 1, f);
        fclose(f);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tl_error e;
    tl_st_file f;
    if (tl_st_parse(&f, data, size, "fuzz", &e) != 0) {
        if (!e.msg[0]) __builtin_trap(); /* an error must carry a message */
        return 0;
    }
    for (int i = 0; i < f.n; i++) {
        const tl_st_tensor *t = &f.t[i];
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) __builtin_trap();
        unsigned __int128 count = tl_st_dtype_size(t->dtype);
        for (int d = 0; d < t->n_dims; d++) count *= (uint64_t)t->shape[d];
        if (count != t->nbytes) __builtin_trap();
        if (t->nbytes) g_sink += p[0] + p[t->nbytes - 1];
    }
    int n = f.n;
    tl_st_close(&f);
    if (n == 0 || size > (1u << 20)) return 0;
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", g_dir);
    FILE *fp = fopen(p, "wb");
    if (!fp) return 0;
    size_t w = fwrite(data, 1, size, fp);
    if (fclose(fp) != 0 || w != size) return 0;
    tl_load_opts o = {0};
    o.quiet = true;
    tl_model *m = tl_model_load(g_dir, &o, &e);
    if (m) tl_model_free(m);
    else if (!e.msg[0]) __builtin_trap();
    return 0;
}

/* fuzz_gguf.c: libFuzzer target for the GGUF reader and the GGUF model loader.
 * Build: CC=clang cmake -S . -B build-fuzz -DTL_FUZZ=ON && cmake --build build-fuzz --target fuzz_gguf
 * Run:   build-fuzz/fuzz_gguf -max_total_time=300 -max_len=65536 fuzz/corpus/gguf
 * Seeds: tools/make_gguf_corpus.py writes fuzz/corpus/gguf/. Each input is parsed; every value,
 * array element and tensor byte range is read (ASan checks the bounds); then the same bytes go
 * through tl_load_gguf (via a memfd) to reach the hyperparameter, tensor-mapping, conversion and
 * tokenizer-spec code, and the model is freed (LeakSanitizer checks the error paths). */
#include <sys/mman.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "model/model.h"
#include "quant/ggml_types.h"

static int g_fd = -1;
static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    g_fd = memfd_create("fuzz_gguf", 0);
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    return 0;
}

static volatile uint64_t g_sink;

static void touch(const tl_gguf *g) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const tl_gguf_kv *kv = &g->kv[i];
        int64_t v;
        double f;
        tl_gguf_str s;
        if (tl_gguf_kv_int(kv, &v)) g_sink += (uint64_t)v;
        if (tl_gguf_kv_float(kv, &f)) g_sink += (uint64_t)(f == f);
        if (tl_gguf_kv_str(kv, &s) && s.n) g_sink += (uint8_t)s.p[s.n - 1];
        for (uint64_t j = 0; kv->type == TL_GGUF_ARRAY && j < kv->arr_n && j < 4096; j++) {
            if (tl_gguf_arr_int(kv, j, &v)) g_sink += (uint64_t)v;
            if (tl_gguf_arr_float(kv, j, &f)) g_sink += (uint64_t)(f == f);
            if (tl_gguf_arr_str(kv, j, &s) && s.n) g_sink += (uint8_t)s.p[0] + (uint8_t)s.p[s.n - 1];
        }
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const tl_gguf_tensor *t = &g->tensors[i];
        if (t->nbytes > 0) g_sink += t->data[0] + t->data[t->nbytes - 1];
        tl_ggml_type_info ti = tl_ggml_type_get(t->type);
        if (ti.dequant && t->ne[0] > 0 && t->ne[0] <= 4096 && t->n_elems >= t->ne[0]) { /* a row, if any */
            float row[4096];
            if (tl_ggml_dequant_ref(t->type, t->data, row, t->ne[0]) == 0) g_sink += (uint64_t)(row[0] == row[0]);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tl_error e;
    tl_gguf *g = tl_gguf_parse(data, size, &e);
    if (g) touch(g);
    tl_gguf_free(g);
    if (!g || g_fd < 0) return 0; /* the loader only sees files the reader accepts */
    if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size) return 0;
    tl_model *m = tl_calloc(1, sizeof *m);
    tl_load_opts o = {0};
    if (tl_load_gguf(m, g_path, &o, &e) == 0) g_sink += (uint64_t)tl_model_check_shapes(m, &e);
    tl_model_free(m);
    return 0;
}

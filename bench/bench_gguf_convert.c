/* bench_gguf_convert.c: load-time conversion speed of GGUF block types into tinyllm layouts
 * (tl_ggml_convert), on N threads (argument, default 1), on a [4096, 4096] matrix of random blocks per type.
 * Prints MB/s of GGUF input and Mweights/s. Not a test; the machine may be loaded (2 shared
 * cores on the dev boxes), so compare numbers from the same run only. */
#include <stdio.h>

#include "core/pool.h"
#include "quant/ggml_types.h"

int main(int argc, char **argv) {
    int64_t rows = 4096, cols = 4096;
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    tl_pool *pool = threads > 1 ? tl_pool_create(threads) : NULL;
    const uint32_t types[] = {TL_GGML_Q8_0, TL_GGML_Q4_0, TL_GGML_Q4_1, TL_GGML_Q5_0, TL_GGML_Q5_1,
                              TL_GGML_Q4_K, TL_GGML_Q5_K, TL_GGML_Q6_K};
    printf("tl_ggml_convert, [%lld, %lld], %d thread(s) (machine may be loaded)\n", (long long)rows, (long long)cols, threads);
    unsigned long long s = 1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        tl_ggml_type_info ti = tl_ggml_type_get(types[i]);
        int64_t nb = tl_ggml_nbytes(types[i], rows * cols);
        uint8_t *src = malloc((size_t)nb);
        for (int64_t k = 0; k < nb; k++) src[k] = (uint8_t)((s = s * 6364136223846793005ULL + 1442695040888963407ULL) >> 56);
        for (int64_t b = 0; b < nb / ti.block_bytes; b++) { /* finite fp16 scales */
            uint8_t *p = src + b * ti.block_bytes + (types[i] == TL_GGML_Q6_K ? 208 : 0);
            p[0] = 0x00, p[1] = 0x20;
            if (types[i] == TL_GGML_Q4_1 || types[i] == TL_GGML_Q5_1 || types[i] == TL_GGML_Q4_K || types[i] == TL_GGML_Q5_K)
                p[2] = 0x00, p[3] = 0x20;
        }
        tl_tensor t;
        tl_error e;
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = tl_now();
            if (tl_ggml_convert(types[i], src, rows, cols, &t, NULL, pool, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
            double dt = tl_now() - t0;
            best = dt < best ? dt : best;
            tl_aligned_free(t.owned);
        }
        printf("%-5s -> %-4s  %8.1f MB/s in  %8.1f Mweights/s\n", ti.name, types[i] == TL_GGML_Q4_0 || types[i] == TL_GGML_Q4_1 || types[i] == TL_GGML_Q4_K ? "int4" : "int8",
               nb / best / 1e6, rows * cols / best / 1e6);
        free(src);
    }
    tl_pool_free(pool);
    return 0;
}

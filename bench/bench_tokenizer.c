/* bench_tokenizer.c: encode speed of a ~100 KB prompt (mixed English prose, code, CJK, emoji,
 * whitespace runs), one thread. Prints load time, encode ms (best of N, wall and thread CPU time),
 * MB/s, tokens/s and decode ms.  usage: bench_tokenizer [PATH] [KB] [RUNS] */
#include <time.h>

#include "tokenizer/tokenizer.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *PARTS[] = {
    "The quick brown fox jumps over the lazy dog. It's a well-known pangram; we'll use it 1000 times. ",
    "def encode(self, text: str) -> list[int]:\n    return [self.vocab[t] for t in text.split()]\n\n",
    "Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。",
    "    for (int i = 0; i < n; i++) { sum += x[i] * w[i]; }   // 2024-11-26\n",
    "🤗 emoji 👨‍👩‍👧 ✓ — «quotes» and naïve café Straße; Привет, мир! こんにちは世界 안녕하세요 ",
    "\n\n\t\t    \r\n",
};

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "../shared/assets/qwen2.5-tokenizer";
    size_t kb = argc > 2 ? (size_t)atoi(argv[2]) : 100;
    int runs = argc > 3 ? atoi(argv[3]) : 10;
    tl_error e;
    double t0 = tl_now(), c0 = cpu_now();
    tl_tokenizer *t = tl_tokenizer_load(path, &e);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
        return 1;
    }
    printf("load %s: %.0f ms wall, %.0f ms cpu\n", path, (tl_now() - t0) * 1e3, (cpu_now() - c0) * 1e3);
    size_t cap = kb * 1024, n = 0;
    char *text = malloc(cap + 256);
    for (unsigned k = 0; n < cap; k = k * 1103515245u + 12345u) {
        const char *p = PARTS[(k >> 16) % (sizeof PARTS / sizeof PARTS[0])];
        size_t l = strlen(p);
        memcpy(text + n, p, l);
        n += l;
    }
    double best = 1e9, best_cpu = 1e9;
    int nt = 0;
    int32_t *ids = NULL;
    for (int r = 0; r < runs; r++) {
        free(ids);
        t0 = tl_now(), c0 = cpu_now();
        nt = tl_tokenizer_encode(t, text, n, true, &ids, &e);
        double w = tl_now() - t0, c = cpu_now() - c0;
        if (nt < 0) return fprintf(stderr, "bench_tokenizer: %s\n", e.msg), 1;
        if (w < best) best = w;
        if (c < best_cpu) best_cpu = c;
    }
    printf("encode %zu bytes -> %d tokens: best of %d: %.2f ms wall, %.2f ms cpu (%.1f MB/s, %.2f M tok/s cpu)\n", n,
           nt, runs, best * 1e3, best_cpu * 1e3, (double)n / best_cpu / 1e6, nt / best_cpu / 1e6);
    c0 = cpu_now();
    char *s = tl_tokenizer_decode(t, ids, nt, false);
    printf("decode %d tokens: %.2f ms cpu, round trip %s\n", nt, (cpu_now() - c0) * 1e3,
           strlen(s) == n && !memcmp(s, text, n) ? "exact" : "differs (NFC)");
    free(s);
    free(ids);
    free(text);
    tl_tokenizer_free(t);
    return 0;
}

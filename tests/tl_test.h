/* tl_test.h: a tiny test harness. Each test binary ends with TL_TEST_END(), which prints the
 * plain closing line "N passed, N failed" and exits non-zero on any failure. */
#ifndef TL_TEST_H
#define TL_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tl_t_pass, tl_t_fail;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            tl_t_pass++;                                                          \
        } else {                                                                  \
            tl_t_fail++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, " " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

#define TL_TEST_END()                                                             \
    do {                                                                          \
        printf("%d passed, %d failed\n", tl_t_pass, tl_t_fail);                   \
        return tl_t_fail ? 1 : 0;                                                 \
    } while (0)

/* Path under the shared/ folder (TL_SHARED, default ../shared). Static buffer. */
static inline const char *tl_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("TL_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "../shared", rel);
    return buf;
}

/* Max |a-b| / max(max|b|, tiny) over n floats. */
static inline double tl_rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / mb;
}

/* Deterministic RNG for tests (splitmix64). */
static inline unsigned long long tl_t_rng(unsigned long long *s) {
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline float tl_t_randf(unsigned long long *s) { /* uniform [-1, 1) */
    return (float)((tl_t_rng(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
#endif

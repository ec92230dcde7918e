/* core.h: errors, logging, timers, checked allocation, fp16/bf16 conversion.
 * Three tiers of failure (STYLE.md): TL_ASSERT for broken invariants (always on);
 * tl_error + return -1 for bad input; die-with-hint only in a tool's main. */
#ifndef TL_CORE_H
#define TL_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An error message carried back to the caller. Functions that can fail on bad input take a
 * tl_error* (may be NULL) and return -1 (or NULL) after filling it. */
typedef struct tl_error {
    char msg[512];
} tl_error;

/* Formats the message into e (if non-NULL) and returns -1, so callers can `return tl_errf(...)`. */
int tl_errf(tl_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Always-on invariant check: prints file:line and aborts. Never used for bad input. */
#define TL_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) tl_panic(__FILE__, __LINE__, "assertion failed: %s", #cond);      \
    } while (0)
_Noreturn void tl_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logging to stderr. Level from TL_LOG env: 0 quiet, 1 warn, 2 info (default), 3 debug. */
enum { TL_LOG_WARN = 1, TL_LOG_INFO = 2, TL_LOG_DEBUG = 3 };
void tl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tl_warn(...) tl_log(TL_LOG_WARN, __VA_ARGS__)
#define tl_info(...) tl_log(TL_LOG_INFO, __VA_ARGS__)
#define tl_debug(...) tl_log(TL_LOG_DEBUG, __VA_ARGS__)
void tl_log_set_level(int level);

/* Checked allocation: these abort with a message on out-of-memory (an invariant for us:
 * budgets are computed up front). Aligned variant returns 64-byte aligned memory. */
void *tl_malloc(size_t n);
void *tl_calloc(size_t n, size_t size);
void *tl_realloc(void *p, size_t n);
void *tl_aligned_alloc(size_t n); /* free with tl_aligned_free */
void tl_aligned_free(void *p);
char *tl_strdup(const char *s);

/* Monotonic time in seconds. */
double tl_now(void);

/* Reads a whole file into a NUL-terminated buffer. Returns NULL and fills e on failure. */
char *tl_read_file(const char *path, size_t *len, tl_error *e);

/* ---- fp16 / bf16 <-> fp32 (scalar; SIMD kernels use their own intrinsics) ---- */
static inline float tl_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t tl_f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float tl_f16_to_f32(uint16_t h);
uint16_t tl_f32_to_f16(float f);

#define TL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TL_CDIV(a, b) (((a) + (b)-1) / (b))

#endif

/* gguf_write.h: a minimal GGUF v3 writer for tests (builds files byte by byte, independent of
 * the reader under test). Header-only; everything static. */
#ifndef TL_TEST_GGUF_WRITE_H
#define TL_TEST_GGUF_WRITE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gw_buf {
    uint8_t *p;
    size_t n, cap;
} gw_buf;
static inline void gw_bytes(gw_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void gw_le(gw_buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        gw_bytes(b, &c, 1);
    }
}
static inline void gw_rawstr(gw_buf *b, const char *s) {
    gw_le(b, strlen(s), 8);
    gw_bytes(b, s, strlen(s));
}

typedef struct gw {
    gw_buf kv, ti, data;
    uint64_t n_kv, n_t;
    uint32_t align;
} gw;

static inline void gw_key(gw *w, const char *k, uint32_t type) {
    gw_rawstr(&w->kv, k);
    gw_le(&w->kv, type, 4);
    w->n_kv++;
}
static inline void gw_str(gw *w, const char *k, const char *v) { gw_key(w, k, 8), gw_rawstr(&w->kv, v); }
static inline void gw_u32(gw *w, const char *k, uint32_t v) { gw_key(w, k, 4), gw_le(&w->kv, v, 4); }
static inline void gw_bool(gw *w, const char *k, int v) { gw_key(w, k, 7), gw_le(&w->kv, v ? 1 : 0, 1); }
static inline void gw_f32(gw *w, const char *k, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    gw_key(w, k, 6), gw_le(&w->kv, u, 4);
}
static inline void gw_arr_str(gw *w, const char *k, const char *const *s, int n) {
    gw_key(w, k, 9), gw_le(&w->kv, 8, 4), gw_le(&w->kv, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) gw_rawstr(&w->kv, s[i]);
}
static inline void gw_arr_f32(gw *w, const char *k, const float *v, int n) {
    gw_key(w, k, 9), gw_le(&w->kv, 6, 4), gw_le(&w->kv, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        gw_le(&w->kv, u, 4);
    }
}
static inline void gw_arr_i32(gw *w, const char *k, const int32_t *v, int n) {
    gw_key(w, k, 9), gw_le(&w->kv, 5, 4), gw_le(&w->kv, (uint64_t)n, 8);
    for (int i = 0; i < n; i++) gw_le(&w->kv, (uint32_t)v[i], 4);
}
/* A tensor of ne0 x ne1 (ne1 = 0: 1-D) with nbytes of data in ggml type `type`. */
static inline void gw_tensor(gw *w, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, const void *d, size_t nbytes) {
    uint32_t al = w->align ? w->align : 32;
    while (w->data.n % al) gw_le(&w->data, 0, 1);
    gw_rawstr(&w->ti, name);
    gw_le(&w->ti, ne1 ? 2 : 1, 4);
    gw_le(&w->ti, ne0, 8);
    if (ne1) gw_le(&w->ti, ne1, 8);
    gw_le(&w->ti, type, 4);
    gw_le(&w->ti, w->data.n, 8);
    gw_bytes(&w->data, d, nbytes);
    w->n_t++;
}
/* Writes the file; returns 0 on success. Frees the builder. */
static inline int gw_write(gw *w, const char *path) {
    uint32_t al = w->align ? w->align : 32;
    gw_buf f = {0};
    gw_bytes(&f, "GGUF", 4);
    gw_le(&f, 3, 4);
    gw_le(&f, w->n_t, 8);
    gw_le(&f, w->n_kv, 8);
    gw_bytes(&f, w->kv.p, w->kv.n);
    gw_bytes(&f, w->ti.p, w->ti.n);
    while (f.n % al) gw_le(&f, 0, 1);
    gw_bytes(&f, w->data.p, w->data.n);
    FILE *fp = fopen(path, "wb");
    int rc = fp && fwrite(f.p, 1, f.n, fp) == f.n ? 0 : -1;
    if (fp) fclose(fp);
    free(f.p), free(w->kv.p), free(w->ti.p), free(w->data.p);
    memset(w, 0, sizeof *w);
    return rc;
}
#endif

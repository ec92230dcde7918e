/* gguf.c: GGUF reader. A cursor walks the buffer; every read is checked against the end, and
 * the first failure records a message that names the field being read. */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant/ggml_types.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 20)

const char *tl_gguf_vtype_name(uint32_t t) {
    static const char *n[] = {"uint8", "int8",  "uint16", "int16", "uint32", "int32", "float32",
                              "bool",  "string", "array", "uint64", "int64", "float64"};
    return t < sizeof n / sizeof n[0] ? n[t] : "unknown";
}

/* Bytes of one scalar of a value type; 0 for string/array/unknown. */
static int scalar_size(uint32_t t) {
    switch (t) {
    case TL_GGUF_UINT8: case TL_GGUF_INT8: case TL_GGUF_BOOL: return 1;
    case TL_GGUF_UINT16: case TL_GGUF_INT16: return 2;
    case TL_GGUF_UINT32: case TL_GGUF_INT32: case TL_GGUF_FLOAT32: return 4;
    case TL_GGUF_UINT64: case TL_GGUF_INT64: case TL_GGUF_FLOAT64: return 8;
    }
    return 0;
}

typedef struct cursor {
    const uint8_t *buf;
    size_t len, pos;
    tl_error *e;
    char what[160]; /* the field being read, for messages */
} cursor;

static int need(cursor *c, uint64_t n) {
    if (n > c->len - c->pos)
        return tl_errf(c->e, "gguf: truncated file: %s needs %" PRIu64 " bytes at offset %zu, but the file has %zu",
                       c->what, n, c->pos, c->len);
    return 0;
}
static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static int rd_u32(cursor *c, uint32_t *v) {
    if (need(c, 4)) return -1;
    *v = (uint32_t)rd_le(c->buf + c->pos, 4);
    c->pos += 4;
    return 0;
}
static int rd_u64(cursor *c, uint64_t *v) {
    if (need(c, 8)) return -1;
    *v = rd_le(c->buf + c->pos, 8);
    c->pos += 8;
    return 0;
}
static int rd_str(cursor *c, tl_gguf_str *s) {
    uint64_t n;
    if (rd_u64(c, &n)) return -1;
    if (need(c, n)) return -1;
    s->p = (const char *)c->buf + c->pos;
    s->n = n;
    c->pos += n;
    return 0;
}
/* Skips/validates one value of type t (not ARRAY). */
static int skip_value(cursor *c, uint32_t t) {
    if (t == TL_GGUF_STRING) {
        tl_gguf_str s;
        return rd_str(c, &s);
    }
    int sz = scalar_size(t);
    if (!sz) return tl_errf(c->e, "gguf: %s has unknown value type %u", c->what, t);
    if (need(c, (uint64_t)sz)) return -1;
    c->pos += (size_t)sz;
    return 0;
}

static int parse_kv(cursor *c, tl_gguf_kv *kv, uint64_t idx, uint64_t n_kv) {
    snprintf(c->what, sizeof c->what, "metadata key %" PRIu64 " of %" PRIu64, idx, n_kv);
    if (rd_str(c, &kv->key) || rd_u32(c, &kv->type)) return -1;
    snprintf(c->what, sizeof c->what, "metadata '%.*s' (key %" PRIu64 ")", (int)TL_MIN(kv->key.n, 80),
             kv->key.p, idx);
    if (kv->type != TL_GGUF_ARRAY) {
        kv->val = c->buf + c->pos;
        return skip_value(c, kv->type);
    }
    if (rd_u32(c, &kv->arr_type) || rd_u64(c, &kv->arr_n)) return -1;
    if (kv->arr_type == TL_GGUF_ARRAY)
        return tl_errf(c->e, "gguf: %s is an array of arrays (not supported)", c->what);
    kv->val = c->buf + c->pos;
    size_t rest = c->len - c->pos;
    if (kv->arr_type == TL_GGUF_STRING) {
        if (kv->arr_n > rest / 8) /* each string takes at least its 8-byte length */
            return tl_errf(c->e, "gguf: %s: absurd count: %" PRIu64 " strings cannot fit in the %zu bytes left",
                           c->what, kv->arr_n, rest);
        kv->str_off = tl_malloc((size_t)TL_MAX(kv->arr_n, 1) * sizeof(uint64_t));
        size_t start = c->pos;
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            kv->str_off[i] = c->pos - start;
            tl_gguf_str s;
            if (rd_str(c, &s)) return -1;
        }
        return 0;
    }
    int sz = scalar_size(kv->arr_type);
    if (!sz) return tl_errf(c->e, "gguf: %s has unknown array element type %u", c->what, kv->arr_type);
    if (kv->arr_n > rest / (uint64_t)sz)
        return tl_errf(c->e, "gguf: %s: absurd count: %" PRIu64 " elements of %d bytes cannot fit in the %zu bytes left",
                       c->what, kv->arr_n, sz, rest);
    c->pos += (size_t)(kv->arr_n * (uint64_t)sz);
    return 0;
}

static int parse_tensor(cursor *c, tl_gguf_tensor *t, uint64_t idx, uint64_t n) {
    snprintf(c->what, sizeof c->what, "tensor info %" PRIu64 " of %" PRIu64, idx, n);
    if (rd_str(c, &t->name)) return -1;
    snprintf(c->what, sizeof c->what, "tensor '%.*s' (info %" PRIu64 ")", (int)TL_MIN(t->name.n, 80), t->name.p, idx);
    if (rd_u32(c, &t->n_dims)) return -1;
    if (t->n_dims > TL_GGUF_MAX_DIMS)
        return tl_errf(c->e, "gguf: %s has %u dimensions (at most %d)", c->what, t->n_dims, TL_GGUF_MAX_DIMS);
    int64_t ne = 1;
    for (int d = 0; d < TL_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if ((uint32_t)d < t->n_dims && rd_u64(c, &v)) return -1;
        if (v > (uint64_t)INT64_MAX || (v && (uint64_t)ne > (uint64_t)INT64_MAX / v))
            return tl_errf(c->e, "gguf: %s: absurd dimension ne[%d] = %" PRIu64, c->what, d, v);
        t->ne[d] = (int64_t)v;
        ne *= (int64_t)v;
    }
    t->n_elems = ne;
    if (rd_u32(c, &t->type) || rd_u64(c, &t->offset)) return -1;
    tl_ggml_type_info ti = tl_ggml_type_get(t->type);
    if (!ti.name) return tl_errf(c->e, "gguf: %s has unknown ggml type %u", c->what, t->type);
    if (t->ne[0] % ti.block_elems)
        return tl_errf(c->e, "gguf: %s: row length %" PRId64 " is not a multiple of %s's block of %d", c->what,
                       t->ne[0], ti.name, ti.block_elems);
    t->nbytes = tl_ggml_nbytes(t->type, ne);
    if (t->nbytes < 0) return tl_errf(c->e, "gguf: %s: size overflows", c->what);
    return 0;
}

static void gguf_free_parts(tl_gguf *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
}

tl_gguf *tl_gguf_parse(const void *buf, size_t len, tl_error *e) {
    cursor c = {.buf = buf, .len = len, .pos = 0, .e = e};
    snprintf(c.what, sizeof c.what, "the header");
    if (len < 4 || memcmp(buf, "GGUF", 4) != 0) {
        tl_errf(e, "gguf: not a GGUF file (magic is not \"GGUF\")");
        return NULL;
    }
    c.pos = 4;
    tl_gguf *g = tl_calloc(1, sizeof *g);
    g->buf = buf;
    g->len = len;
    if (rd_u32(&c, &g->version)) goto fail;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1) tl_errf(e, "gguf: version 1 is not supported (only 2 and 3)");
        else if ((g->version & 0xffff) == 0) tl_errf(e, "gguf: big-endian file (version %u byte-swapped): not supported", g->version);
        else tl_errf(e, "gguf: unsupported version %u (only 2 and 3)", g->version);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if (rd_u64(&c, &n_tensors) || rd_u64(&c, &n_kv)) goto fail;
    /* a kv takes >= 12 bytes (key length + type + a 1-byte value), a tensor info >= 24 */
    if (n_kv > (len - c.pos) / 13) {
        tl_errf(e, "gguf: absurd count: %" PRIu64 " metadata entries cannot fit in a %zu-byte file (corrupt or truncated)", n_kv, len);
        goto fail;
    }
    if (n_tensors > (len - c.pos) / 24) {
        tl_errf(e, "gguf: absurd count: %" PRIu64 " tensors cannot fit in a %zu-byte file (corrupt or truncated)", n_tensors, len);
        goto fail;
    }
    g->kv = tl_calloc((size_t)TL_MAX(n_kv, 1), sizeof *g->kv);
    g->n_kv = n_kv;
    for (uint64_t i = 0; i < n_kv; i++)
        if (parse_kv(&c, &g->kv[i], i, n_kv)) goto fail;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const tl_gguf_kv *al = tl_gguf_find(g, "general.alignment");
    if (al) {
        int64_t a;
        if (!tl_gguf_kv_int(al, &a) || a <= 0 || a > GGUF_MAX_ALIGNMENT || (a & (a - 1))) {
            tl_errf(e, "gguf: general.alignment must be a power of two up to %u (got type %s)", GGUF_MAX_ALIGNMENT,
                    tl_gguf_vtype_name(al->type));
            goto fail;
        }
        g->alignment = (uint64_t)a;
    }
    g->tensors = tl_calloc((size_t)TL_MAX(n_tensors, 1), sizeof *g->tensors);
    g->n_tensors = n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++)
        if (parse_tensor(&c, &g->tensors[i], i, n_tensors)) goto fail;
    uint64_t ds = ((uint64_t)c.pos + g->alignment - 1) / g->alignment * g->alignment;
    g->data_start = ds;
    for (uint64_t i = 0; i < n_tensors; i++) {
        tl_gguf_tensor *t = &g->tensors[i];
        int nn = (int)TL_MIN(t->name.n, 80);
        if (t->offset % g->alignment) {
            tl_errf(e, "gguf: tensor '%.*s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, nn,
                    t->name.p, t->offset, g->alignment);
            goto fail;
        }
        if (ds > len || t->offset > len - ds || (uint64_t)t->nbytes > len - ds - t->offset) {
            tl_errf(e, "gguf: tensor '%.*s': data [%" PRIu64 ", +%" PRId64 ") runs past the end of the %zu-byte file", nn,
                    t->name.p, ds + t->offset, t->nbytes, len);
            goto fail;
        }
        t->data = g->buf + ds + t->offset;
        for (uint64_t j = 0; j < i; j++)
            if (g->tensors[j].name.n == t->name.n && !memcmp(g->tensors[j].name.p, t->name.p, t->name.n)) {
                tl_errf(e, "gguf: tensor '%.*s' appears twice", nn, t->name.p);
                goto fail;
            }
    }
    return g;
fail:
    gguf_free_parts(g);
    free(g);
    return NULL;
}

tl_gguf *tl_gguf_open(const char *path, tl_error *e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        tl_errf(e, "gguf: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        tl_errf(e, "gguf: %s is not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    if (len < 24) {
        tl_errf(e, "gguf: %s: truncated file (%zu bytes, the header alone takes 24)", path, len);
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        tl_errf(e, "gguf: cannot mmap %s: %s", path, strerror(errno));
        return NULL;
    }
    tl_gguf *g = tl_gguf_parse(p, len, e);
    if (!g) {
        if (e) {
            char m[sizeof e->msg];
            memcpy(m, e->msg, sizeof m);
            tl_errf(e, "%.200s: %.300s", path, m);
        }
        munmap(p, len);
        return NULL;
    }
    g->map = p;
    g->map_len = len;
    return g;
}

void tl_gguf_take_map(tl_gguf *g, void **addr, size_t *len) {
    *addr = g->map;
    *len = g->map_len;
    g->map = NULL;
    g->map_len = 0;
}

void tl_gguf_free(tl_gguf *g) {
    if (!g) return;
    gguf_free_parts(g);
    if (g->map) munmap(g->map, g->map_len);
    free(g);
}

bool tl_gguf_str_eq(tl_gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.n == n && !memcmp(s.p, z, n);
}

const tl_gguf_kv *tl_gguf_find(const tl_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (tl_gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const tl_gguf_tensor *tl_gguf_find_tensor(const tl_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (tl_gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* Reads a scalar of type t at p as int64 or double. */
static bool load_int(uint32_t t, const uint8_t *p, int64_t *out) {
    uint64_t u;
    switch (t) {
    case TL_GGUF_UINT8: case TL_GGUF_BOOL: *out = p[0]; return true;
    case TL_GGUF_INT8: *out = (int8_t)p[0]; return true;
    case TL_GGUF_UINT16: *out = (int64_t)rd_le(p, 2); return true;
    case TL_GGUF_INT16: *out = (int16_t)rd_le(p, 2); return true;
    case TL_GGUF_UINT32: *out = (int64_t)rd_le(p, 4); return true;
    case TL_GGUF_INT32: *out = (int32_t)rd_le(p, 4); return true;
    case TL_GGUF_UINT64:
        u = rd_le(p, 8);
        if (u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)u;
        return true;
    case TL_GGUF_INT64: *out = (int64_t)rd_le(p, 8); return true;
    }
    return false;
}
static bool load_float(uint32_t t, const uint8_t *p, double *out) {
    if (t == TL_GGUF_FLOAT32) {
        uint32_t u = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        *out = f;
        return true;
    }
    if (t == TL_GGUF_FLOAT64) {
        uint64_t u = rd_le(p, 8);
        memcpy(out, &u, 8);
        return true;
    }
    int64_t i;
    if (t == TL_GGUF_BOOL || !load_int(t, p, &i)) return false;
    *out = (double)i;
    return true;
}

bool tl_gguf_kv_int(const tl_gguf_kv *kv, int64_t *out) { return kv && load_int(kv->type, kv->val, out); }
bool tl_gguf_kv_float(const tl_gguf_kv *kv, double *out) { return kv && load_float(kv->type, kv->val, out); }
bool tl_gguf_kv_str(const tl_gguf_kv *kv, tl_gguf_str *out) {
    if (!kv || kv->type != TL_GGUF_STRING) return false;
    out->n = rd_le(kv->val, 8);
    out->p = (const char *)kv->val + 8;
    return true;
}
bool tl_gguf_arr_int(const tl_gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!kv || kv->type != TL_GGUF_ARRAY || i >= kv->arr_n || !scalar_size(kv->arr_type)) return false;
    return load_int(kv->arr_type, kv->val + i * (uint64_t)scalar_size(kv->arr_type), out);
}
bool tl_gguf_arr_float(const tl_gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || kv->type != TL_GGUF_ARRAY || i >= kv->arr_n || !scalar_size(kv->arr_type)) return false;
    return load_float(kv->arr_type, kv->val + i * (uint64_t)scalar_size(kv->arr_type), out);
}
bool tl_gguf_arr_str(const tl_gguf_kv *kv, uint64_t i, tl_gguf_str *out) {
    if (!kv || kv->type != TL_GGUF_ARRAY || kv->arr_type != TL_GGUF_STRING || i >= kv->arr_n) return false;
    const uint8_t *p = kv->val + kv->str_off[i];
    out->n = rd_le(p, 8);
    out->p = (const char *)p + 8;
    return true;
}

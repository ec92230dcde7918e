/* gguf.h: a GGUF (v2, v3) reader over a byte buffer or an mmapped file.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x {string key,
 * u32 value type, value}, n_tensors x {string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 * u64 offset}, padding to `general.alignment` (default 32), then the tensor data; each tensor's
 * offset is relative to the data start and a multiple of the alignment. A string is u64 length +
 * bytes (no NUL). An array is u32 element type + u64 count + elements.
 *
 * Every count, length, offset and size is checked against the buffer: a malformed file gives -1 /
 * NULL with a message naming what is wrong, never a read outside the buffer. Strings, values and
 * tensor data point into the buffer, which must outlive the tl_gguf. */
#ifndef TL_GGUF_H
#define TL_GGUF_H

#include "core/core.h"

enum {
    TL_GGUF_UINT8 = 0, TL_GGUF_INT8 = 1, TL_GGUF_UINT16 = 2, TL_GGUF_INT16 = 3,
    TL_GGUF_UINT32 = 4, TL_GGUF_INT32 = 5, TL_GGUF_FLOAT32 = 6, TL_GGUF_BOOL = 7,
    TL_GGUF_STRING = 8, TL_GGUF_ARRAY = 9, TL_GGUF_UINT64 = 10, TL_GGUF_INT64 = 11,
    TL_GGUF_FLOAT64 = 12,
};
const char *tl_gguf_vtype_name(uint32_t t);

#define TL_GGUF_MAX_DIMS 4

typedef struct tl_gguf_str { /* not NUL-terminated; points into the buffer */
    const char *p;
    uint64_t n;
} tl_gguf_str;

typedef struct tl_gguf_kv {
    tl_gguf_str key;
    uint32_t type;         /* value type (TL_GGUF_*) */
    uint32_t arr_type;     /* ARRAY: element type (never ARRAY: nested arrays are rejected) */
    uint64_t arr_n;        /* ARRAY: element count */
    const uint8_t *val;    /* the value; for an ARRAY its first element */
    uint64_t *str_off;     /* ARRAY of STRING: [arr_n] offsets from val of each element (owned) */
} tl_gguf_kv;

typedef struct tl_gguf_tensor {
    tl_gguf_str name;
    uint32_t n_dims;
    int64_t ne[TL_GGUF_MAX_DIMS]; /* ne[0]: contiguous dim (a matrix's input dim); unused dims = 1 */
    uint32_t type;                /* ggml type (quant/ggml_types.h) */
    uint64_t offset;              /* relative to the data start */
    int64_t n_elems, nbytes;
    const uint8_t *data;          /* into the buffer */
} tl_gguf_tensor;

typedef struct tl_gguf {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    tl_gguf_kv *kv;               /* [n_kv] */
    tl_gguf_tensor *tensors;      /* [n_tensors] */
    uint64_t alignment, data_start;
    const uint8_t *buf;
    size_t len;
    void *map;                    /* tl_gguf_open's mmap (NULL after tl_gguf_take_map or for parse) */
    size_t map_len;
} tl_gguf;

/* Parses buf[0..len) (not copied). */
tl_gguf *tl_gguf_parse(const void *buf, size_t len, tl_error *e);
/* mmaps the file read-only and parses it; the mapping is unmapped by tl_gguf_free unless taken. */
tl_gguf *tl_gguf_open(const char *path, tl_error *e);
/* Hands the mapping's ownership to the caller (munmap(addr, len) later). */
void tl_gguf_take_map(tl_gguf *g, void **addr, size_t *len);
void tl_gguf_free(tl_gguf *g);

const tl_gguf_kv *tl_gguf_find(const tl_gguf *g, const char *key);
const tl_gguf_tensor *tl_gguf_find_tensor(const tl_gguf *g, const char *name);
bool tl_gguf_str_eq(tl_gguf_str s, const char *z);

/* Scalar values. Each returns false when the kv is NULL or of another kind. int: any integer
 * type or bool (a u64 above INT64_MAX fails); float: any integer or float type. */
bool tl_gguf_kv_int(const tl_gguf_kv *kv, int64_t *out);
bool tl_gguf_kv_float(const tl_gguf_kv *kv, double *out);
bool tl_gguf_kv_str(const tl_gguf_kv *kv, tl_gguf_str *out);
/* Array elements (i < arr_n), same conversions. */
bool tl_gguf_arr_int(const tl_gguf_kv *kv, uint64_t i, int64_t *out);
bool tl_gguf_arr_float(const tl_gguf_kv *kv, uint64_t i, double *out);
bool tl_gguf_arr_str(const tl_gguf_kv *kv, uint64_t i, tl_gguf_str *out);

/* The tokenizer a GGUF file carries (tokenizer.ggml.*: model gpt2 or llama; implemented in
 * model/load_gguf.c). Returns 0 with *out NULL when the file has no token list, -1 on error. */
struct tl_tokenizer;
int tl_gguf_tokenizer(const tl_gguf *g, struct tl_tokenizer **out, tl_error *e);

#endif

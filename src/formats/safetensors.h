/* safetensors.h: memory-mapped safetensors files, single or sharded (model.safetensors.index.json).
 * File layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data region; offsets are relative to the data region. Every field is bounds-checked. */
#ifndef TL_SAFETENSORS_H
#define TL_SAFETENSORS_H

#include "core/core.h"

typedef enum { TL_ST_F32, TL_ST_F16, TL_ST_BF16, TL_ST_F64, TL_ST_U32, TL_ST_I32, TL_ST_I64, TL_ST_U8, TL_ST_I8,
               TL_ST_BOOL } tl_st_dtype;

typedef struct tl_st_tensor {
    char *name;
    tl_st_dtype dtype;
    int n_dims;
    int64_t shape[4];
    size_t nbytes;
    const void *data;      /* points into the mapping */
} tl_st_tensor;

typedef struct tl_st_file {
    char *path;
    void *map;
    size_t size;
    int n;
    tl_st_tensor *t;       /* [n] */
} tl_st_file;

/* A set of files: one model.safetensors, or the shards listed by an index. */
typedef struct tl_st_set {
    int n_files;
    tl_st_file *files;
} tl_st_set;

int tl_st_open(tl_st_file *f, const char *path, tl_error *e);
void tl_st_close(tl_st_file *f);
/* Parses a safetensors image held in memory (buf[size], borrowed: tensors point into it; f->map
 * stays NULL). name labels messages. For fuzzing and tests; tl_st_close frees the rest. */
int tl_st_parse(tl_st_file *f, const void *buf, size_t size, const char *name, tl_error *e);
/* Opens dir/model.safetensors.index.json's shards if present, else dir/model.safetensors. */
int tl_st_open_dir(tl_st_set *s, const char *dir, tl_error *e);
void tl_st_close_set(tl_st_set *s);
const tl_st_tensor *tl_st_find(const tl_st_set *s, const char *name);
size_t tl_st_dtype_size(tl_st_dtype t);
const char *tl_st_dtype_name(tl_st_dtype t);

#endif

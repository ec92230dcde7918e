/* safetensors.c: mmap + header validation. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    tl_st_dtype t;
    size_t size;
} dtypes[] = {
    {"F32", TL_ST_F32, 4}, {"F16", TL_ST_F16, 2}, {"BF16", TL_ST_BF16, 2}, {"F64", TL_ST_F64, 8},
    {"U32", TL_ST_U32, 4}, {"I32", TL_ST_I32, 4}, {"I64", TL_ST_I64, 8},   {"U8", TL_ST_U8, 1},
    {"I8", TL_ST_I8, 1},   {"BOOL", TL_ST_BOOL, 1},
};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

size_t tl_st_dtype_size(tl_st_dtype t) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtypes[i].t == t) return dtypes[i].size;
    return 0;
}
const char *tl_st_dtype_name(tl_st_dtype t) {
    for (int i = 0; i < N_DTYPES; i++)
        if (dtypes[i].t == t) return dtypes[i].name;
    return "?";
}

static int parse_header(tl_st_file *f, const void *base, const char *json, size_t len, size_t data_off, tl_error *e) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return tl_errf(e, "%s: bad safetensors header JSON: %s (line %d)", f->path, je.text, je.line);
    if (!json_is_object(root)) {
        json_decref(root);
        return tl_errf(e, "%s: safetensors header is not a JSON object", f->path);
    }
    size_t data_size = f->size - data_off;
    f->t = tl_calloc(json_object_size(root) + 1, sizeof(tl_st_tensor));
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        tl_st_tensor *t = &f->t[f->n];
        json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
               *offs = json_object_get(v, "data_offsets");
        if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
            json_array_size(offs) != 2) {
            rc = tl_errf(e, "%s: tensor '%s': missing or malformed dtype/shape/data_offsets", f->path, key);
            break;
        }
        int found = 0;
        for (int i = 0; i < N_DTYPES; i++)
            if (!strcmp(json_string_value(dt), dtypes[i].name)) {
                t->dtype = dtypes[i].t;
                found = 1;
            }
        if (!found) {
            rc = tl_errf(e, "%s: tensor '%s': unsupported dtype %s", f->path, key, json_string_value(dt));
            break;
        }
        size_t nd = json_array_size(shape);
        if (nd > 4) {
            rc = tl_errf(e, "%s: tensor '%s': %zu dimensions (at most 4 supported)", f->path, key, nd);
            break;
        }
        t->n_dims = (int)nd;
        unsigned __int128 count = 1;
        for (size_t i = 0; i < nd; i++) {
            json_t *d = json_array_get(shape, i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) {
                rc = tl_errf(e, "%s: tensor '%s': bad shape", f->path, key);
                break;
            }
            t->shape[i] = json_integer_value(d);
            count *= (uint64_t)t->shape[i];
            if (count > ((unsigned __int128)1 << 64)) { /* the product would wrap 128 bits by the 4th dim */
                rc = tl_errf(e, "%s: tensor '%s': shape has more than 2^64 elements", f->path, key);
                break;
            }
        }
        if (rc) break;
        json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
        if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
            json_integer_value(en) < json_integer_value(b)) {
            rc = tl_errf(e, "%s: tensor '%s': bad data_offsets", f->path, key);
            break;
        }
        uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
        if (end > data_size) {
            rc = tl_errf(e, "%s: tensor '%s': data [%llu, %llu) runs past the end of the file (data region %zu bytes; "
                            "truncated file?)", f->path, key, (unsigned long long)begin, (unsigned long long)end, data_size);
            break;
        }
        if (count * tl_st_dtype_size(t->dtype) != (unsigned __int128)(end - begin)) {
            rc = tl_errf(e, "%s: tensor '%s': shape and dtype need %llu bytes but data_offsets give %llu", f->path, key,
                         (unsigned long long)(count * tl_st_dtype_size(t->dtype)), (unsigned long long)(end - begin));
            break;
        }
        t->nbytes = end - begin;
        t->data = (const char *)base + data_off + begin;
        t->name = tl_strdup(key);
        f->n++;
    }
    json_decref(root);
    return rc;
}

/* The 8-byte length, then the header; base holds f->size bytes (f->size >= 8). */
static int parse_file(tl_st_file *f, const void *base, tl_error *e) {
    uint64_t n;
    memcpy(&n, base, 8);
    if (n > f->size - 8 || n > (100u << 20))
        return tl_errf(e, "%s: header length %llu does not fit the file (%zu bytes): truncated or not safetensors",
                       f->path, (unsigned long long)n, f->size);
    return parse_header(f, base, (const char *)base + 8, (size_t)n, 8 + (size_t)n, e);
}

int tl_st_open(tl_st_file *f, const char *path, tl_error *e) {
    memset(f, 0, sizeof *f);
    f->path = tl_strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        tl_errf(e, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 8) {
        close(fd);
        tl_errf(e, "%s: not a safetensors file (shorter than its 8-byte header length)", path);
        goto fail;
    }
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        tl_errf(e, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    if (parse_file(f, f->map, e) != 0) goto fail;
    return 0;
fail:
    tl_st_close(f);
    return -1;
}

int tl_st_parse(tl_st_file *f, const void *buf, size_t size, const char *name, tl_error *e) {
    memset(f, 0, sizeof *f);
    f->path = tl_strdup(name ? name : "<memory>");
    f->size = size;
    if (size < 8) {
        tl_errf(e, "%s: not a safetensors file (shorter than its 8-byte header length)", f->path);
        tl_st_close(f);
        return -1;
    }
    if (parse_file(f, buf, e) != 0) {
        tl_st_close(f);
        return -1;
    }
    return 0;
}

void tl_st_close(tl_st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int tl_st_open_dir(tl_st_set *s, const char *dir, tl_error *e) {
    memset(s, 0, sizeof *s);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, R_OK) == 0) {
        json_error_t je;
        json_t *root = json_load_file(path, 0, &je);
        json_t *map = root ? json_object_get(root, "weight_map") : NULL;
        if (!json_is_object(map)) {
            json_decref(root);
            return tl_errf(e, "%s: bad index (no weight_map object)%s%s", path, root ? "" : ": ", root ? "" : je.text);
        }
        const char *key;
        json_t *v;
        const char **names = tl_calloc(json_object_size(map) + 1, sizeof(char *));
        int nn = 0;
        json_object_foreach(map, key, v) {
            if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
                free(names);
                json_decref(root);
                return tl_errf(e, "%s: bad shard name for tensor '%s'", path, key);
            }
            int seen = 0;
            for (int i = 0; i < nn; i++) seen |= !strcmp(names[i], json_string_value(v));
            if (!seen) names[nn++] = json_string_value(v);
        }
        s->files = tl_calloc((size_t)nn + 1, sizeof(tl_st_file));
        for (int i = 0; i < nn; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            if (tl_st_open(&s->files[i], path, e) != 0) {
                free(names);
                json_decref(root);
                tl_st_close_set(s);
                return -1;
            }
            s->n_files++;
        }
        free(names);
        json_decref(root);
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    s->files = tl_calloc(1, sizeof(tl_st_file));
    if (tl_st_open(&s->files[0], path, e) != 0) {
        free(s->files);
        s->files = NULL;
        return -1;
    }
    s->n_files = 1;
    return 0;
}

void tl_st_close_set(tl_st_set *s) {
    for (int i = 0; i < s->n_files; i++) tl_st_close(&s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

const tl_st_tensor *tl_st_find(const tl_st_set *s, const char *name) {
    for (int f = 0; f < s->n_files; f++)
        for (int i = 0; i < s->files[f].n; i++)
            if (!strcmp(s->files[f].t[i].name, name)) return &s->files[f].t[i];
    return NULL;
}

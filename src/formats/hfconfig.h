/* hfconfig.h: HF config.json and generation_config.json -> tl_config / defaults. */
#ifndef TL_HFCONFIG_H
#define TL_HFCONFIG_H

#include "model/model.h"

typedef struct tl_hf_quant {
    int bits;          /* 0: not quantized */
    int group_size;
} tl_hf_quant;

/* Parses dir/config.json (required) and dir/generation_config.json (optional). */
int tl_hf_read_config(const char *dir, tl_config *c, tl_hf_quant *q, tl_gen_defaults *g, tl_error *e);
/* Parses a config.json text (for tests and fuzzing); path names the source in messages. */
int tl_hf_parse_config(const char *text, size_t len, const char *path, tl_config *c, tl_hf_quant *q, tl_error *e);

#endif

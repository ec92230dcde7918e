/* tok_internal.h: the tokenizer's private state, shared by the src/tokenizer/ files only.
 * tok_load.c (tokenizer.json + configs), tok_vocab.c (GGUF arrays), tok_bpe.c (byte-level BPE encode),
 * tok_spm.c (SentencePiece-style encode), tok_decode.c (decode + streaming), tok_chat.c (templates),
 * tok_util.c (hash maps, UTF-8, added-token matching). */
#ifndef TL_TOK_INTERNAL_H
#define TL_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

enum { TOK_BPE = 1, TOK_SPM = 2 };
/* per-token attributes */
enum {
    TOK_A_SPECIAL = 1, /* special added token / GGUF control: skipped by decode(skip_special) */
    TOK_A_ADDED = 2,   /* matched in the text before the model runs */
    TOK_A_BYTE = 4,    /* SPM <0xNN> byte token */
    TOK_A_UNUSED = 8,
};
/* chat template families */
enum { TOK_CHAT_CHATML = 1, TOK_CHAT_UNKNOWN = 2 };

/* string -> id, open addressing over (bytes, len) */
typedef struct tok_strmap {
    uint32_t cap; /* power of two */
    int32_t *slot; /* [cap] id or -1 */
    const char **keys; /* [n] keys[id] (NULL: not in the map), key_len[id]; the arrays are owned, */
    const uint32_t *key_len; /* the bytes they point to are borrowed from the tokenizer */
} tok_strmap;

/* (left id, right id) -> (rank, merged id) */
typedef struct tok_pairmap {
    uint32_t cap;
    uint64_t *key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t *rank, *out;
} tok_pairmap;

typedef struct tok_added {
    const char *s; /* content (raw UTF-8) */
    uint32_t len;
    int32_t id;
    bool special, lstrip, rstrip;
} tok_added;

struct tl_tokenizer {
    int kind;
    int n_vocab;             /* highest id + 1 */
    char **piece;            /* [n_vocab] raw bytes a token decodes to (NULL: no token with that id) */
    uint32_t *piece_len;     /* [n_vocab] */
    char **text;             /* [n_vocab] SPM: the token text as in the vocab (U+2581 for space) */
    uint32_t *text_len;      /* [n_vocab] */
    float *score;            /* [n_vocab] SPM scores (or NULL) */
    uint8_t *attr;           /* [n_vocab] TOK_A_* */
    tok_strmap map;          /* BPE: raw bytes -> model id; SPM: text -> id */
    tok_pairmap merges;      /* BPE merges */
    int32_t byte_id[256];    /* BPE: id of the byte-level char of byte b; SPM: <0xNN> (or -1) */
    tok_added *added;        /* [n_added] sorted by first byte, then longest first */
    int n_added;
    int32_t added_idx[257];  /* added[added_idx[b] .. added_idx[b+1]) start with byte b */
    pcre2_code *re;          /* pre-tokenizer Split regex (BPE), or NULL (no split) */
    bool nfc, ignore_merges, add_space_prefix, add_bos;
    int32_t bos, pad, unk;
    int32_t eos[8];
    int n_eos;
    int chat;                /* TOK_CHAT_* */
    char *default_system;    /* NULL: no default system prompt */
    char *src;               /* file name for messages */
};

/* tok_util.c */
void tl_tok_strmap_build(tok_strmap *m, int n, const char *const *keys, const uint32_t *key_len);
int32_t tl_tok_strmap_get(const tok_strmap *m, const char *s, size_t len);
void tl_tok_strmap_free(tok_strmap *m);
void tl_tok_pairmap_init(tok_pairmap *m, int n);
bool tl_tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t out); /* false: duplicate */
bool tl_tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *out);
void tl_tok_pairmap_free(tok_pairmap *m);
/* Length of the valid UTF-8 sequence at s[0..n): 1..4, 0 when incomplete but valid so far (needs more
 * bytes), -k when the first k bytes are an invalid maximal subpart (to be replaced by one U+FFFD). */
int tl_tok_utf8_seq(const unsigned char *s, size_t n);
/* Copies s with each invalid maximal subpart replaced by U+FFFD (as Python's decode("utf-8",
 * "replace") and Rust's from_utf8_lossy). Returns malloc'd, NUL-terminated; *out_len set. */
char *tl_tok_utf8_sanitize(const char *s, size_t n, size_t *out_len);
/* Byte-level (GPT-2) alphabet: the code point standing for byte b, and the inverse (-1: none). */
uint32_t tl_tok_byte_to_cp(int b);
int tl_tok_cp_to_byte(uint32_t cp);
/* Decodes one code point from valid UTF-8; returns its length. */
int tl_tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
int tl_tok_utf8_encode(uint32_t cp, char *out);
/* Byte-level string -> raw bytes (HF ByteLevel decoder: a token with a char outside the alphabet
 * keeps its own UTF-8 bytes). malloc'd, NUL-terminated. */
char *tl_tok_bytelevel_decode(const char *s, size_t n, uint32_t *out_len);
/* Adds merge (a, b) of byte-level strings with this rank; t->map must hold raw-byte keys. */
int tl_tok_add_merge(tl_tokenizer *t, int rank, const char *a, size_t la, const char *b, size_t lb, tl_error *e);
/* Sorts the added tokens and fills added_idx. */
void tl_tok_added_finish(tl_tokenizer *t);
/* Finds the leftmost-longest added token in s[from..n) (special ones only when parse_special).
 * Returns its index in t->added and sets [*start, *end) to the span it covers (lstrip/rstrip
 * included), or -1. */
int tl_tok_added_find(const tl_tokenizer *t, const char *s, size_t n, size_t from, bool parse_special,
                      size_t *start, size_t *end);

/* growable id list */
typedef struct tok_ids {
    int32_t *v;
    int n, cap;
} tok_ids;
static inline void tok_ids_push(tok_ids *l, int32_t id) {
    if (l->n == l->cap) l->v = tl_realloc(l->v, (size_t)(l->cap = l->cap ? l->cap * 2 : 64) * sizeof *l->v);
    l->v[l->n++] = id;
}

/* tok_nfc.c: NFC as HF computes it (see tok_nfc_table.h); malloc'd result or NULL with e filled */
char *tl_tok_nfc(const char *s, size_t n, size_t *out_len, tl_error *e);
/* tok_bpe.c */
int tl_tok_bpe_set_regex(tl_tokenizer *t, const char *pattern, tl_error *e);
const char *tl_tok_pre_regex(const char *pre); /* GGUF tokenizer.ggml.pre -> pattern (NULL: unknown) */
int tl_tok_bpe_encode(const tl_tokenizer *t, const char *s, size_t n, tok_ids *out, tl_error *e);
/* tok_spm.c */
int tl_tok_spm_encode(const tl_tokenizer *t, const char *s, size_t n, bool prefix_space, tok_ids *out);
/* tok_chat.c */
void tl_tok_chat_detect(tl_tokenizer *t, const char *template_text);
/* tok_load.c: allocates per-id arrays for n ids */
void tl_tok_alloc_ids(tl_tokenizer *t, int n);

#endif

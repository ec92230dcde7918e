/* tok_vocab.c: tl_tokenizer_from_vocab: a tokenizer from the arrays a GGUF file carries.
 * "gpt2": byte-level BPE (the tokenizer.json code path; regex by tokenizer.ggml.pre).
 * "llama": SentencePiece style (tok_spm.c). GGUF token types: 1 normal, 2 unknown, 3 control,
 * 4 user-defined, 5 unused, 6 byte. Control tokens are special (matched in text only when
 * parse_special, skipped by decode(skip_special)); user-defined ones are always matched. */
#include "tokenizer/tok_internal.h"

#define MAX_VOCAB (1 << 24)
enum { GT_NORMAL = 1, GT_UNKNOWN = 2, GT_CONTROL = 3, GT_USER = 4, GT_UNUSED = 5, GT_BYTE = 6 };

static int parse_byte_token(const char *s) { /* "<0xNN>" -> NN, else -1 */
    unsigned v;
    char tail;
    if (strlen(s) != 6 || strncmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (sscanf(s + 3, "%2x%c", &v, &tail) != 2 || tail != '>') return -1;
    return (int)v;
}

static void add_added(tl_tokenizer *t, int id, const char *s, bool special) {
    tok_added *a = &t->added[t->n_added++];
    a->s = tl_strdup(s);
    a->len = (uint32_t)strlen(s);
    a->id = id;
    a->special = special;
}

static int build_gpt2(tl_tokenizer *t, const tl_vocab_spec *s, tl_error *e) {
    t->kind = TOK_BPE;
    const char *re = tl_tok_pre_regex(s->pre);
    if (!re) {
        tl_warn("%s: unknown pre-tokenizer \"%s\": using the GPT-2 pattern; token ids may differ from the model's",
                t->src, s->pre);
        re = tl_tok_pre_regex("gpt2");
    }
    if (tl_tok_bpe_set_regex(t, re, e)) return -1;
    t->nfc = s->pre && !strcmp(s->pre, "qwen2"); /* Qwen2's tokenizer.json normalizes to NFC */
    const char **keys = tl_calloc((size_t)t->n_vocab, sizeof *keys);
    for (int i = 0; i < t->n_vocab; i++) {
        int ty = s->token_types ? s->token_types[i] : GT_NORMAL;
        t->piece[i] = tl_tok_bytelevel_decode(s->tokens[i], strlen(s->tokens[i]), &t->piece_len[i]);
        if (ty == GT_CONTROL || ty == GT_USER) {
            t->attr[i] |= TOK_A_ADDED | (ty == GT_CONTROL ? TOK_A_SPECIAL : 0);
            add_added(t, i, s->tokens[i], ty == GT_CONTROL);
        } else {
            keys[i] = t->piece[i];
        }
    }
    tl_tok_strmap_build(&t->map, t->n_vocab, keys, t->piece_len);
    free(keys);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tl_tok_strmap_get(&t->map, &c, 1);
    }
    tl_tok_pairmap_init(&t->merges, s->n_merges);
    for (int i = 0; i < s->n_merges; i++) {
        const char *m = s->merges[i], *sp = m ? strchr(m, ' ') : NULL;
        if (!sp || strchr(sp + 1, ' '))
            return tl_errf(e, "%s: merge %d \"%.64s\" is not two tokens separated by one space", t->src, i, m ? m : "(null)");
        if (tl_tok_add_merge(t, i, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), e)) return -1;
    }
    return 0;
}

static int build_llama(tl_tokenizer *t, const tl_vocab_spec *s, tl_error *e) {
    t->kind = TOK_SPM;
    t->add_space_prefix = !s->no_space_prefix;
    t->text = tl_calloc((size_t)t->n_vocab, sizeof *t->text);
    t->text_len = tl_calloc((size_t)t->n_vocab, sizeof *t->text_len);
    t->score = tl_calloc((size_t)t->n_vocab, sizeof *t->score);
    for (int i = 0; i < t->n_vocab; i++) {
        const char *tok = s->tokens[i];
        int ty = s->token_types ? s->token_types[i] : GT_NORMAL, bv = parse_byte_token(tok);
        t->text[i] = tl_strdup(tok);
        t->text_len[i] = (uint32_t)strlen(tok);
        t->score[i] = s->scores ? s->scores[i] : 0.0f;
        if (ty == GT_BYTE || (ty == GT_NORMAL && !s->token_types && bv >= 0)) {
            if (bv < 0) return tl_errf(e, "%s: byte token %d \"%.32s\" is not of the form <0xNN>", t->src, i, tok);
            t->attr[i] |= TOK_A_BYTE;
            t->piece[i] = tl_malloc(2);
            t->piece[i][0] = (char)bv;
            t->piece[i][1] = 0;
            t->piece_len[i] = 1;
            continue;
        }
        if (ty == GT_UNKNOWN) { /* shown as U+2585, as llama.cpp does */
            t->piece[i] = tl_strdup("\xE2\x96\x85");
            t->piece_len[i] = 3;
            continue;
        }
        /* U+2581 -> ' ' */
        size_t n = strlen(tok), o = 0;
        char *p = tl_malloc(n + 1);
        for (size_t j = 0; j < n;) {
            if (j + 3 <= n && !memcmp(tok + j, "\xE2\x96\x81", 3)) p[o++] = ' ', j += 3;
            else p[o++] = tok[j++];
        }
        p[o] = 0;
        t->piece[i] = p;
        t->piece_len[i] = (uint32_t)o;
        if (ty == GT_CONTROL || ty == GT_USER) {
            t->attr[i] |= TOK_A_ADDED | (ty == GT_CONTROL ? TOK_A_SPECIAL : 0);
            add_added(t, i, tok, ty == GT_CONTROL);
        }
    }
    tl_tok_strmap_build(&t->map, t->n_vocab, (const char *const *)t->text, t->text_len);
    for (int b = 0; b < 256; b++) {
        char name[8], c = (char)b;
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tl_tok_strmap_get(&t->map, name, 6);
        t->byte_id[b] = id >= 0 ? id : tl_tok_strmap_get(&t->map, &c, 1);
    }
    return 0;
}

tl_tokenizer *tl_tokenizer_from_vocab(const tl_vocab_spec *s, tl_error *e) {
    if (e) e->msg[0] = 0;
    if (!s || !s->model) return tl_errf(e, "gguf tokenizer: no tokenizer.ggml.model"), NULL;
    if (s->n_tokens <= 0 || s->n_tokens > MAX_VOCAB || !s->tokens)
        return tl_errf(e, "gguf tokenizer: bad token count %d", s->n_tokens), NULL;
    for (int i = 0; i < s->n_tokens; i++)
        if (!s->tokens[i]) return tl_errf(e, "gguf tokenizer: token %d is missing", i), NULL;
    if (s->n_merges < 0 || (s->n_merges > 0 && !s->merges))
        return tl_errf(e, "gguf tokenizer: bad merge count %d", s->n_merges), NULL;
    tl_tokenizer *t = tl_calloc(1, sizeof *t);
    t->src = tl_strdup("gguf tokenizer");
    tl_tok_alloc_ids(t, s->n_tokens);
    t->added = tl_calloc((size_t)s->n_tokens, sizeof *t->added);
    int rc;
    if (!strcmp(s->model, "gpt2")) rc = build_gpt2(t, s, e);
    else if (!strcmp(s->model, "llama")) rc = build_llama(t, s, e);
    else rc = tl_errf(e, "gguf tokenizer: model \"%s\" is not supported (only gpt2 and llama)", s->model);
    if (rc) {
        tl_tokenizer_free(t);
        return NULL;
    }
    tl_tok_added_finish(t);
    int n = t->n_vocab;
    t->bos = s->bos >= 0 && s->bos < n ? s->bos : -1;
    t->unk = s->unk >= 0 && s->unk < n ? s->unk : -1;
    t->pad = s->pad >= 0 && s->pad < n ? s->pad : -1;
    if (s->eos >= 0 && s->eos < n) t->eos[t->n_eos++] = s->eos;
    t->add_bos = s->add_bos && t->bos >= 0;
    tl_tok_chat_detect(t, s->chat_template);
    return t;
}

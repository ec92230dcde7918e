/* fuzz_tokenizer.c: libFuzzer target for the tokenizer. The first byte picks a mode:
 *  0: encode the rest with Qwen2.5's tokenizer.json (parse_special on/off), decode the ids, check the
 *     streaming detokenizer gives the same text and never emits invalid UTF-8;
 *  1: decode the rest as a list of int32 ids (any values) both ways, and stream them;
 *  2: the same as 0 on a crafted SentencePiece-style vocab;
 *  3: build a vocab (gpt2 or llama) from the rest: tokens split at '\n', the second half as merges.
 * Build: CC=clang cmake -S . -B build-fuzz -DTL_FUZZ=ON && cmake --build build-fuzz --target fuzz_tokenizer
 * Run:   TL_SHARED=../shared build-fuzz/fuzz_tokenizer -max_total_time=60 -max_len=4096 */
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"

static tl_tokenizer *qwen, *spm;

static bool valid(const char *s, size_t n) {
    return utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, NULL, 0, 0) >= 0;
}

static tl_tokenizer *make_spm(void) {
    static char names[256][8];
    static const char *toks[262];
    static float scores[262];
    static int32_t types[262];
    toks[0] = "<unk>", types[0] = 2;
    toks[1] = "<s>", types[1] = 3;
    for (int b = 0; b < 256; b++) snprintf(names[b], 8, "<0x%02X>", b), toks[2 + b] = names[b], types[2 + b] = 6;
    const char *p[] = {"\xE2\x96\x81", "a", ("\xE2\x96\x81" "a"), "<u>"};
    for (int i = 0; i < 4; i++) toks[258 + i] = p[i], scores[258 + i] = (float)-i, types[258 + i] = i == 3 ? 4 : 1;
    tl_vocab_spec s = {.model = "llama", .n_tokens = 262, .tokens = toks, .scores = scores, .token_types = types,
                       .bos = 1, .eos = -1, .unk = 0, .pad = -1, .add_bos = true};
    return tl_tokenizer_from_vocab(&s, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *root = getenv("TL_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/assets/qwen2.5-tokenizer", root ? root : "../shared");
    tl_error e;
    qwen = tl_tokenizer_load(path, &e);
    if (!qwen) {
        fprintf(stderr, "fuzz_tokenizer: %s (set TL_SHARED)\n", e.msg);
        abort();
    }
    spm = make_spm();
    tl_log_set_level(0);
    return 0;
}

static void stream_check(const tl_tokenizer *t, const int32_t *ids, int n, bool skip, bool is_spm) {
    size_t len, dl;
    char *full = tl_tokenizer_decode_n(t, ids, n, skip, &dl);
    if (!valid(full, dl)) abort();
    tl_detok *d = tl_detok_new(t, skip);
    char *acc = malloc(dl + 16);
    size_t an = 0;
    bool after_bos_rule = false;
    for (int i = 0; i < n; i++) {
        const char *o = tl_detok_push(d, ids[i], &len);
        if (!valid(o, len) || an + len > dl + 8) abort();
        memcpy(acc + an, o, len), an += len;
    }
    const char *o = tl_detok_flush(d, &len);
    if (an + len > dl + 8) abort();
    memcpy(acc + an, o, len), an += len;
    /* SPM: decode drops the first token's leading space, the stream keeps it */
    after_bos_rule = is_spm && an == dl + 1 && acc[0] == ' ' && !memcmp(acc + 1, full, dl);
    if (!(an == dl && !memcmp(acc, full, dl)) && !after_bos_rule) abort();
    tl_detok_free(d);
    free(acc);
    free(full);
}

static void encode_check(const tl_tokenizer *t, const char *s, size_t n, bool is_spm) {
    for (int sp = 0; sp < 2; sp++) {
        int32_t *ids;
        tl_error e;
        int k = tl_tokenizer_encode(t, s, n, sp, &ids, &e);
        if (k < 0) abort(); /* valid tokenizer: any bytes must encode */
        for (int i = 0; i < k; i++)
            if (ids[i] < 0 || ids[i] >= tl_tokenizer_n_vocab(t)) abort();
        stream_check(t, ids, k, sp, is_spm);
        free(ids);
    }
}

static void vocab_check(const char *s, size_t n) {
    if (n < 2) return;
    char *buf = malloc(n + 1);
    memcpy(buf, s + 1, n - 1);
    buf[n - 1] = 0;
    const char *toks[64], *merges[64];
    int nt = 0, nm = 0;
    for (char *p = buf, *q; p && nt + nm < 64; p = q) {
        q = strchr(p, '\n');
        if (q) *q++ = 0;
        if (nt < 32) toks[nt++] = p;
        else merges[nm++] = p;
    }
    tl_vocab_spec v = {.model = (s[0] & 1) ? "llama" : "gpt2", .pre = (s[0] & 2) ? "qwen2" : NULL, .n_tokens = nt,
                       .tokens = toks, .n_merges = nm, .merges = merges, .bos = 0, .eos = 1, .unk = 2, .pad = -1};
    tl_error e;
    tl_tokenizer *t = tl_tokenizer_from_vocab(&v, &e);
    if (t) {
        encode_check(t, buf, strlen(buf), s[0] & 1);
        tl_tokenizer_free(t);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0: encode_check(qwen, s, n, false); break;
    case 1: {
        int k = (int)(n / 4);
        int32_t *ids = malloc(sizeof *ids * (size_t)(k + 1));
        memcpy(ids, s, (size_t)k * 4);
        for (int i = 0; i < k; i++) ids[i] = (int32_t)((uint32_t)ids[i] % 160000u) - (ids[i] < 0 ? 5 : 0);
        stream_check(qwen, ids, k, data[0] & 4, false);
        stream_check(spm, ids, k, data[0] & 4, true);
        free(ids);
        break;
    }
    case 2: encode_check(spm, s, n, true); break;
    case 3: vocab_check(s, n); break;
    }
    return 0;
}

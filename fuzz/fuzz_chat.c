/* fuzz_chat.c: libFuzzer target for chat-template detection and rendering (tl_chat_render), and the
 * encode/decode of what it renders.
 * Input: byte 0 flags (bit 0: add_generation_prompt), then fields split by 0x1e: the chat template
 * given to a small SentencePiece-style vocab (tl_tokenizer_from_vocab), then one message per field
 * (first byte: role system/user/assistant/NULL; the rest: content).
 * The rendered prompt goes through the small vocab and, when TL_SHARED holds it, the real Qwen2.5
 * tokenizer (loaded once).
 * Run: TL_SHARED=../shared build-fuzz/fuzz_chat -max_total_time=60 fuzz/corpus/chat   (scripts/fuzz.sh)
 * Invariants: the rendering ends with the messages in ChatML form (any default system prompt comes
 * before them); with the Qwen2.5 tokenizer, printable-ASCII prompts decode back to the same bytes. */
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define MAX_MSGS 16
static tl_tokenizer *g_qwen;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    const char *sh = getenv("TL_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/assets/qwen2.5-tokenizer", sh ? sh : "../shared");
    tl_error e;
    g_qwen = tl_tokenizer_load(path, &e); /* NULL: that part is skipped */
    return 0;
}

static tl_tokenizer *small_vocab(const char *tmpl) {
    static char names[256][8];
    const char *tokens[3 + 256 + 2];
    int32_t types[3 + 256 + 2];
    float scores[3 + 256 + 2];
    int n = 0;
    tokens[n] = "<unk>", types[n] = 2, scores[n++] = 0;
    tokens[n] = "<s>", types[n] = 3, scores[n++] = 0;
    tokens[n] = "</s>", types[n] = 3, scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        tokens[n] = names[b], types[n] = 6, scores[n++] = 0;
    }
    tokens[n] = "<|im_start|>", types[n] = 3, scores[n++] = 0;
    tokens[n] = "<|im_end|>", types[n] = 3, scores[n++] = 0;
    tl_vocab_spec s = {.model = "llama", .n_tokens = n, .tokens = tokens, .scores = scores, .token_types = types,
                       .bos = 1, .eos = 2, .unk = 0, .pad = -1, .chat_template = tmpl};
    tl_error e;
    return tl_tokenizer_from_vocab(&s, &e);
}

static int printable(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 0x20 && s[i] < 0x7f) || s[i] == '\n')) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    bool gen = data[0] & 1;
    char *buf = malloc(size); /* fields, NUL-terminated in place */
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *fields[MAX_MSGS + 1];
    int nf = 0;
    fields[nf++] = buf;
    for (size_t i = 0; i + 1 < size; i++)
        if (buf[i] == 0x1e && nf < MAX_MSGS + 1) buf[i] = 0, fields[nf++] = buf + i + 1;
    static const char *roles[4] = {"system", "user", "assistant", NULL};
    tl_chat_msg msgs[MAX_MSGS];
    int n = 0;
    for (int i = 1; i < nf; i++) {
        int r = fields[i][0] ? (unsigned char)fields[i][0] % 4 : 1;
        msgs[n].role = roles[r];
        msgs[n].content = fields[i][0] ? fields[i] + 1 : fields[i];
        n++;
    }
    /* what must end the rendering */
    size_t cap = 64;
    for (int i = 0; i < n; i++) cap += strlen(msgs[i].content) + 32;
    char *want = malloc(cap);
    size_t wl = 0;
    for (int i = 0; i < n; i++)
        wl += (size_t)snprintf(want + wl, cap - wl, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role ? msgs[i].role : "user",
                               msgs[i].content);
    if (gen) wl += (size_t)snprintf(want + wl, cap - wl, "<|im_start|>assistant\n");

    tl_tokenizer *toks[2] = {small_vocab(fields[0]), g_qwen};
    for (int k = 0; k < 2; k++) {
        tl_tokenizer *t = toks[k];
        if (!t) continue;
        char *p = tl_chat_render(t, msgs, n, gen);
        if (!p) __builtin_trap();
        size_t pl = strlen(p);
        if (pl < wl || memcmp(p + pl - wl, want, wl)) __builtin_trap();
        int32_t *ids = NULL;
        tl_error e;
        int ni = tl_tokenizer_encode_prompt(t, p, pl, &ids, &e);
        if (ni >= 0) {
            for (int i = 0; i < ni; i++)
                if (ids[i] < 0 || ids[i] >= tl_tokenizer_n_vocab(t)) __builtin_trap();
            size_t dl = 0;
            char *d = tl_tokenizer_decode_n(t, ids, ni, false, &dl);
            if (k == 1 && printable(p, pl) && (dl != pl || memcmp(d, p, pl))) __builtin_trap();
            free(d);
        }
        free(ids);
        free(p);
    }
    tl_tokenizer_free(toks[0]);
    free(want);
    free(buf);
    return 0;
}

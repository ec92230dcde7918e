/* tok_chat.c: chat templates of the ChatML family (Qwen2, Qwen2.5, Qwen3-style), recognized from the
 * template text rather than run by a Jinja engine. */
#include "tokenizer/tok_internal.h"

static const char QWEN25_SYS[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
static const char QWEN2_SYS[] = "You are a helpful assistant.";

void tl_tok_chat_detect(tl_tokenizer *t, const char *tmpl) {
    free(t->default_system);
    t->default_system = NULL;
    t->chat = TOK_CHAT_CHATML;
    if (!tmpl) { /* a bare tokenizer.json: Qwen2-Instruct's ChatML */
        tl_debug("%s: no chat template given: using ChatML with the default system prompt \"%s\"", t->src, QWEN2_SYS);
        t->default_system = tl_strdup(QWEN2_SYS);
    } else if (strstr(tmpl, QWEN25_SYS)) {
        t->default_system = tl_strdup(QWEN25_SYS);
    } else if (strstr(tmpl, "<|im_start|>")) {
        if (strstr(tmpl, QWEN2_SYS)) t->default_system = tl_strdup(QWEN2_SYS);
        /* else: ChatML without a default system prompt (e.g. Qwen3) */
    } else {
        tl_warn("%s: unrecognized chat template (not ChatML): using ChatML with the default system prompt \"%s\"; "
                "prompts may not match what the model was trained on",
                t->src, QWEN2_SYS);
        t->chat = TOK_CHAT_UNKNOWN;
        t->default_system = tl_strdup(QWEN2_SYS);
    }
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;
static void put(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->n + n + 1 > b->cap) b->p = tl_realloc(b->p, b->cap = (b->n + n + 1) * 2 + 256);
    memcpy(b->p + b->n, s, n + 1);
    b->n += n;
}

char *tl_chat_render(const tl_tokenizer *t, const tl_chat_msg *msgs, int n, bool add_generation_prompt) {
    sbuf b = {0};
    put(&b, "");
    bool has_system = n > 0 && msgs[0].role && !strcmp(msgs[0].role, "system");
    if (!has_system && t->default_system) {
        put(&b, "<|im_start|>system\n");
        put(&b, t->default_system);
        put(&b, "<|im_end|>\n");
    }
    for (int i = 0; i < n; i++) {
        put(&b, "<|im_start|>");
        put(&b, msgs[i].role ? msgs[i].role : "user");
        put(&b, "\n");
        put(&b, msgs[i].content ? msgs[i].content : "");
        put(&b, "<|im_end|>\n");
    }
    if (add_generation_prompt) put(&b, "<|im_start|>assistant\n");
    return b.p;
}

/* test_stories260k.c: a real trained model end to end. stories260K.gguf (Karpathy's TinyStories
 * model, llama architecture, F32) generates greedily from BOS for 256 steps exactly the text that
 * llama2.c published (shared/assets/stories260K/expected_greedy_from_bos.txt).
 *
 * llama2.c's run: pos 0 feeds BOS, each of the 256 steps samples the next token and prints its
 * piece (a leading space dropped right after BOS, <0xNN> pieces as raw bytes), then one "\n".
 * The pieces are decoded here straight from the GGUF token list, independently of the tokenizer
 * module; when the model carries a tokenizer, its decode must give the same bytes. */
#include "formats/gguf.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"
#include "tl_test.h"

#define MODEL "assets/stories260K/stories260K.gguf"
#define N_STEPS 256
#define TL_T_MAX(a, b) ((a) > (b) ? (a) : (b))

/* llama2.c's decode of ids (which follow BOS): U+2581 -> ' ', <0xNN> -> byte, first leading space dropped. */
static char *decode_pieces(const tl_gguf *g, const int32_t *ids, int n) {
    const tl_gguf_kv *tk = tl_gguf_find(g, "tokenizer.ggml.tokens");
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) {
        tl_gguf_str p;
        if (!tl_gguf_arr_str(tk, (uint64_t)ids[i], &p)) p.p = "?", p.n = 1;
        char buf[256];
        size_t bl = 0;
        unsigned byte;
        if (p.n == 6 && sscanf(p.p, "<0x%02X>", &byte) == 1) {
            buf[bl++] = (char)byte;
        } else {
            for (size_t k = 0; k < p.n && bl < sizeof buf - 1; k++) {
                if (k + 2 < p.n && !memcmp(p.p + k, "\xe2\x96\x81", 3)) buf[bl++] = ' ', k += 2;
                else buf[bl++] = p.p[k];
            }
        }
        const char *b = buf;
        if (i == 0 && bl && buf[0] == ' ') b++, bl--;
        if (len + bl + 2 > cap) cap = (len + bl + 2) * 2, s = realloc(s, cap);
        memcpy(s + len, b, bl), len += bl;
    }
    s[len] = 0;
    return s;
}

/* `tinyllm generate -p "Once upon a time" --raw --temp 0 -n 100`: the prompt encodes to BOS and the
 * first four tokens of the greedy run from BOS, so the continuation must be the published text's. */
static void test_cli(const char *expected) {
    const char *bin = getenv("TL_BIN");
    if (!bin) {
        printf("TL_BIN not set: CLI check skipped\n");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' -p 'Once upon a time' --raw --temp 0 -n 100 2>/dev/null", bin,
             tl_shared(MODEL));
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    const char *prompt = "Once upon a time";
    size_t pl = strlen(prompt);
    while (n && out[n - 1] == '\n') out[--n] = 0; /* the CLI may end with a newline */
    CHECK(rc == 0 && n > 200, "generate exited %d with %zu bytes: %s", rc, n, out);
    CHECK(!strncmp(expected, prompt, pl) && !strncmp(out, expected + pl, n),
          "the continuation differs from the greedy text:\n%s", out);
}

int main(void) {
    size_t exp_len;
    tl_error e = {{0}};
    char *expected = tl_read_file(tl_shared("assets/stories260K/expected_greedy_from_bos.txt"), &exp_len, &e);
    CHECK(expected != NULL, "%s", e.msg);
    tl_model *m = tl_model_load(tl_shared(MODEL), NULL, &e);
    CHECK(m != NULL, "load: %s", e.msg);
    if (!m || !expected) TL_TEST_END();
    const tl_config *c = &m->cfg;
    /* hyperparameters of stories260K (llama2.c doc/stories260K.md: dim 64, 5 layers, 8 heads, 4 kv heads) */
    CHECK(c->arch == TL_ARCH_LLAMA && c->rope == TL_ROPE_NORM && c->n_vocab == 512 && c->n_embd == 64 &&
          c->n_layer == 5 && c->n_head == 8 && c->n_head_kv == 4 && c->head_dim == 8 && c->n_ff == 172);
    CHECK(c->bos_id == 1 && c->n_eos == 1 && c->eos_ids[0] == 2 && !c->tied_embd && !c->qkv_bias);
    CHECK(fabsf(c->rms_eps - 1e-5f) < 1e-9f && c->rope_theta == 10000.0f);
    CHECK(m->w.layers[0].wq.type == TL_F32 && m->w.layers[0].wq.owned == NULL, "F32 weights point into the mmap");

    tl_gguf *g = tl_gguf_open(tl_shared(MODEL), &e);
    CHECK(g != NULL, "%s", e.msg);
    int32_t out1[N_STEPS];
    int n1 = 0;
    /* 1 thread: the text; 2 threads: the same 256 ids */
    for (int threads = 1; threads <= 2 && g; threads++) {
        int steps = N_STEPS;
        tl_backend *be = tl_backend_cpu_new(threads);
        tl_session *s = tl_session_new(m, be, N_STEPS + 1, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) {
            be->free(be);
            break;
        }
        int32_t bos = c->bos_id, out[N_STEPS];
        int n = tl_session_greedy(s, &bos, 1, steps, false, out, &e);
        CHECK(n == steps, "generated %d tokens: %s", n, e.msg);
        if (threads == 1) {
            memcpy(out1, out, sizeof out), n1 = n;
        } else {
            CHECK(n == n1 && !memcmp(out, out1, sizeof(int32_t) * (size_t)TL_T_MAX(n, 0)), "2 threads differ from 1");
        }
        if (threads == 1 && n > 0) {
            char *text = decode_pieces(g, out, n);
            size_t tl = strlen(text);
            /* llama2.c ends its output with one newline */
            bool same = tl + 1 == exp_len && !memcmp(text, expected, tl) && expected[tl] == '\n';
            CHECK(same, "greedy text differs from llama2.c's:\n--- got\n%s\n--- expected\n%s", text, expected);
            if (m->tok) {
                int32_t ids[N_STEPS + 1];
                ids[0] = bos;
                memcpy(ids + 1, out, sizeof(int32_t) * (size_t)n);
                char *d = tl_tokenizer_decode(m->tok, ids, n + 1, true);
                CHECK(d && !strcmp(d, text), "tokenizer decode differs:\n%s\n---\n%s", d, text);
                free(d);
            }
            free(text);
        }
        tl_session_free(s);
        be->free(be);
    }
    tl_gguf_free(g);
    tl_model_free(m);
    test_cli(expected);
    free(expected);
    TL_TEST_END();
}

/* test_hf_reference.c: the fp32 CPU path against HF transformers on random-weight checkpoints
 * (tests/data/hf/, made by tools/make_hf_reference.py): full-forward logits within 1e-4 relative,
 * prefill-then-decode through the KV cache equal to the full forward, greedy tokens equal to HF's,
 * with both the naive and the flash attention. */
#include <jansson.h>

#include "backend/backend.h"
#include "model/session.h"
#include "tl_test.h"

static const char *models[] = {"qwen2-tied-gqa2-hd64", "qwen2-untied-gqa1-hd64-bf16", "qwen2-gqa7-hd128-f16",
                               "llama-gqa2-sharded"};

static int read_ints(json_t *a, int32_t *out, int max) {
    size_t i;
    json_t *v;
    int n = 0;
    json_array_foreach(a, i, v) if (n < max) out[n++] = (int32_t)json_integer_value(v);
    return n;
}

static void run_model(const char *name, tl_attn_impl attn) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "tests/data/hf/%s", name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECK(ref != NULL, "%s: %s", path, je.text);
    if (!ref) return;
    int32_t toks[64], prompt[64], greedy[64];
    int nt = read_ints(json_object_get(ref, "tokens"), toks, 64);
    int np = read_ints(json_object_get(ref, "greedy_prompt"), prompt, 64);
    int ng = read_ints(json_object_get(ref, "greedy_tokens"), greedy, 64);
    int V = (int)json_integer_value(json_object_get(ref, "n_vocab"));
    json_decref(ref);

    snprintf(path, sizeof path, "%s/logits.f32", dir);
    size_t len;
    tl_error e = {{0}};
    float *want = (float *)tl_read_file(path, &len, &e);
    CHECK(want && len == (size_t)nt * V * 4, "%s: %s", path, e.msg);
    if (!want) return;

    tl_load_opts o = {.quiet = true};
    tl_model *m = tl_model_load(dir, &o, &e);
    CHECK(m != NULL, "%s: %s", dir, e.msg);
    if (!m) {
        free(want);
        return;
    }
    tl_backend *be = tl_backend_cpu_new(2);
    tl_backend_cpu_set_attn(be, attn);
    tl_session *s = tl_session_new(m, be, 256, &e);
    CHECK(s != NULL);

    /* 1. full forward, all logits */
    CHECK(tl_session_eval(s, toks, nt, true, &e) == 0, "%s", e.msg);
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        double r = tl_rel_err(tl_session_logits(s, i), want + (size_t)i * V, (size_t)V);
        if (r > worst) worst = r;
    }
    CHECK(worst < 1e-4, "%s: logits rel err %.3g vs HF", name, worst);
    printf("%-30s attn=%s  max rel err vs HF %.2e\n", name, attn == TL_ATTN_NAIVE ? "naive" : "flash", worst);

    /* 2. prefill 17 tokens, then decode the rest one at a time through the KV cache */
    tl_session_reset(s);
    CHECK(tl_session_eval(s, toks, 17, false, &e) == 0, "%s", e.msg);
    double wd = tl_rel_err(tl_session_logits(s, -1), want + (size_t)16 * V, (size_t)V);
    for (int i = 17; i < nt; i++) {
        CHECK(tl_session_eval(s, &toks[i], 1, false, &e) == 0, "%s", e.msg);
        double r = tl_rel_err(tl_session_logits(s, -1), want + (size_t)i * V, (size_t)V);
        if (r > wd) wd = r;
    }
    CHECK(wd < 1e-4, "%s: incremental decode rel err %.3g", name, wd);

    /* 3. greedy tokens equal to HF's */
    tl_session_reset(s);
    int32_t out[64];
    int n = tl_session_greedy(s, prompt, np, ng, false, out, &e);
    int same = n == ng;
    for (int i = 0; same && i < n; i++) same = out[i] == greedy[i];
    CHECK(same, "%s: greedy differs from HF (got %d tokens, want %d; first %d vs %d)", name, n, ng, n > 0 ? out[0] : -1,
          greedy[0]);

    tl_session_free(s);
    be->free(be);
    tl_model_free(m);
    free(want);
}

int main(void) {
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        run_model(models[i], TL_ATTN_NAIVE);
        run_model(models[i], TL_ATTN_FLASH);
    }
    TL_TEST_END();
}

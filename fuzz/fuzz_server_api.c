/* fuzz_server_api.c: libFuzzer target for the OpenAI request body parser (tl_api_parse) and, for
 * requests it accepts, the response/SSE JSON writers and the stop-string holder over the parsed
 * stop strings. The first input byte picks chat (even) or completions (odd); the rest is the body.
 * (Merges 5e46edb's target: the stopper also filters the raw input bytes in pieces of 1..7 bytes.)
 * Run: build-fuzz/fuzz_server_api -max_total_time=60 fuzz/corpus/server_api   (scripts/fuzz.sh)
 * Invariants: a rejected body carries a message; accepted fields are in their documented ranges;
 * text streamed through the stopper never contains a stop string, and what it emits is a prefix of
 * the input text. */
#include <jansson.h>
#include <stdint.h>

#include "server/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    return 0;
}

static void check_json(const char *s) {
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    if (!o) __builtin_trap(); /* every writer must produce valid JSON */
    json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    tl_api_kind kind = (data[0] & 1) ? TL_API_COMPLETION : TL_API_CHAT;
    tl_api_req r;
    const char *param = NULL;
    tl_error e;
    e.msg[0] = 0;
    if (tl_api_parse((const char *)data + 1, size - 1, kind, &r, &param, &e) != 0) {
        if (!e.msg[0]) __builtin_trap();
        char *err = tl_api_error_json(e.msg, "invalid_request_error", param, NULL);
        json_t *o = json_loads(err, 0, NULL);
        /* the client must get the message: {"error": {"message": "...", ...}} */
        if (!o || !json_is_string(json_object_get(json_object_get(o, "error"), "message"))) __builtin_trap();
        json_decref(o);
        free(err);
        tl_api_req_free(&r);
        return 0;
    }
    if (r.n_stop < 0 || r.n_stop > TL_API_MAX_STOP || (r.max_tokens != -1 && r.max_tokens < 1) ||
        !(r.s.temperature >= 0 && r.s.temperature <= 2) || !(r.s.top_p > 0 && r.s.top_p <= 1) ||
        r.top_logprobs < 0 || r.top_logprobs > TL_MAX_LOGPROBS)
        __builtin_trap();
    if (kind == TL_API_CHAT && (r.n_msgs < 1 || !r.msgs)) __builtin_trap();
    if (kind == TL_API_COMPLETION && !r.prompt && r.n_prompt_ids < 1) __builtin_trap();

    /* Any bytes (the raw input, pieces of 1..7 bytes): a prefix with no stop string in it comes out. */
    {
        tl_stopper st;
        tl_stopper_init(&st, (const char *const *)r.stop, r.n_stop);
        tl_strbuf out = {0};
        tl_strbuf_append(&out, "", 0);
        size_t step = 1 + data[0] % 7;
        for (size_t i = 0; i < size && !st.matched; i += step) tl_stopper_push(&st, (const char *)data + i, TL_MIN(step, size - i), &out);
        tl_stopper_flush(&st, &out);
        if (out.len > size || memcmp(out.p, data, out.len)) __builtin_trap();
        for (int i = 0; i < r.n_stop; i++)
            if (memmem(out.p, out.len, r.stop[i], strlen(r.stop[i]))) __builtin_trap();
        if (!st.matched && out.len != size) __builtin_trap();
        tl_stopper_free(&st);
        tl_strbuf_free(&out);
    }
    /* The text to "generate": the prompt or the last message, fed to the stopper in 3-byte pieces. */
    const char *text = kind == TL_API_CHAT ? r.msgs[r.n_msgs - 1].content : (r.prompt ? r.prompt : "");
    size_t len = strlen(text);
    tl_stopper st;
    tl_stopper_init(&st, (const char *const *)r.stop, r.n_stop);
    tl_strbuf out = {0};
    tl_strbuf_append(&out, "", 0);
    int matched = 0;
    for (size_t i = 0; i < len && !matched; i += 3) matched = tl_stopper_push(&st, text + i, TL_MIN(3, len - i), &out);
    if (!matched) tl_stopper_flush(&st, &out);
    if (out.len > len || memcmp(out.p, text, out.len)) __builtin_trap();
    for (int i = 0; i < r.n_stop; i++)
        if (memmem(out.p, out.len, r.stop[i], strlen(r.stop[i]))) __builtin_trap();
    if (!matched && out.len != len) __builtin_trap(); /* nothing lost without a match */
    tl_stopper_free(&st);

    tl_api_resp resp = {.kind = kind, .id = "cmpl-fuzz", .model = r.model ? r.model : "m", .created = 1,
                        .logprobs = r.logprobs, .n_prompt = 3, .n_completion = 2};
    tl_api_logprob lp = {.token = 7, .logprob = -0.5f, .n_top = r.top_logprobs};
    for (int i = 0; i < lp.n_top; i++) lp.top_ids[i] = i, lp.top_logprobs[i] = -1.0f - (float)i;
    char *js = tl_api_response_json(&resp, out.p, out.len, r.logprobs ? &lp : NULL, r.logprobs ? 1 : 0,
                                    matched ? "stop" : "length");
    check_json(js);
    free(js);
    tl_strbuf sse = {0};
    tl_api_sse_chunk(&sse, &resp, true, out.p, out.len, r.logprobs ? &lp : NULL, r.logprobs ? 1 : 0, NULL,
                     r.include_usage);
    if (sse.len < 8 || memcmp(sse.p, "data: ", 6)) __builtin_trap();
    tl_strbuf_free(&sse);
    tl_strbuf_free(&out);
    tl_api_req_free(&r);
    return 0;
}

/* fuzz_server_api.c: libFuzzer target for the server's request parser and stop-string matcher.
 * Build: CC=clang cmake -S . -B build-fuzz -DTL_FUZZ=ON && cmake --build build-fuzz --target fuzz_server_api
 * Run:   build-fuzz/fuzz_server_api -max_total_time=300 -max_len=4096
 * Each input is parsed as a chat and as a completions body; a parsed request's stop strings then
 * filter the input's bytes in pieces, and the response JSON is built from what came out (ASan and
 * LeakSanitizer check every path). The matcher must emit a prefix of the text with no stop string in it. */
#include "server/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tl_log_set_level(0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < 2; k++) {
        tl_api_req r;
        tl_error e;
        const char *param;
        if (tl_api_parse((const char *)data, size, k ? TL_API_COMPLETION : TL_API_CHAT, &r, &param, &e) == 0 &&
            r.n_stop > 0) {
            tl_stopper st;
            tl_stopper_init(&st, (const char *const *)r.stop, r.n_stop);
            tl_strbuf out = {0};
            tl_strbuf_append(&out, "", 0);
            size_t step = 1 + (size > 0 ? data[0] % 7 : 0);
            for (size_t i = 0; i < size && !st.matched; i += step)
                tl_stopper_push(&st, (const char *)data + i, TL_MIN(step, size - i), &out);
            tl_stopper_flush(&st, &out);
            TL_ASSERT(out.len <= size && !memcmp(out.p, data, out.len));
            for (int j = 0; j < r.n_stop; j++) TL_ASSERT(!memmem(out.p, out.len, r.stop[j], strlen(r.stop[j])));
            tl_api_resp resp = {.kind = r.kind, .id = "x", .model = "m", .logprobs = r.logprobs};
            char *json = tl_api_response_json(&resp, out.p, out.len, NULL, 0, "stop");
            free(json);
            tl_strbuf_free(&out);
            tl_stopper_free(&st);
        }
        tl_api_req_free(&r);
    }
    return 0;
}

/* test_faults_api.c: request-parser faults found by fuzz_server_api, replayed as unit tests.
 * - An unsupported role quoted with "%.40s" in the error message can be cut inside a UTF-8 character;
 *   the error JSON must still carry the message (jansson refuses invalid UTF-8, which dropped it). */
#include <jansson.h>

#include "server/server.h"
#include "tl_test.h"

static void test_role_cut_in_error(void) {
    char body[512];
    /* 5 + 6k bytes: the 40-byte cut lands inside the 6th 2-byte character */
    snprintf(body, sizeof body, "{\"messages\": [{\"role\": \"abcde%s\", \"content\": \"x\"}]}",
             "tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9tool\xc3\xa9");
    tl_api_req r;
    const char *param = NULL;
    tl_error e;
    CHECK(tl_api_parse(body, strlen(body), TL_API_CHAT, &r, &param, &e) == -1);
    CHECK(param && !strcmp(param, "messages"));
    char *js = tl_api_error_json(e.msg, "invalid_request_error", param, NULL);
    json_t *o = json_loads(js, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    CHECK(msg && strstr(msg, "is not supported"), "error JSON: %s", js);
    CHECK(msg && strstr(msg, "\xef\xbf\xbd"), "the cut character becomes U+FFFD: %s", js);
    json_decref(o);
    free(js);
    tl_api_req_free(&r);
    /* a message that is valid UTF-8 is passed through unchanged */
    js = tl_api_error_json("caf\xc3\xa9 \xe4\xb8\xad", "invalid_request_error", NULL, NULL);
    o = json_loads(js, 0, NULL);
    msg = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    CHECK(msg && !strcmp(msg, "caf\xc3\xa9 \xe4\xb8\xad"), "%s", js);
    json_decref(o);
    free(js);
}

int main(void) {
    test_role_cut_in_error();
    TL_TEST_END();
}

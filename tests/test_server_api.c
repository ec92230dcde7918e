/* test_server_api.c: the HTTP server's pure layers without sockets: request parsing and validation
 * (many malformed bodies, each must fail with a message and never crash), response / SSE JSON
 * shapes, stop-string hold-back over every split of the text, and the Prometheus histogram. */
#include <jansson.h>

#include "server/server.h"
#include "tl_test.h"

static int parse(const char *body, tl_api_kind k, tl_api_req *r, const char **param, tl_error *e) {
    return tl_api_parse(body, strlen(body), k, r, param, e);
}

/* Each of these bodies must be rejected with a message (and param when named). */
static void test_malformed(void) {
    static const struct {
        tl_api_kind k;
        const char *body, *param;
    } bad[] = {
        {TL_API_CHAT, "", NULL},
        {TL_API_CHAT, "{", NULL},
        {TL_API_CHAT, "nul", NULL},
        {TL_API_CHAT, "[]", NULL},
        {TL_API_CHAT, "\"x\"", NULL},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}]} trailing", NULL},
        {TL_API_CHAT, "{}", "messages"},
        {TL_API_CHAT, "{\"messages\": null}", "messages"},
        {TL_API_CHAT, "{\"messages\": \"hi\"}", "messages"},
        {TL_API_CHAT, "{\"messages\": []}", "messages"},
        {TL_API_CHAT, "{\"messages\": [1]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"content\":\"hi\"}]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"tool\",\"content\":\"hi\"}]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":5,\"content\":\"hi\"}]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":5}]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
         "messages"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"model\": 3}", "model"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_tokens\": 0}", "max_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_tokens\": -5}", "max_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_tokens\": 2.5}", "max_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_tokens\": \"8\"}",
         "max_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_tokens\": 99999999999999}",
         "max_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"max_completion_tokens\": 0}",
         "max_completion_tokens"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"temperature\": \"hot\"}",
         "temperature"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"temperature\": -0.1}",
         "temperature"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"temperature\": 2.5}",
         "temperature"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"top_p\": 0}", "top_p"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"top_p\": 1.5}", "top_p"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"top_k\": -2}", "top_k"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"top_k\": 1.5}", "top_k"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"min_p\": 2}", "min_p"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"presence_penalty\": 3}",
         "presence_penalty"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"frequency_penalty\": -2.5}",
         "frequency_penalty"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"repetition_penalty\": 0}",
         "repetition_penalty"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"seed\": \"1\"}", "seed"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"seed\": 1.5}", "seed"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"n\": 2}", "n"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"n\": 0}", "n"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stop\": 5}", "stop"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stop\": [\"a\", 5]}", "stop"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stop\": "
         "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\","
         "\"17\"]}",
         "stop"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stream\": \"yes\"}", "stream"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stream\": 1}", "stream"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stream_options\": {\"include_usage\": true}}",
         "stream_options"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stream\": true, \"stream_options\": 1}",
         "stream_options"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"stream\": true, \"stream_options\": "
         "{\"include_usage\": \"y\"}}",
         "include_usage"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"logprobs\": 3}", "logprobs"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"top_logprobs\": 3}",
         "top_logprobs"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"logprobs\": true, \"top_logprobs\": 21}",
         "top_logprobs"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"user\": 7}", "user"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"prompt\": \"x\"}", "prompt"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"h\\u0000i\"}]}", NULL},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", NULL},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"logit_bias\": {\"5\": 10}}",
         "logit_bias"},
        {TL_API_CHAT, "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"tools\": [{\"type\":\"function\"}]}",
         "tools"},
        {TL_API_CHAT,
         "{\"messages\": [{\"role\":\"user\",\"content\":\"hi\"}], \"response_format\": {\"type\":\"json_object\"}}",
         "response_format"},
        {TL_API_COMPLETION, "{}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": 5}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": []}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": [1, -2]}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": [1, 2.5]}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": [1, 4294967296]}", "prompt"},
        {TL_API_COMPLETION, "{\"prompt\": \"x\", \"logprobs\": true}", "logprobs"},
        {TL_API_COMPLETION, "{\"prompt\": \"x\", \"logprobs\": 21}", "logprobs"},
        {TL_API_COMPLETION, "{\"prompt\": \"x\", \"echo\": true}", "echo"},
        {TL_API_COMPLETION, "{\"prompt\": \"x\", \"ignore_eos\": 1}", "ignore_eos"},
        {TL_API_COMPLETION, "{\"prompt\": \"x\", \"best_of\": 3}", "best_of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tl_api_req r;
        tl_error e = {{0}};
        const char *param = NULL;
        int rc = parse(bad[i].body, bad[i].k, &r, &param, &e);
        CHECK(rc == -1, "bad body %zu accepted: %s", i, bad[i].body);
        CHECK(e.msg[0] != 0, "no message for bad body %zu", i);
        if (bad[i].param) CHECK(param && !strcmp(param, bad[i].param), "body %zu: param %s, want %s (%s)", i,
                                param ? param : "(null)", bad[i].param, e.msg);
        tl_api_req_free(&r);
    }
}

static void test_valid(void) {
    tl_api_req r;
    tl_error e = {{0}};
    const char *param;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"he\"},{\"type\":\"text\",\"text\":\"llo\"}]},"
        "{\"role\":\"assistant\",\"content\":null},{\"role\":\"developer\",\"content\":\"x\"}],"
        "\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"top_k\":-1,\"min_p\":0.1,"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"repetition_penalty\":1.1,\"seed\":-3,"
        "\"stop\":[\"END\",\"\",\"\\n\\n\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"logprobs\":true,\"top_logprobs\":3,\"user\":\"u1\",\"n\":1,\"unknown_field\":{\"x\":1},\"tools\":null,"
        "\"logit_bias\":{},\"tools\":[],\"response_format\":{\"type\":\"text\"}}";
    int rc = parse(body, TL_API_CHAT, &r, &param, &e);
    CHECK(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(r.model && !strcmp(r.model, "m"));
        CHECK(r.n_msgs == 4);
        CHECK(!strcmp(r.msgs[0].role, "system") && !strcmp(r.msgs[0].content, "be brief"));
        CHECK(!strcmp(r.msgs[1].content, "hello"), "%s", r.msgs[1].content);
        CHECK(!strcmp(r.msgs[2].role, "assistant") && !strcmp(r.msgs[2].content, ""));
        CHECK(!strcmp(r.msgs[3].role, "system"));
        CHECK(r.max_tokens == 7);
        CHECK(r.s.temperature == 0.0f && r.s.top_p == 0.5f && r.s.top_k == 0);
        CHECK(fabsf(r.s.min_p - 0.1f) < 1e-7f && r.s.presence_penalty == 0.5f && r.s.frequency_penalty == -0.5f);
        CHECK(fabsf(r.s.repetition_penalty - 1.1f) < 1e-6f);
        CHECK(r.seed_given && r.s.seed == (uint64_t)(int64_t)-3);
        CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "END") && !strcmp(r.stop[1], "\n\n"));
        CHECK(r.stream && r.include_usage);
        CHECK(r.logprobs && r.top_logprobs == 3 && r.s.n_logprobs == 3);
        CHECK(r.user && !strcmp(r.user, "u1"));
        CHECK(r.temperature_given && r.top_p_given && r.top_k_given && r.repetition_penalty_given);
    }
    tl_api_req_free(&r);

    /* defaults */
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", TL_API_CHAT, &r, &param, &e);
    CHECK(rc == 0 && r.max_tokens == -1 && r.s.temperature == 1.0f && r.s.top_p == 1.0f && !r.stream &&
          !r.logprobs && r.s.n_logprobs == 0 && r.n_stop == 0 && !r.model && !r.seed_given &&
          !r.temperature_given && !r.top_p_given && !r.top_k_given && !r.repetition_penalty_given);
    tl_api_req_free(&r);

    /* completions: string, ["string"], token ids, logprobs as an int, stop as a string */
    rc = parse("{\"prompt\":\"Once upon\",\"max_tokens\":4,\"logprobs\":2,\"stop\":\"x\",\"echo\":false}",
               TL_API_COMPLETION, &r, &param, &e);
    CHECK(rc == 0 && r.prompt && !strcmp(r.prompt, "Once upon") && r.max_tokens == 4 && r.logprobs &&
          r.top_logprobs == 2 && r.n_stop == 1, "%s", e.msg);
    tl_api_req_free(&r);
    rc = parse("{\"prompt\":[\"abc\"],\"ignore_eos\":true}", TL_API_COMPLETION, &r, &param, &e);
    CHECK(rc == 0 && r.prompt && !strcmp(r.prompt, "abc") && r.ignore_eos);
    tl_api_req_free(&r);
    rc = parse("{\"prompt\":[1,2,3],\"logprobs\":0}", TL_API_COMPLETION, &r, &param, &e);
    CHECK(rc == 0 && !r.prompt && r.n_prompt_ids == 3 && r.prompt_ids[2] == 3 && r.logprobs && r.s.n_logprobs == 1);
    tl_api_req_free(&r);
}

/* Random bytes and truncations of a valid body never crash the parser. */
static void test_garbage(void) {
    const char *good = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u00e9\"}],\"stop\":[\"a\"],"
                       "\"max_tokens\":3,\"logprobs\":true,\"top_logprobs\":2}";
    size_t n = strlen(good);
    int ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        tl_api_req r;
        if (tl_api_parse(good, cut, TL_API_CHAT, &r, NULL, NULL) == 0) ok++;
        tl_api_req_free(&r);
    }
    CHECK(ok == 0, "%d truncated bodies accepted", ok);
    unsigned long long seed = 42;
    char buf[256];
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, good, n);
        int flips = 1 + (int)(tl_t_rng(&seed) % 4);
        for (int f = 0; f < flips; f++) buf[tl_t_rng(&seed) % n] = (char)(tl_t_rng(&seed) & 0xff);
        tl_api_req r;
        tl_error e;
        (void)tl_api_parse(buf, n, TL_API_CHAT, &r, NULL, &e);
        tl_api_req_free(&r);
    }
    CHECK(1);
}

static void test_stop(void) {
    /* Every way of splitting the text into two or three pieces gives the same emitted text. */
    const char *stops[] = {"END", "\n\n", "abab"};
    static const struct {
        const char *text, *want;
        int matched;
    } cases[] = {
        {"hello END world", "hello ", 1},
        {"no stop here", "no stop here", 0},
        {"ENDING", "", 1},
        {"EN", "EN", 0},
        {"aba", "aba", 0},
        {"xababab", "x", 1},
        {"abaabab", "aba", 1},
        {"line\n\npara", "line", 1},
        {"E\nN\nD", "E\nN\nD", 0},
        {"\xc3\xa9 END", "\xc3\xa9 ", 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *t = cases[c].text;
        size_t n = strlen(t);
        for (size_t i = 0; i <= n; i++)
            for (size_t j = i; j <= n; j++) {
                tl_stopper st;
                tl_stopper_init(&st, stops, 3);
                tl_strbuf out = {0};
                tl_strbuf_append(&out, "", 0);
                int m = tl_stopper_push(&st, t, i, &out);
                if (!m) m = tl_stopper_push(&st, t + i, j - i, &out);
                if (!m) m = tl_stopper_push(&st, t + j, n - j, &out);
                /* before the flush, nothing emitted may contain any part of a possible match */
                CHECK(strlen(out.p) <= strlen(cases[c].want) && !strncmp(out.p, cases[c].want, strlen(out.p)),
                      "case %zu split %zu/%zu: emitted '%s' early", c, i, j, out.p);
                if (!m) tl_stopper_flush(&st, &out);
                CHECK(m == cases[c].matched && !strcmp(out.p, cases[c].want), "case %zu split %zu/%zu: '%s' m=%d", c,
                      i, j, out.p, m);
                tl_strbuf_free(&out);
                tl_stopper_free(&st);
            }
    }
    /* held back while ambiguous, released once ruled out */
    tl_stopper st;
    tl_stopper_init(&st, stops, 3);
    tl_strbuf out = {0};
    tl_strbuf_append(&out, "", 0);
    CHECK(tl_stopper_push(&st, "abcE", 4, &out) == 0 && !strcmp(out.p, "abc"), "'%s'", out.p);
    CHECK(tl_stopper_push(&st, "N", 1, &out) == 0 && !strcmp(out.p, "abc"), "'%s'", out.p);
    CHECK(tl_stopper_push(&st, "x", 1, &out) == 0 && !strcmp(out.p, "abcENx"), "'%s'", out.p);
    tl_strbuf_free(&out);
    tl_stopper_free(&st);
}

static json_t *load(const char *s) {
    json_t *o = json_loads(s, 0, NULL);
    CHECK(o != NULL, "not JSON: %s", s);
    return o;
}

/* Every token is "é" (2 bytes, 1 character). */
static const char *e_acute(const void *tok, int32_t id, size_t *len) {
    (void)tok, (void)id;
    *len = 2;
    return "\xc3\xa9";
}

static void test_responses(void) {
    char *s = tl_api_error_json("bad thing", NULL, "temperature", NULL);
    json_t *o = load(s);
    json_t *err = json_object_get(o, "error");
    CHECK(json_is_object(err) && !strcmp(json_string_value(json_object_get(err, "message")), "bad thing") &&
          !strcmp(json_string_value(json_object_get(err, "type")), "invalid_request_error") &&
          !strcmp(json_string_value(json_object_get(err, "param")), "temperature") &&
          json_is_null(json_object_get(err, "code")));
    json_decref(o);
    free(s);

    s = tl_api_context_error_json(100, 128, 50, "messages");
    o = load(s);
    err = json_object_get(o, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    CHECK(msg && strstr(msg, "128") && strstr(msg, "150") && strstr(msg, "100"), "%s", msg);
    CHECK(!strcmp(json_string_value(json_object_get(err, "code")), "context_length_exceeded"));
    CHECK(json_integer_value(json_object_get(err, "prompt_tokens")) == 100);
    CHECK(json_integer_value(json_object_get(err, "requested_tokens")) == 150);
    CHECK(!strcmp(json_string_value(json_object_get(err, "param")), "max_tokens")); /* the prompt fits */
    json_decref(o);
    free(s);
    /* the prompt alone is over the context: it is what to shorten, whatever max_tokens says (the error named
     * max_tokens whenever one was given, and 'messages' for a completions prompt) */
    static const struct {
        int n_prompt, max_tokens;
        const char *where, *param;
    } cases[] = {{200, 50, "messages", "messages"}, {200, 50, "prompt", "prompt"}, {128, 1, "prompt", "prompt"},
                 {200, -1, "prompt", "prompt"},     {200, -1, "messages", "messages"}, {127, 5, "prompt", "max_tokens"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s = tl_api_context_error_json(cases[i].n_prompt, 128, cases[i].max_tokens, cases[i].where);
        o = load(s);
        const char *param = json_string_value(json_object_get(json_object_get(o, "error"), "param"));
        CHECK(param && !strcmp(param, cases[i].param), "case %zu: param %s, want %s", i, param ? param : "(null)",
              cases[i].param);
        json_decref(o);
        free(s);
    }

    tl_api_resp r = {.kind = TL_API_CHAT, .id = "chatcmpl-1", .model = "m", .created = 5, .logprobs = true,
                     .n_prompt = 3, .n_completion = 2};
    tl_api_logprob lp[2] = {{.token = 7, .logprob = -0.5f, .n_top = 1, .top_ids = {7}, .top_logprobs = {-0.5f}},
                            {.token = 9, .logprob = -1.0f}};
    s = tl_api_response_json(&r, "hi \xc3\xa9", 5, lp, 2, "stop");
    o = load(s);
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(o, "object")), "chat.completion"));
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "hi \xc3\xa9"));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"));
    json_t *content = json_object_get(json_object_get(ch, "logprobs"), "content");
    CHECK(json_array_size(content) == 2);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(content, 0), "token")), "<7>"));
    CHECK(json_array_size(json_object_get(json_array_get(content, 0), "top_logprobs")) == 1);
    CHECK(json_integer_value(json_object_get(json_object_get(o, "usage"), "total_tokens")) == 5);
    json_decref(o);
    free(s);

    tl_strbuf b = {0};
    tl_api_sse_chunk(&b, &r, true, "", 0, NULL, 0, NULL, true);
    CHECK(!strncmp(b.p, "data: {", 7) && b.len > 4 && !strcmp(b.p + b.len - 2, "\n\n"));
    o = load(b.p + 6);
    ch = json_array_get(json_object_get(o, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(ch, "delta"), "role")), "assistant"));
    CHECK(json_is_null(json_object_get(o, "usage")) && json_object_get(o, "usage"));
    CHECK(json_is_null(json_object_get(ch, "finish_reason")));
    json_decref(o);
    b.len = 0;
    tl_api_sse_usage(&b, &r);
    o = load(b.p + 6);
    CHECK(json_array_size(json_object_get(o, "choices")) == 0 &&
          json_integer_value(json_object_get(json_object_get(o, "usage"), "completion_tokens")) == 2);
    json_decref(o);
    b.len = 0;
    tl_api_sse_done(&b);
    CHECK(!strcmp(b.p, "data: [DONE]\n\n"));
    tl_strbuf_free(&b);

    /* completions chunk with logprobs: text_offset follows token lengths */
    tl_api_resp rc = {.kind = TL_API_COMPLETION, .id = "cmpl-1", .model = "m", .logprobs = true};
    tl_api_sse_chunk(&b, &rc, true, "ab", 2, lp, 2, "length", false);
    o = load(b.p + 6);
    ch = json_array_get(json_object_get(o, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(ch, "text")), "ab"));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length"));
    json_t *offs = json_object_get(json_object_get(ch, "logprobs"), "text_offset");
    CHECK(json_integer_value(json_array_get(offs, 1)) == 3); /* "<7>" is 3 characters */
    CHECK(!json_object_get(o, "usage"));
    json_decref(o);

    /* The next chunk goes on from there, as OpenAI's offsets index the whole completion text; and they
     * count characters (what a client indexes its string by), not UTF-8 bytes: "é" is one. */
    b.len = 0;
    tl_api_sse_chunk(&b, &rc, false, "", 0, lp, 2, NULL, false);
    o = load(b.p + 6);
    offs = json_object_get(json_object_get(json_array_get(json_object_get(o, "choices"), 0), "logprobs"), "text_offset");
    CHECK(json_integer_value(json_array_get(offs, 0)) == 6 && json_integer_value(json_array_get(offs, 1)) == 9,
          "second chunk's offsets %lld %lld", (long long)json_integer_value(json_array_get(offs, 0)),
          (long long)json_integer_value(json_array_get(offs, 1)));
    json_decref(o);
    tl_api_resp ru = {.kind = TL_API_COMPLETION, .id = "cmpl-2", .model = "m", .logprobs = true, .piece = e_acute};
    s = tl_api_response_json(&ru, "\xc3\xa9\xc3\xa9", 4, lp, 2, "length");
    o = load(s);
    offs = json_object_get(json_object_get(json_array_get(json_object_get(o, "choices"), 0), "logprobs"), "text_offset");
    CHECK(json_integer_value(json_array_get(offs, 1)) == 1, "offset after \"\xc3\xa9\": %lld",
          (long long)json_integer_value(json_array_get(offs, 1)));
    json_decref(o);
    free(s);
    tl_strbuf_free(&b);
}

static void test_histogram(void) {
    tl_server_counters c;
    tl_server_counters_init(&c);
    tl_histogram_add(&c.ttft, 0.004);
    tl_histogram_add(&c.ttft, 0.3);
    tl_histogram_add(&c.ttft, 1000);
    tl_server_counters_status(&c, 200);
    tl_server_counters_status(&c, 429);
    tl_server_counters_status(&c, 418);
    tl_strbuf out = {0};
    tl_metrics_render(&c, NULL, true, &out);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_bucket{le=\"0.25\"} 1\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_bucket{le=\"120\"} 2\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_time_to_first_token_seconds_count 3\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_requests_total{status=\"429\"} 1\n") != NULL);
    CHECK(strstr(out.p, "tinyllm_requests_total{status=\"other\"} 1\n") != NULL);
    tl_engine_stats es = {.n_waiting = 3, .kv_blocks_used = 5, .prefix_queries = 4, .prefix_hits = 1};
    out.len = 0;
    tl_metrics_render(&c, &es, true, &out);
    CHECK(strstr(out.p, "tinyllm_queue_depth 3\n") && strstr(out.p, "tinyllm_kv_blocks_used 5\n") &&
          strstr(out.p, "tinyllm_prefix_cache_hit_rate 0.25\n"));
    tl_strbuf_free(&out);
}

int main(void) {
    test_malformed();
    test_valid();
    test_garbage();
    test_stop();
    test_responses();
    test_histogram();
    TL_TEST_END();
}

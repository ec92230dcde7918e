/* api.c: OpenAI request parsing/validation into tl_api_req, and the JSON of responses, SSE chunks
 * and errors. Pure functions over jansson: no HTTP, no engine; tests/test_server_api.c covers them. */
#include <jansson.h>
#include <math.h>

#include "server/server.h"

void tl_strbuf_append(tl_strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = tl_realloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void tl_strbuf_free(tl_strbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---------------- request parsing ---------------- */

/* A field present and not null. */
static json_t *field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? v : NULL;
}

#define BAD(P, ...)                       \
    do {                                  \
        if (param) *param = (P);          \
        tl_errf(e, __VA_ARGS__);          \
        goto fail;                        \
    } while (0)

static int get_num(json_t *o, const char *k, float lo, float hi, bool lo_open, float *out, const char **param,
                   tl_error *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_number(v)) BAD(k, "'%s' must be a number", k);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d <= lo))
        BAD(k, "'%s' must be %s %g and <= %g (got %g)", k, lo_open ? ">" : ">=", lo, hi, d);
    *out = (float)d;
    return 0;
fail:
    return -1;
}

static int get_int(json_t *o, const char *k, long long lo, long long hi, int *out, const char **param, tl_error *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_integer(v)) BAD(k, "'%s' must be an integer", k);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) BAD(k, "'%s' must be between %lld and %lld (got %lld)", k, lo, hi, x);
    *out = (int)x;
    return 0;
fail:
    return -1;
}

static int get_bool(json_t *o, const char *k, bool *out, const char **param, tl_error *e) {
    json_t *v = field(o, k);
    if (!v) return 0;
    if (!json_is_boolean(v)) BAD(k, "'%s' must be a boolean", k);
    *out = json_is_true(v);
    return 0;
fail:
    return -1;
}

/* content: a string, or an array of parts {"type": "text", "text": "..."} (concatenated). */
static char *msg_content(json_t *c, int i, const char **param, tl_error *e) {
    if (!c) return tl_strdup("");
    if (json_is_string(c)) return tl_strdup(json_string_value(c));
    if (!json_is_array(c)) {
        if (param) *param = "messages";
        tl_errf(e, "messages[%d].content must be a string or an array of text parts", i);
        return NULL;
    }
    tl_strbuf b = {0};
    tl_strbuf_append(&b, "", 0);
    size_t j;
    json_t *part;
    json_array_foreach(c, j, part) {
        json_t *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(ty) || strcmp(json_string_value(ty), "text") ||
            !json_is_string(tx)) {
            tl_strbuf_free(&b);
            if (param) *param = "messages";
            tl_errf(e, "messages[%d].content[%zu]: only {\"type\": \"text\", \"text\": string} parts are supported",
                    i, j);
            return NULL;
        }
        tl_strbuf_append(&b, json_string_value(tx), json_string_length(tx));
    }
    return b.p;
}

static int parse_messages(json_t *root, tl_api_req *r, const char **param, tl_error *e) {
    json_t *m = field(root, "messages");
    if (!m) BAD("messages", "'messages' is required");
    if (!json_is_array(m)) BAD("messages", "'messages' must be an array");
    size_t n = json_array_size(m);
    if (n == 0) BAD("messages", "'messages' must not be empty");
    if (n > 4096) BAD("messages", "too many messages (%zu > 4096)", n);
    r->msgs = tl_calloc(n, sizeof *r->msgs);
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i);
        if (!json_is_object(msg)) BAD("messages", "messages[%zu] must be an object", i);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role)) BAD("messages", "messages[%zu].role must be a string", i);
        const char *rs = json_string_value(role);
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            BAD("messages", "messages[%zu].role '%.40s' is not supported (system, user, assistant)", i, rs);
        char *content = msg_content(field(msg, "content"), (int)i, param, e);
        if (!content) goto fail;
        r->msgs[r->n_msgs].role = tl_strdup(rs);
        r->msgs[r->n_msgs].content = content;
        r->n_msgs++;
    }
    return 0;
fail:
    return -1;
}

static int parse_prompt(json_t *root, tl_api_req *r, const char **param, tl_error *e) {
    json_t *p = field(root, "prompt");
    if (!p) BAD("prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0); /* ["text"]: a batch of one */
    if (json_is_string(p)) {
        r->prompt = tl_strdup(json_string_value(p));
        return 0;
    }
    if (!json_is_array(p)) BAD("prompt", "'prompt' must be a string or an array of token ids");
    size_t n = json_array_size(p);
    if (n == 0) BAD("prompt", "'prompt' must not be empty");
    if (n > (1u << 24)) BAD("prompt", "'prompt' is too long");
    r->prompt_ids = tl_malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (json_is_string(t)) BAD("prompt", "a batch of several prompts is not supported (n = 1 only)");
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
            BAD("prompt", "prompt[%zu] must be a non-negative token id", i);
        r->prompt_ids[i] = (int32_t)json_integer_value(t);
    }
    r->n_prompt_ids = (int)n;
    return 0;
fail:
    return -1;
}

static int parse_stop(json_t *root, tl_api_req *r, const char **param, tl_error *e) {
    json_t *s = field(root, "stop");
    if (!s) return 0;
    if (json_is_string(s)) {
        if (json_string_length(s)) r->stop[r->n_stop++] = tl_strdup(json_string_value(s));
        return 0;
    }
    if (!json_is_array(s)) BAD("stop", "'stop' must be a string or an array of strings");
    if (json_array_size(s) > TL_API_MAX_STOP) BAD("stop", "'stop' has more than %d strings", TL_API_MAX_STOP);
    size_t i;
    json_t *x;
    json_array_foreach(s, i, x) {
        if (!json_is_string(x)) BAD("stop", "stop[%zu] must be a string", i);
        if (json_string_length(x) > 1024) BAD("stop", "stop[%zu] is longer than 1024 bytes", i);
        if (json_string_length(x)) r->stop[r->n_stop++] = tl_strdup(json_string_value(x));
    }
    return 0;
fail:
    return -1;
}

static int parse_logprobs(json_t *root, tl_api_req *r, const char **param, tl_error *e) {
    json_t *lp = field(root, "logprobs");
    if (r->kind == TL_API_CHAT) {
        if (get_bool(root, "logprobs", &r->logprobs, param, e)) return -1;
        int top = 0;
        if (get_int(root, "top_logprobs", 0, TL_MAX_LOGPROBS, &top, param, e)) return -1;
        if (field(root, "top_logprobs") && !r->logprobs)
            BAD("top_logprobs", "'top_logprobs' requires 'logprobs': true");
        r->top_logprobs = top;
    } else if (lp) {
        int n = 0;
        if (get_int(root, "logprobs", 0, TL_MAX_LOGPROBS, &n, param, e)) return -1;
        r->logprobs = true;
        r->top_logprobs = n;
    }
    return 0;
fail:
    return -1;
}

int tl_api_parse(const char *body, size_t len, tl_api_kind kind, tl_api_req *r, const char **param, tl_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->s.temperature = 1.0f; /* OpenAI's default; the rest off (as tl_sampling_default) */
    r->s.top_p = 1.0f;
    r->s.repetition_penalty = 1.0f;
    if (param) *param = NULL;
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        tl_errf(e, "invalid JSON body: %s (line %d, column %d)", je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(root)) BAD(NULL, "the request body must be a JSON object");
    json_t *v;
    if ((v = field(root, "model"))) {
        if (!json_is_string(v)) BAD("model", "'model' must be a string");
        r->model = tl_strdup(json_string_value(v));
    }
    if (kind == TL_API_CHAT ? parse_messages(root, r, param, e) : parse_prompt(root, r, param, e)) goto fail;
    if (kind == TL_API_CHAT && field(root, "prompt")) BAD("prompt", "chat completions take 'messages', not 'prompt'");

    const int max_tok = 1 << 24;
    if (get_int(root, "max_tokens", 1, max_tok, &r->max_tokens, param, e)) goto fail;
    if (get_int(root, "max_completion_tokens", 1, max_tok, &r->max_tokens, param, e)) goto fail;
    if (get_num(root, "temperature", 0, 2, false, &r->s.temperature, param, e)) goto fail;
    if (get_num(root, "top_p", 0, 1, true, &r->s.top_p, param, e)) goto fail;
    int top_k = 0;
    if (get_int(root, "top_k", -1, 1 << 20, &top_k, param, e)) goto fail;
    r->s.top_k = top_k < 0 ? 0 : top_k; /* -1: off, as in vLLM */
    if (get_num(root, "min_p", 0, 1, false, &r->s.min_p, param, e)) goto fail;
    if (get_num(root, "presence_penalty", -2, 2, false, &r->s.presence_penalty, param, e)) goto fail;
    if (get_num(root, "frequency_penalty", -2, 2, false, &r->s.frequency_penalty, param, e)) goto fail;
    if (get_num(root, "repetition_penalty", 0, 10, true, &r->s.repetition_penalty, param, e)) goto fail;
    r->temperature_given = field(root, "temperature") != NULL;
    r->top_p_given = field(root, "top_p") != NULL;
    r->top_k_given = field(root, "top_k") != NULL;
    r->repetition_penalty_given = field(root, "repetition_penalty") != NULL;
    if ((v = field(root, "seed"))) {
        if (!json_is_integer(v)) BAD("seed", "'seed' must be an integer");
        r->s.seed = (uint64_t)json_integer_value(v);
        r->seed_given = true;
    }
    int n = 1;
    if (get_int(root, "n", 1, 1 << 20, &n, param, e)) goto fail;
    if (n != 1) BAD("n", "only n = 1 is supported (got %d)", n);
    if (get_int(root, "best_of", 1, 1, &n, param, e)) goto fail;
    if (parse_stop(root, r, param, e)) goto fail;
    if (get_bool(root, "stream", &r->stream, param, e)) goto fail;
    if ((v = field(root, "stream_options"))) {
        if (!json_is_object(v)) BAD("stream_options", "'stream_options' must be an object");
        if (!r->stream) BAD("stream_options", "'stream_options' is only allowed when 'stream' is true");
        if (get_bool(v, "include_usage", &r->include_usage, param, e)) goto fail;
    }
    if (parse_logprobs(root, r, param, e)) goto fail;
    r->s.n_logprobs = r->logprobs ? TL_MAX(r->top_logprobs, 1) : 0;
    if (get_bool(root, "echo", &r->echo, param, e)) goto fail;
    if (get_bool(root, "ignore_eos", &r->ignore_eos, param, e)) goto fail;
    if (r->echo) BAD("echo", "'echo' is not supported");
    /* Features that change what the output means are refused rather than silently ignored. */
    if ((v = field(root, "logit_bias")) && (!json_is_object(v) || json_object_size(v)))
        BAD("logit_bias", "'logit_bias' is not supported");
    if ((v = field(root, "tools")) && (!json_is_array(v) || json_array_size(v)))
        BAD("tools", "'tools' (function calling) is not supported");
    if ((v = field(root, "functions")) && (!json_is_array(v) || json_array_size(v)))
        BAD("functions", "'functions' is not supported");
    if ((v = field(root, "response_format"))) {
        json_t *ty = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "text"))
            BAD("response_format", "only 'response_format': {\"type\": \"text\"} is supported");
    }
    if ((v = field(root, "user"))) {
        if (!json_is_string(v)) BAD("user", "'user' must be a string");
        r->user = tl_strdup(json_string_value(v));
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

void tl_api_req_free(tl_api_req *r) {
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->user);
    memset(r, 0, sizeof *r);
}

/* ---------------- errors ---------------- */

static char *dump(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    TL_ASSERT(s);
    return s;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

/* A JSON string of s even when s is not valid UTF-8 (an error message that quotes a client's bytes,
 * or cut one of them in half with "%.40s"): each invalid byte becomes U+FFFD. */
static json_t *utf8_string(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    tl_strbuf b = {0};
    tl_strbuf_append(&b, "", 0);
    for (size_t i = 0, n = strlen(s); i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *one = l && i + l <= n ? json_stringn(s + i, l) : NULL;
        if (one) {
            tl_strbuf_append(&b, s + i, l);
            json_decref(one);
            i += l;
        } else {
            tl_strbuf_append(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    j = json_string(b.p);
    tl_strbuf_free(&b);
    return j ? j : json_string("");
}

static json_t *error_obj(const char *message, const char *type, const char *param, const char *code) {
    json_t *err = json_object();
    json_object_set_new(err, "message", utf8_string(message ? message : ""));
    json_object_set_new(err, "type", json_string(type ? type : "invalid_request_error"));
    json_object_set_new(err, "param", str_or_null(param));
    json_object_set_new(err, "code", str_or_null(code));
    return err;
}

char *tl_api_error_json(const char *message, const char *type, const char *param, const char *code) {
    json_t *o = json_object();
    json_object_set_new(o, "error", error_obj(message, type, param, code));
    return dump(o);
}

char *tl_api_context_error_json(int n_prompt, int n_ctx, int max_tokens, const char *prompt_param) {
    char msg[400];
    if (max_tokens > 0)
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the "
                 "prompt, %d in the completion). Please reduce the length of the prompt or completion.",
                 n_ctx, n_prompt + max_tokens, n_prompt, max_tokens);
    else
        snprintf(msg, sizeof msg,
                 "This model's maximum context length is %d tokens. However, your prompt has %d tokens, which "
                 "leaves no room for a completion. Please reduce the length of the prompt.",
                 n_ctx, n_prompt);
    /* the prompt alone leaves no room for a token: shortening it is the fix, whatever max_tokens says */
    const char *param = n_prompt >= n_ctx || max_tokens <= 0 ? prompt_param : "max_tokens";
    json_t *err = error_obj(msg, "invalid_request_error", param, "context_length_exceeded");
    json_object_set_new(err, "prompt_tokens", json_integer(n_prompt));
    json_object_set_new(err, "max_context_length", json_integer(n_ctx));
    json_object_set_new(err, "requested_tokens", json_integer(n_prompt + (max_tokens > 0 ? max_tokens : 0)));
    json_t *o = json_object();
    json_object_set_new(o, "error", err);
    return dump(o);
}

/* ---------------- responses ---------------- */

const char *tl_api_finish_reason(tl_finish f) {
    switch (f) {
    case TL_FINISH_STOP: return "stop";
    case TL_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

/* A token's text for logprobs. A token that is only part of a UTF-8 character is not valid JSON
 * text on its own: its non-ASCII bytes are written "bytes:\\xNN" (as OpenAI does); `bytes` has them raw. */
static json_t *token_str(const tl_api_resp *r, int32_t id, json_t **bytes) {
    size_t n = 0;
    const char *p = r->piece ? r->piece(r->tok, id, &n) : NULL;
    char tmp[32];
    if (!p) {
        snprintf(tmp, sizeof tmp, "<%d>", (int)id);
        p = tmp;
        n = strlen(tmp);
    }
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(*bytes, json_integer((unsigned char)p[i]));
    }
    json_t *s = json_stringn(p, n);
    if (!s) { /* not valid UTF-8 on its own (part of a multi-byte character) */
        tl_strbuf b = {0};
        tl_strbuf_append(&b, "bytes:", 6);
        for (size_t i = 0; i < n; i++) {
            char x[16];
            unsigned char c = (unsigned char)p[i];
            int k = c < 0x80 && c >= 0x20 ? snprintf(x, sizeof x, "%c", c) : snprintf(x, sizeof x, "\\x%02x", c);
            tl_strbuf_append(&b, x, (size_t)k);
        }
        s = json_string(b.p);
        tl_strbuf_free(&b);
        if (!s) s = json_string("");
    }
    return s;
}

static json_t *chat_logprobs(const tl_api_resp *r, const tl_api_logprob *lp, int n_lp) {
    json_t *content = json_array();
    for (int i = 0; i < n_lp; i++) {
        json_t *bytes, *it = json_object();
        json_object_set_new(it, "token", token_str(r, lp[i].token, &bytes));
        json_object_set_new(it, "logprob", json_real(lp[i].logprob));
        json_object_set_new(it, "bytes", bytes);
        json_t *top = json_array();
        for (int k = 0; k < lp[i].n_top; k++) {
            json_t *b2, *t = json_object();
            json_object_set_new(t, "token", token_str(r, lp[i].top_ids[k], &b2));
            json_object_set_new(t, "logprob", json_real(lp[i].top_logprobs[k]));
            json_object_set_new(t, "bytes", b2);
            json_array_append_new(top, t);
        }
        json_object_set_new(it, "top_logprobs", top);
        json_array_append_new(content, it);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

/* Characters (code points) of a UTF-8 string: what a client's string index counts. */
static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs": [{tok: lp}], "text_offset"}; the offsets
 * start at *text_off (the completion's characters before these tokens) and *text_off moves past them. */
static json_t *cmpl_logprobs(const tl_api_resp *r, const tl_api_logprob *lp, int n_lp, size_t *text_off) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = *text_off;
    for (int i = 0; i < n_lp; i++) {
        json_t *s = token_str(r, lp[i].token, NULL);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += utf8_chars(json_string_value(s), json_string_length(s));
        json_array_append_new(toks, s);
        json_array_append_new(lps, json_real(lp[i].logprob));
        json_t *t = json_object();
        for (int k = 0; k < lp[i].n_top; k++) {
            json_t *ks = token_str(r, lp[i].top_ids[k], NULL);
            json_object_set_new(t, json_string_value(ks), json_real(lp[i].top_logprobs[k]));
            json_decref(ks);
        }
        json_array_append_new(tops, t);
    }
    *text_off = off;
    json_t *o = json_object();
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

static json_t *usage_obj(const tl_api_resp *r) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(r->n_prompt));
    json_object_set_new(u, "completion_tokens", json_integer(r->n_completion));
    json_object_set_new(u, "total_tokens", json_integer(r->n_prompt + r->n_completion));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(r->n_cached));
    json_object_set_new(u, "prompt_tokens_details", d);
    return u;
}

static json_t *envelope(const tl_api_resp *r, const char *object) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id ? r->id : ""));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(r->created));
    json_object_set_new(o, "model", json_string(r->model ? r->model : ""));
    json_object_set_new(o, "system_fingerprint", json_string("tinyllm"));
    return o;
}

/* Text that came out of the detokenizer is valid UTF-8; anything else is replaced, never dropped. */
static json_t *text_json(const char *text, size_t len) {
    json_t *s = json_stringn(text ? text : "", text ? len : 0);
    return s ? s : json_string("\xEF\xBF\xBD");
}

char *tl_api_response_json(const tl_api_resp *r, const char *text, size_t len, const tl_api_logprob *lp, int n_lp,
                           const char *finish_reason) {
    bool chat = r->kind == TL_API_CHAT;
    json_t *o = envelope(r, chat ? "chat.completion" : "text_completion");
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        json_object_set_new(msg, "content", text_json(text, len));
        json_object_set_new(ch, "message", msg);
    } else {
        json_object_set_new(ch, "text", text_json(text, len));
    }
    size_t off = 0;
    json_object_set_new(ch, "logprobs", !r->logprobs ? json_null()
                                        : chat       ? chat_logprobs(r, lp, n_lp)
                                                     : cmpl_logprobs(r, lp, n_lp, &off));
    json_object_set_new(ch, "finish_reason", str_or_null(finish_reason));
    json_t *choices = json_array();
    json_array_append_new(choices, ch);
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_obj(r));
    return dump(o);
}

static void sse_event(tl_strbuf *out, json_t *o) {
    char *s = dump(o);
    tl_strbuf_append(out, "data: ", 6);
    tl_strbuf_append(out, s, strlen(s));
    tl_strbuf_append(out, "\n\n", 2);
    free(s);
}

void tl_api_sse_chunk(tl_strbuf *out, tl_api_resp *r, bool first, const char *text, size_t len,
                      const tl_api_logprob *lp, int n_lp, const char *finish_reason, bool usage_null) {
    bool chat = r->kind == TL_API_CHAT;
    json_t *o = envelope(r, chat ? "chat.completion.chunk" : "text_completion");
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (chat) {
        json_t *d = json_object();
        if (first) json_object_set_new(d, "role", json_string("assistant"));
        if (len || first) json_object_set_new(d, "content", text_json(text, len));
        json_object_set_new(ch, "delta", d);
    } else {
        json_object_set_new(ch, "text", text_json(text, len));
    }
    json_object_set_new(ch, "logprobs", !r->logprobs || n_lp == 0 ? json_null()
                                        : chat                    ? chat_logprobs(r, lp, n_lp)
                                                                  : cmpl_logprobs(r, lp, n_lp, &r->text_offset));
    json_object_set_new(ch, "finish_reason", str_or_null(finish_reason));
    json_t *choices = json_array();
    json_array_append_new(choices, ch);
    json_object_set_new(o, "choices", choices);
    if (usage_null) json_object_set_new(o, "usage", json_null());
    sse_event(out, o);
}

void tl_api_sse_usage(tl_strbuf *out, const tl_api_resp *r) {
    json_t *o = envelope(r, r->kind == TL_API_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_obj(r));
    sse_event(out, o);
}

void tl_api_sse_error(tl_strbuf *out, const char *message, const char *type) {
    json_t *o = json_object();
    json_object_set_new(o, "error", error_obj(message, type, NULL, NULL));
    sse_event(out, o);
}

void tl_api_sse_done(tl_strbuf *out) { tl_strbuf_append(out, "data: [DONE]\n\n", 14); }

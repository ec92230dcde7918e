#!/usr/bin/env python3
"""End-to-end tests of `tinyllm serve`: the real server on a free loopback port with dummy:tiny (random
weights, Qwen2's vocabulary) and the Qwen2.5 tokenizer, driven by the official `openai` client and by
raw HTTP: chat and completions, streamed and not, stop strings, seeds, usage, logprobs, every error
shape, overload (429), client disconnects (blocks freed), garbage input, and SIGTERM.

Expected values never come from the server itself: token ids come from HF `tokenizers`; texts are
compared across independent paths (streamed vs not, with vs without a stop string, same seed twice)."""
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import loadtest as lt  # noqa: E402

import openai  # noqa: E402

KEY = "sk-test-0123456789"
N_PASS = 0
N_FAIL = 0


def check(cond, what):
    global N_PASS, N_FAIL
    if cond:
        N_PASS += 1
    else:
        N_FAIL += 1
        print("FAIL:", what, flush=True)


def raises(fn, exc, status=None):
    try:
        fn()
    except exc as e:
        return status is None or getattr(e, "status_code", None) == status, e
    except Exception as e:  # noqa: BLE001
        return False, e
    return False, None


def chat_text(client, **kw):
    r = client.chat.completions.create(model=MODEL, **kw)
    return r.choices[0].message.content, r


def stream_chat(client, **kw):
    text, finish, usage, n = "", None, None, 0
    for ch in client.chat.completions.create(model=MODEL, stream=True, **kw):
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            n += 1
            if c.delta.content:
                text += c.delta.content
            if c.finish_reason:
                finish = c.finish_reason
    return text, finish, usage, n


MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story about a cat."}]


def test_basic(client, url):
    t, r = chat_text(client, messages=MSGS, max_tokens=12, temperature=0)
    check(r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length"), "chat shape")
    check(r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 10 and
          r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "chat usage %s" % r.usage)
    check(r.model == MODEL, "model name echoed")
    # streamed == non-streamed (greedy), usage only in the last chunk, finish_reason in the stream
    st, finish, usage, _ = stream_chat(client, messages=MSGS, max_tokens=12, temperature=0,
                                       stream_options={"include_usage": True})
    check(st == t, "stream text == non-stream text: %r vs %r" % (st, t))
    check(finish == r.choices[0].finish_reason, "stream finish_reason")
    check(usage is not None and usage.completion_tokens == r.usage.completion_tokens and
          usage.prompt_tokens == r.usage.prompt_tokens, "include_usage chunk %s" % usage)
    _, _, usage2, _ = stream_chat(client, messages=MSGS, max_tokens=4, temperature=0)
    check(usage2 is None, "no usage without include_usage")
    # completions
    c = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0)
    check(c.object == "text_completion" and c.usage.completion_tokens <= 10 and c.usage.prompt_tokens == 4,
          "completion usage %s" % c.usage)
    txt = ""
    for ch in client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0,
                                        stream=True):
        txt += ch.choices[0].text
    check(txt == c.choices[0].text, "completion stream == non-stream")
    # max_tokens = 1 and max_completion_tokens
    _, r1 = chat_text(client, messages=MSGS, max_completion_tokens=1, temperature=0)
    check(r1.usage.completion_tokens == 1 and r1.choices[0].finish_reason in ("length", "stop"), "max_completion_tokens")
    # models
    ms = client.models.list()
    check([m.id for m in ms.data] == [MODEL], "models list")


def test_seed(client):
    a, _ = chat_text(client, messages=MSGS, max_tokens=16, temperature=1.0, seed=1234)
    b, _ = chat_text(client, messages=MSGS, max_tokens=16, temperature=1.0, seed=1234)
    c, _ = chat_text(client, messages=MSGS, max_tokens=16, temperature=1.0, seed=99)
    check(a == b, "same seed, same text: %r vs %r" % (a, b))
    check(a != c, "different seed, different text (random weights): %r" % a)
    s, _, _, _ = stream_chat(client, messages=MSGS, max_tokens=16, temperature=1.0, seed=1234)
    check(s == a, "same seed streamed")
    k, _ = chat_text(client, messages=MSGS, max_tokens=16, temperature=0.8, seed=5, top_p=0.9,
                     presence_penalty=0.5, frequency_penalty=0.5,
                     extra_body={"repetition_penalty": 1.2, "top_k": 20, "min_p": 0.01})
    check(isinstance(k, str), "all sampling fields accepted")


def test_stop(client):
    ref, r = chat_text(client, messages=MSGS, max_tokens=24, temperature=1.0, seed=7)
    check(len(ref) >= 8, "reference text long enough: %r" % ref)
    # stop strings cut from the middle of the reference: they likely span token boundaries
    for k, width in ((len(ref) // 2, 3), (len(ref) // 3, 2), (1, 4)):
        stop = ref[k:k + width]
        want = ref[:ref.find(stop)]
        t, rs = chat_text(client, messages=MSGS, max_tokens=24, temperature=1.0, seed=7, stop=[stop, "never-xyz"])
        check(t == want and rs.choices[0].finish_reason == "stop", "stop %r: %r want %r" % (stop, t, want))
        st, finish, _, _ = stream_chat(client, messages=MSGS, max_tokens=24, temperature=1.0, seed=7, stop=stop)
        check(st == want and finish == "stop" and stop not in st, "streamed stop %r: %r want %r" % (stop, st, want))
    t, rs = chat_text(client, messages=MSGS, max_tokens=24, temperature=1.0, seed=7, stop="zzz-not-there")
    check(t == ref and rs.choices[0].finish_reason == r.choices[0].finish_reason, "stop that never matches")


def test_logprobs(client):
    _, r = chat_text(client, messages=MSGS, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    check(len(lp) == r.usage.completion_tokens, "one logprob per token (%d vs %d)" % (len(lp), r.usage.completion_tokens))
    ok = all(len(x.top_logprobs) == 3 and x.logprob <= 0 and
             abs(x.logprob - max(t.logprob for t in x.top_logprobs)) < 1e-4 for x in lp)
    check(ok, "greedy token is the top-1 alternative, logprob <= 0")
    ok = all(x.top_logprobs[0].logprob >= x.top_logprobs[1].logprob >= x.top_logprobs[2].logprob for x in lp)
    check(ok, "top_logprobs sorted")
    # streamed: one entry per token over the chunks, the same values as the non-streamed answer
    got, usage = [], None
    for ch in client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=6, temperature=0, logprobs=True,
                                             top_logprobs=3, stream=True, stream_options={"include_usage": True}):
        if ch.usage:
            usage = ch.usage
        if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            got += ch.choices[0].logprobs.content
    check(usage is not None and len(got) == usage.completion_tokens == len(lp) and
          all(abs(a.logprob - b.logprob) < 1e-5 and a.token == b.token for a, b in zip(got, lp)),
          "streamed logprobs equal the non-streamed ones (%d vs %d)" % (len(got), len(lp)))
    c = client.completions.create(model=MODEL, prompt="Hello", max_tokens=5, temperature=0, logprobs=2)
    l2 = c.choices[0].logprobs
    check(len(l2.tokens) == c.usage.completion_tokens and len(l2.token_logprobs) == len(l2.tokens) and
          all(len(t) <= 2 for t in l2.top_logprobs), "completions logprobs shape")
    # text_offset: where each token starts in the completion, in characters, over the whole stream
    want = [sum(len(t) for t in l2.tokens[:i]) for i in range(len(l2.tokens))]
    check(l2.text_offset == want, "completions text_offset %s, token lengths give %s" % (l2.text_offset, want))
    offs = []
    for ch in client.completions.create(model=MODEL, prompt="Hello", max_tokens=5, temperature=0, logprobs=2,
                                        stream=True):
        if ch.choices and ch.choices[0].logprobs:
            offs += ch.choices[0].logprobs.text_offset
    check(offs == want, "streamed text_offset %s, want %s" % (offs, want))


def test_tokenize(url):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(lt.shared("assets/qwen2.5-tokenizer/tokenizer.json"))
    for text in ("Hello world", "héllo wörld 你好 🙂", "  spaces\n\nand\ttabs 123456"):
        st, body = lt.post(url, "/tokenize", {"prompt": text}, AUTH)
        want = tok.encode(text, add_special_tokens=False).ids
        check(st == 200 and json.loads(body)["tokens"] == want, "/tokenize %r: %s want %s" % (text, body, want))
        st, body = lt.post(url, "/detokenize", {"tokens": want}, AUTH)
        check(st == 200 and json.loads(body)["prompt"] == text, "/detokenize %r: %s" % (text, body))
    # a NUL byte inside the text (its own token) must not cut the rest of it off
    want = tok.encode("a\x00b", add_special_tokens=False).ids
    st, body = lt.post(url, "/detokenize", {"tokens": want}, AUTH)
    check(st == 200 and json.loads(body)["prompt"] == "a\x00b", "/detokenize with a NUL byte: %s" % body)
    st, _ = lt.post(url, "/detokenize", {"tokens": [1, -1]}, AUTH)
    check(st == 400, "detokenize bad id")
    st, _ = lt.post(url, "/tokenize", {"nope": 1}, AUTH)
    check(st == 400, "tokenize without prompt")


def err_of(body):
    try:
        e = json.loads(body)["error"]
        return e if isinstance(e["message"], str) and e["message"] and "type" in e else None
    except (ValueError, KeyError, TypeError):
        return None


def test_errors(client, url):
    bad = openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong", max_retries=0)
    ok, _ = raises(lambda: bad.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=2), openai.AuthenticationError, 401)
    check(ok, "wrong key -> 401")
    st, body = lt.post(url, "/v1/chat/completions", {"messages": MSGS})
    check(st == 401 and err_of(body), "missing key -> 401")
    st, body = lt.post(url, "/v1/chat/completions", {"messages": MSGS}, {"Authorization": "Bearer " + KEY + "x"})
    check(st == 401, "longer key -> 401")
    check(lt.get(url, "/health")[0] == 200 and lt.get(url, "/metrics")[0] == 200, "health/metrics need no key")

    ok, e = raises(lambda: client.chat.completions.create(model="other-model", messages=MSGS), openai.BadRequestError, 400)
    check(ok and "other-model" in str(e), "unknown model -> 400")
    ok, _ = raises(lambda: client.chat.completions.create(model=MODEL, messages=MSGS, n=2), openai.BadRequestError, 400)
    check(ok, "n=2 -> 400")
    ok, e = raises(lambda: client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=5000),
                   openai.BadRequestError, 400)
    body = getattr(e, "body", None) or {}
    check(ok and body.get("code") == "context_length_exceeded" and body.get("max_context_length") == 4096 and
          body.get("prompt_tokens", 0) > 0 and body.get("requested_tokens") == body.get("prompt_tokens", 0) + 5000,
          "context overflow -> 400 with numbers: %s" % body)
    long_prompt = "hello " * 4200
    ok, e = raises(lambda: client.completions.create(model=MODEL, prompt=long_prompt), openai.BadRequestError, 400)
    check(ok and "4096" in str(e), "prompt longer than the context -> 400")

    cases = [
        ("/v1/chat/completions", b"{not json"), ("/v1/chat/completions", b""), ("/v1/chat/completions", b"[]"),
        ("/v1/chat/completions", b'{"model": "%s"}' % MODEL.encode()),
        ("/v1/chat/completions", b'{"messages": "hi"}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stop": [1]}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "bogus", "content": "x"}]}'),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'),
        ("/v1/completions", b'{"prompt": 5}'), ("/v1/completions", b'{"prompt": [1, 999999999]}'),
        ("/v1/completions", b'{"prompt": ""}'),
    ]
    for path, body in cases:
        st, resp = lt.post(url, path, body, AUTH)
        check(st == 400 and err_of(resp), "%s %r -> %d %s" % (path, body[:60], st, resp[:200]))
    st, resp = lt.get(url, "/v1/nothing", AUTH)
    check(st == 404 and err_of(resp), "unknown path -> 404")
    st, resp = lt.get(url, "/v1/chat/completions", AUTH)
    check(st == 405 and err_of(resp), "GET on a POST route -> 405")
    # HEAD on a GET route answers as GET without the body (RFC 9110 requires HEAD wherever GET works)
    for path in ("/health", "/v1/models"):
        c = lt.conn_for(url, 10)
        try:
            c.request("HEAD", path, headers=AUTH)
            r = c.getresponse()
            check(r.status == 200 and r.read() == b"", "HEAD %s -> %d" % (path, r.status))
        finally:
            c.close()
    st, resp = lt.get(url, "/v1/models")
    check(st == 401, "no key on /v1/models -> 401 (HEAD is not a way around it either)")
    st, resp = lt.post(url, "/v1/chat/completions", b'{"x": "' + b"a" * (80 * 1024) + b'"}', AUTH)
    check(st == 413 and err_of(resp), "body over --max-body -> 413")


def raw_send(url, data, read=True):
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1)
    try:
        s.sendall(data)
        if read:
            try:
                return s.recv(4096)
            except OSError:
                return b""
    finally:
        s.close()
    return b""


def test_garbage(url):
    raw_send(url, b"\x00\x01\x02garbage\r\n\r\n")
    raw_send(url, b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 100000 + b"\r\n\r\n")
    raw_send(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"prompt\"", read=False)
    raw_send(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    raw_send(url, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    check(lt.get(url, "/health")[0] == 200, "still answering after garbage")


def test_overload_and_disconnect(url):
    """429 when the queue is full; disconnects mid-stream and mid-wait free their KV blocks."""
    m0 = lt.metrics(url)
    results = []

    def one(i):
        try:
            st, body = lt.post(url, "/v1/completions", {"prompt": "load %d" % i, "max_tokens": 24,
                                                        "temperature": 0}, AUTH)
        except OSError as e:
            st, body = -1, repr(e)
        results.append((st, body))

    ths = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    sts = sorted(s for s, _ in results)
    check(sts.count(429) >= 1 and sts.count(200) >= 2 and set(sts) <= {200, 429}, "some 429 under overload: %s" % sts)
    b429 = [b for s, b in results if s == 429]
    check(all(err_of(b) for b in b429), "429 has the error shape")
    m, idle = lt.wait_idle(url, 30)
    check(idle, "idle after overload")

    # mid-stream disconnect of a long generation
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"prompt": "stream then leave", "max_tokens": 3000, "stream": True, "temperature": 0})
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (KEY, len(body), body)).encode())
    got = b""
    while got.count(b"data: ") < 3:
        d = s.recv(4096)
        if not d:
            break
        got += d
    busy = lt.metrics(url)
    check(busy["tinyllm_running_seqs"] == 1 and busy["tinyllm_kv_blocks_used"] >= 1, "stream running: %s" %
          busy.get("tinyllm_kv_blocks_used"))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset: the next write fails
    s.close()
    t0 = time.time()
    m, idle = lt.wait_idle(url, 10)
    check(idle, "blocks freed after a mid-stream disconnect (%.2f s)" % (time.time() - t0))
    # mid-wait disconnect (non-streamed): the watcher sees the hang-up while the connection is suspended
    body = json.dumps({"prompt": "wait then leave", "max_tokens": 3000, "temperature": 0})
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
               % (KEY, len(body), body)).encode())
    t_end = time.time() + 10
    while lt.metrics(url)["tinyllm_running_seqs"] < 1 and time.time() < t_end:
        time.sleep(0.05)
    s.close()
    t0 = time.time()
    m, idle = lt.wait_idle(url, 10)
    dt = time.time() - t0
    check(idle and dt < 5, "blocks freed after a mid-wait disconnect (%.2f s)" % dt)
    check(m["tinyllm_client_disconnects_total"] - m0["tinyllm_client_disconnects_total"] == 2,
          "two disconnects counted: %s" % m["tinyllm_client_disconnects_total"])
    check(m['tinyllm_requests_total{status="429"}'] >= 1 and m['tinyllm_requests_total{status="499"}'] >= 2,
          "metrics count 429 and 499")


def test_metrics(url):
    m = lt.metrics(url)
    for k in ("tinyllm_time_to_first_token_seconds_count", "tinyllm_inter_token_latency_seconds_count",
              "tinyllm_kv_blocks_free", "tinyllm_prefix_cache_hit_rate", "tinyllm_queue_depth",
              'tinyllm_requests_total{status="200"}', "tinyllm_prompt_tokens_total", "tinyllm_generation_tokens_total"):
        check(k in m, "metric %s" % k)
    check(m["tinyllm_time_to_first_token_seconds_count"] > 0 and m["tinyllm_generation_tokens_total"] > 0 and
          m['tinyllm_requests_total{status="400"}'] > 0, "metrics counted")
    check(m["tinyllm_prefix_cache_hits_total"] > 0, "repeated prompts hit the prefix cache")


def test_real_model():
    """stories260K (real trained weights, 512-token vocabulary: words span several tokens) against the greedy
    text llama2.c published: the server's greedy continuation, cut by stop strings, streamed and not."""
    srv = lt.Server(model=lt.shared("assets/stories260K/stories260K.gguf"), tokenizer="",
                    extra=["--threads", "1", "--served-model-name", "stories"])
    try:
        expected = open(lt.shared("assets/stories260K/expected_greedy_from_bos.txt")).read()
        prompt = "Once upon a time"
        cont = expected[len(prompt):]
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=60)
        c = client.completions.create(model="stories", prompt=prompt, max_tokens=60, temperature=0)
        text = c.choices[0].text
        check(len(text) > 100 and cont.startswith(text), "greedy continuation matches llama2.c: %r" % text)
        for stop in ("Lily", "a big, red", "outside in", "ball. She"):
            want = cont[:cont.find(stop)]
            r = client.completions.create(model="stories", prompt=prompt, max_tokens=60, temperature=0, stop=[stop])
            check(r.choices[0].text == want and r.choices[0].finish_reason == "stop",
                  "stories stop %r: %r want %r" % (stop, r.choices[0].text, want))
            chunks = [ch.choices[0].text for ch in client.completions.create(
                model="stories", prompt=prompt, max_tokens=60, temperature=0, stop=stop, stream=True)]
            check("".join(chunks) == want and not any(stop in x for x in chunks),
                  "stories streamed stop %r: %r" % (stop, "".join(chunks)))
        st, body = lt.post(srv.url, "/tokenize", {"prompt": "Lily"})
        ids = json.loads(body)["tokens"]
        check(st == 200 and len(ids) >= 2 and ids[0] == 1, "llama GGUF prompt gets BOS; words span tokens: %s" % ids)
        # /tokenize counts what a generation request feeds the model (usage.prompt_tokens), BOS included:
        # the chat template gets one too, and a prompt that starts with "<s>" does not get a second
        msgs = [{"role": "user", "content": "Hi"}]
        for path, body, key in (("/v1/chat/completions", {"messages": msgs}, "messages"),
                                ("/v1/completions", {"prompt": "<s>Lily"}, "prompt")):
            st, tb = lt.post(srv.url, "/tokenize", {key: body[key]})
            st2, gb = lt.post(srv.url, path, dict(body, max_tokens=1))
            toks, used = json.loads(tb)["tokens"], json.loads(gb)["usage"]["prompt_tokens"]
            check(st == st2 == 200 and len(toks) == used and toks[0] == 1 and toks[1] != 1,
                  "/tokenize %s: %s, the request used %d tokens" % (key, toks[:4], used))
        check(srv.stop() == 0, "stories server exits cleanly")
    finally:
        srv.kill()
    # A KV pool of 51 blocks (816 tokens, under the 2048-token context): the limit announced and checked is
    # the pool's; 12 concurrent greedy requests force preemption and must still each give llama2.c's text.
    srv = lt.Server(model=lt.shared("assets/stories260K/stories260K.gguf"), tokenizer="",
                    extra=["--threads", "1", "--served-model-name", "stories", "--kv-cache-mem", "1M"])
    try:
        st, body = lt.post(srv.url, "/v1/completions", {"prompt": "Once upon a time " * 250, "max_tokens": 10})
        err = (json.loads(body).get("error") or {}) if st == 400 else {}
        check(st == 400 and err.get("code") == "context_length_exceeded" and err.get("max_context_length") == 816,
              "request larger than the KV pool -> 400 before admission: %d %s" % (st, body[:300]))
        st, body = lt.get(srv.url, "/v1/models")
        check(json.loads(body)["data"][0]["max_model_len"] == 816, "max_model_len is the pool's limit")
        outs = [None] * 12

        def one(i):
            try:
                outs[i] = lt.post(srv.url, "/v1/completions", {"prompt": prompt, "max_tokens": 150 + 5 * i,
                                                              "temperature": 0}, timeout=120)
            except OSError as e:
                outs[i] = (-1, repr(e))

        ths = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(150)
        texts = [json.loads(b)["choices"][0]["text"] if st == 200 else None for st, b in outs]
        check(all(t is not None and len(t) > 100 and cont.startswith(t) for t in texts),
              "12 concurrent greedy requests under preemption equal llama2.c's text: %r" % texts[:2])
        m, idle = lt.wait_idle(srv.url, 10)
        check(idle and m["tinyllm_preemptions_total"] > 0, "preempted (%s) and idle after" % m.get("tinyllm_preemptions_total"))
        check(srv.stop() == 0, "small-pool server exits cleanly")
    finally:
        srv.kill()


def test_shutdown():
    """SIGTERM with a stream in flight: the stream ends (error event, [DONE]) and the process exits 0."""
    srv = lt.Server(extra=["--threads", "2", "--shutdown-grace", "1"])
    try:
        port = srv.port
        body = json.dumps({"prompt": "never ends", "max_tokens": 3000, "stream": True})
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
        got = b""
        while got.count(b"data: ") < 2:
            got += s.recv(4096)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        rc = srv.stop(timeout=20)
        check(b'"error"' in got and b"data: [DONE]" in got, "stream ended with an error event and [DONE]")
        check(rc == 0 and any("stopped cleanly" in l for l in srv.log), "clean exit after SIGTERM: rc=%s" % rc)
        check(time.time() - t0 < 10, "shutdown within the grace period + margin")
    finally:
        srv.kill()


def main():
    global MODEL, AUTH
    t0 = time.time()
    srv = lt.Server(extra=["--threads", "2", "--api-key", KEY, "--max-body", "64K", "--max-queue", "3",
                           "--max-seqs", "2"], wait_ready=False)
    try:
        check(srv.first_health == 503, "health is 503 while the model loads (got %s)" % srv.first_health)
        srv.wait_ready()
        url = srv.url
        MODEL = "dummy:tiny"
        AUTH = {"Authorization": "Bearer " + KEY}
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)
        for name, fn in (("basic", lambda: test_basic(client, url)), ("seed", lambda: test_seed(client)),
                         ("stop", lambda: test_stop(client)), ("logprobs", lambda: test_logprobs(client)),
                         ("tokenize", lambda: test_tokenize(url)), ("errors", lambda: test_errors(client, url)),
                         ("garbage", lambda: test_garbage(url)),
                         ("overload", lambda: test_overload_and_disconnect(url)), ("metrics", lambda: test_metrics(url))):
            t = time.time()
            fn()
            print("test_server: %-9s done in %.1f s" % (name, time.time() - t), flush=True)
        rc = srv.stop()
        check(rc == 0, "exit code 0 after SIGTERM (got %s)" % rc)
        # clients hung up above (mid-stream, mid-wait, garbage): routine for a server, so libmicrohttpd's own
        # "Failed to send ..." lines stay out of the log unless TL_LOG=3 asks for them
        noisy = [l.strip() for l in srv.log if "Failed to send" in l or "forcibly closed" in l]
        check(not noisy, "libmicrohttpd's hang-up messages in the server log: %s" % noisy[:2])
    finally:
        srv.kill()
        if N_FAIL:
            print("server log (last 40 lines):\n" + "".join(srv.log[-40:]))
    test_real_model()
    test_shutdown()
    print("test_server: %.1f s total" % (time.time() - t0))
    print("%d passed, %d failed" % (N_PASS, N_FAIL))
    sys.exit(1 if N_FAIL else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fault tests of `tinyllm serve` (loopback only, bounded in time): each fault, the error the client
gets, and that the server is still alive, idle and correct afterwards (KV blocks back to 0, a normal
request answers the same greedy text as before). docs/SECURITY.md tabulates the results.

Faults: KV pool exhaustion under load; max_tokens far beyond the context; thousands of stop strings;
a 10 MB prompt (413 at the default body limit; tokenized and refused for its length with a larger
one); invalid UTF-8 and NUL bytes in JSON and prompts; token ids that decode to invalid UTF-8;
slowloris clients; a flood of connections beyond --max-connections; the model file replaced,
modified or truncated while mapped; a full disk while `tinyllm quantize` writes. Under the sanitizer build (TL_SANITIZE=1) sizes shrink."""
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import loadtest as lt  # noqa: E402

SAN = os.environ.get("TL_SANITIZE") == "1"
N_PASS = N_FAIL = 0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check(cond, what):
    global N_PASS, N_FAIL
    if cond:
        N_PASS += 1
    else:
        N_FAIL += 1
        print("FAIL:", what, flush=True)


def err(body):
    try:
        return json.loads(body).get("error", {})
    except ValueError:
        return {}


def greedy(url, model, prompt=None, n=8):
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": prompt or [1, 2, 3], "max_tokens": n,
                                                "temperature": 0})
    return st, (json.loads(body)["choices"][0]["text"] if st == 200 else body)


def alive_and_idle(url, model, ref, what):
    m, idle = lt.wait_idle(url, 60)
    check(idle, "%s: server idle afterwards, KV blocks back to 0: %s" % (what, {k: v for k, v in m.items() if "kv_blocks_used" in k or "running" in k}))
    st, text = greedy(url, model)
    check(st == 200 and text == ref, "%s: a normal request still gives the same greedy text (%s %r vs %r)" % (what, st, text, ref))


def test_requests(srv, model, ref):
    url = srv.url
    # max_tokens far beyond the context
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 10 ** 7})
    e = err(body)
    check(st == 400 and e.get("code") == "context_length_exceeded", "max_tokens 1e7: %s %s" % (st, body[:200]))
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 10 ** 12})
    check(st == 400 and err(body).get("param") == "max_tokens", "max_tokens 1e12: %s %s" % (st, body[:200]))
    # thousands of stop strings; one huge stop string
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 4,
                                                "stop": ["s%d" % i for i in range(5000)]})
    check(st == 400 and err(body).get("param") == "stop", "5000 stop strings: %s %s" % (st, body[:200]))
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 4, "stop": ["x" * 100000]})
    check(st == 400 and err(body).get("param") == "stop", "100 kB stop string: %s %s" % (st, body[:200]))
    # 10 MB prompt at the default 4 MiB body limit: 413 from Content-Length, body never read
    big = json.dumps({"model": model, "prompt": "The quick brown fox jumps over the lazy dog. " * (10 * 2 ** 20 // 45),
                      "max_tokens": 1}).encode()
    t0 = time.time()
    s = connect(srv.port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(big))
    sent = 0
    try:  # the server may answer and close before the body is sent: that is the point
        for i in range(0, len(big), 1 << 16):
            sent += s.send(big[i:i + (1 << 16)])
    except OSError:
        pass
    s.settimeout(30)
    resp = b""
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            resp += chunk
    except OSError:
        pass
    s.close()
    st = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.") else resp[:100]
    check(st == 413 and b"error" in resp, "10 MB prompt at the 4 MiB limit: %s %r" % (st, resp[-200:]))
    dt_413 = time.time() - t0
    print("10 MB body: %s after %.2f s, %d of %d bytes sent before the server closed" % (st, dt_413, sent, len(big)))
    # invalid UTF-8 and NUL bytes in the JSON body
    for name, raw in [("invalid UTF-8 in a string", b'{"prompt": "a\xff\xfeb", "max_tokens": 2}'),
                      ("overlong UTF-8", b'{"prompt": "a\xc0\xafb", "max_tokens": 2}'),
                      ("lone surrogate escape", b'{"prompt": "a\\ud800b", "max_tokens": 2}'),
                      ("escaped NUL", b'{"prompt": "a\\u0000b", "max_tokens": 2}'),
                      ("raw NUL in a string", b'{"prompt": "a\x00b", "max_tokens": 2}'),
                      ("NUL after the object", b'{"prompt": "ab", "max_tokens": 2}\x00'),
                      ("NUL in a key", b'{"pro\x00mpt": "ab"}')]:
        st, body = lt.post(url, "/v1/completions", raw)
        check(st == 400 and err(body).get("message"), "%s: %s %s" % (name, st, body[:200]))
    st, body = lt.post(url, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\xed\xa0\x80"}]}')
    check(st == 400, "chat content with an encoded surrogate: %s" % st)
    # token ids whose bytes are not valid UTF-8 on their own (Qwen2 byte-level tokens 0..255 include
    # lone continuation bytes): the response text is valid UTF-8 (U+FFFD), the JSON parses
    st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": [1, 2, 3], "max_tokens": 1, "temperature": 0,
                                                "logprobs": 5})
    check(st == 200, "logprobs with byte tokens: %s" % st)
    for ids in ([128, 129, 130], [255, 254], list(range(120, 200))):
        st, body = lt.post(url, "/v1/completions", {"model": model, "prompt": ids, "max_tokens": 4, "temperature": 1,
                                                    "seed": 5, "logprobs": 3})
        ok = st == 200
        try:
            json.loads(body)
        except ValueError:
            ok = False
        check(ok, "prompt of byte tokens %s: %s %s" % (ids[:4], st, body[:200]))
    st, body = lt.post(url, "/detokenize", {"tokens": [128, 129, 255]})
    check(st == 200 and "\ufffd" in json.loads(body).get("prompt", ""), "detokenize of lone bytes -> U+FFFD: %s %s" % (st, body[:200]))
    return dt_413


def test_big_prompt(model, ref):
    """With --max-body 16M the 10 MB prompt is read and tokenized, then refused for its length (400);
    meanwhile /health answers on the other HTTP thread."""
    mb = 2 if SAN else 10
    srv = lt.Server(extra=["--threads", "1", "--max-body", "16M", "--http-threads", "2"])
    try:
        big = "The quick brown fox jumps over the lazy dog. " * (mb * 2 ** 20 // 45)
        res = {}

        def send():
            t0 = time.time()
            res["st"], res["body"] = lt.post(srv.url, "/v1/completions", {"model": model, "prompt": big, "max_tokens": 1},
                                             timeout=300)
            res["dt"] = time.time() - t0

        th = threading.Thread(target=send)
        th.start()
        health = []
        while th.is_alive():
            try:
                health.append(lt.get(srv.url, "/health")[0])
            except OSError as ex:
                health.append(str(ex))
            time.sleep(0.2)
        th.join()
        e = err(res.get("body", ""))
        check(res.get("st") == 400 and e.get("code") == "context_length_exceeded",
              "%d MB prompt with --max-body 16M: %s %s" % (mb, res.get("st"), res.get("body", "")[:200]))
        check(health and all(h == 200 for h in health), "/health answered while the big prompt was tokenized: %s" % health[:10])
        print("big prompt: %d MB refused in %.1f s; %d health checks meanwhile" % (mb, res.get("dt", -1), len(health)))
        alive_and_idle(srv.url, model, ref, "big prompt")
    finally:
        check(srv.stop() == 0, "big-prompt server exits cleanly")
        srv.kill()


def test_kv_exhaustion():
    """A 256 KiB KV pool (a few blocks) and 16 concurrent long requests: preemption and queueing, every
    request answers 200 with its own greedy text, or 400 when it could never fit; nothing left in use."""
    srv = lt.Server(extra=["--threads", "2", "--kv-cache-mem", "256K", "--max-seqs", "16", "--max-queue", "64"])
    try:
        st, body = lt.get(srv.url, "/v1/models")
        max_len = json.loads(body)["data"][0].get("max_model_len")
        prompts = [[1 + i, 2, 3, 4 + i] for i in range(16)]
        n_tok = 6 if SAN else 24
        alone = [greedy(srv.url, "dummy:tiny", p, n_tok)[1] for p in prompts[:3]]
        out = [None] * 16

        def one(i):
            out[i] = greedy(srv.url, "dummy:tiny", prompts[i], n_tok)

        ths = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(300)
        check(all(o and o[0] == 200 for o in out), "16 requests over a tiny KV pool all answered 200: %s" %
              [o[0] if o else None for o in out])
        check([o[1] for o in out[:3]] == alone, "under preemption each request's greedy text equals its run alone")
        m = lt.metrics(srv.url)
        print("kv exhaustion: max_model_len %s, preemptions %s, kv peak %s of %s" % (
            max_len, m.get("tinyllm_preemptions_total"), m.get("tinyllm_kv_blocks_peak"), m.get("tinyllm_kv_blocks_total")))
        st, body = lt.post(srv.url, "/v1/completions", {"model": "dummy:tiny", "prompt": [5] * (max_len + 1), "max_tokens": 1})
        check(st == 400 and err(body).get("code") == "context_length_exceeded", "a prompt larger than the pool: %s" % st)
        m, idle = lt.wait_idle(srv.url, 60)
        check(idle, "KV blocks all returned after exhaustion")
    finally:
        check(srv.stop() == 0, "kv server exits cleanly")
        srv.kill()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def closed_by_peer(s, wait):
    """True if the server closes s within wait seconds."""
    s.settimeout(wait)
    try:
        return s.recv(1 << 16) == b"" or True
    except socket.timeout:
        return False
    except OSError:
        return True


def test_connections(model, ref):
    """--max-connections 8 --timeout 2: slowloris clients (headers never finished, a byte now and then)
    and a flood of 64 idle connections. The server closes idle ones after the timeout, refuses or drops
    connections over the limit, and serves normally once the attackers go."""
    srv = lt.Server(extra=["--threads", "1", "--max-connections", "8", "--timeout", "2", "--http-threads", "2"])
    port = srv.port
    try:
        # 1. half-finished requests that then go silent: closed after the idle timeout
        idle = [connect(port) for _ in range(4)]
        for s in idle:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        t0 = time.time()
        closed = [closed_by_peer(s, 8) for s in idle]
        check(all(closed), "silent half-requests closed by the server: %s after %.1f s" % (closed, time.time() - t0))
        for s in idle:
            s.close()
        # 2. slowloris: a header byte every 0.5 s (under the 2 s idle timeout) on 8 connections = the limit
        stop = threading.Event()
        slow = []
        for _ in range(8):
            try:
                s = connect(port)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            except OSError:
                pass

        def drip():
            while not stop.is_set():
                for s in slow:
                    try:
                        s.send(b"X")
                    except OSError:
                        pass
                time.sleep(0.5)

        th = threading.Thread(target=drip, daemon=True)
        th.start()
        time.sleep(1.0)
        try:
            st = lt.get(srv.url, "/health")[0]
        except OSError as ex:
            st = type(ex).__name__
        print("slowloris: 8 slow clients at the limit of 8: a legitimate /health got %s" % st)
        slowloris_result = st
        stop.set()
        th.join()
        for s in slow:
            s.close()
        time.sleep(0.5)
        st, text = greedy(srv.url, model)
        check(st == 200 and text == ref, "after the slowloris clients leave: served again (%s)" % st)
        # 3. a flood of 64 connections (8 allowed): extra ones are refused/closed, none hangs the server
        flood, refused = [], 0
        for _ in range(64):
            try:
                flood.append(connect(port))
            except OSError:
                refused += 1
        dropped = sum(1 for s in flood if closed_by_peer(s, 0.05))
        t_flood = time.time()
        try:
            st = lt.get(srv.url, "/health")[0]
        except OSError as ex:
            st = type(ex).__name__
        print("flood: 64 connections, %d refused at connect, %d closed at once by the server; /health during: %s" %
              (refused, dropped, st))
        # the idle flood is timed out (2 s), then service resumes
        for s in flood:
            closed_by_peer(s, 6)
        for s in flood:
            s.close()
        check(time.time() - t_flood < 30, "flood connections were timed out")
        st, text = greedy(srv.url, model)
        check(st == 200 and text == ref, "after the flood: served again (%s)" % st)
        alive_and_idle(srv.url, model, ref, "connections")
        return slowloris_result, refused, dropped
    finally:
        check(srv.stop() == 0, "connection server exits cleanly")
        srv.kill()


def test_model_file():
    """The model's safetensors file changed under a running server (weights are mmap'ed):
    replaced by rename -> keeps serving the old weights (the old inode stays mapped);
    overwritten in place with the same size -> the new bytes are used (garbage in, no crash);
    truncated in place -> touching a page past the new end raises SIGBUS: the process dies with a message."""
    src = os.path.join(ROOT, "tests", "data", "hf", "qwen2-tied-gqa2-hd64")
    d = tempfile.mkdtemp(prefix="tl_fault_model_")
    try:
        for f in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(os.path.join(src, f), d)
        st_path = os.path.join(d, "model.safetensors")
        model = d
        srv = lt.Server(model=d, extra=["--threads", "1", "--kv-cache-mem", "4M"])
        try:
            st, ref = greedy(srv.url, model, [1, 2, 3], 8)
            check(st == 200, "hf model served: %s %s" % (st, ref[:200]))
            # replace by rename: a new file with other weights under the same name
            tmp = st_path + ".new"
            with open(st_path, "rb") as f:
                data = bytearray(f.read())
            hl = int.from_bytes(data[:8], "little")
            for i in range(8 + hl, len(data), 7):
                data[i] ^= 0x55
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, st_path)
            st, text = greedy(srv.url, model, [1, 2, 3], 8)
            check(st == 200 and text == ref, "file replaced by rename: old weights still served (%s)" % st)
            rc = srv.stop()
            check(rc == 0, "clean exit (rc=%s)" % rc)
        finally:
            srv.kill()
        # in-place overwrite (same size), then truncation, under a fresh server on the original bytes
        shutil.copy(os.path.join(src, "model.safetensors"), st_path)
        srv = lt.Server(model=d, extra=["--threads", "1", "--kv-cache-mem", "4M"])
        try:
            with open(st_path, "r+b") as f:
                f.seek(8 + hl)
                f.write(bytes(len(data) - 8 - hl))  # all-zero weights
            st, text = greedy(srv.url, model, [1, 2, 3], 8)
            check(st == 200, "file overwritten in place: still answers (%s), text now %r" % (st, text))
            with open(st_path, "r+b") as f:
                f.truncate(8 + hl + 64)
            try:
                st, text = greedy(srv.url, model, [1, 2, 3], 8)
            except OSError as ex:
                st, text = type(ex).__name__, ""
            rc = srv.proc.wait(30)
            srv.reader.join(5)
            log = "".join(srv.log)
            # under ASan its own SIGBUS report may come first and exit with its code
            died = rc == -signal.SIGBUS or (SAN and rc not in (0, None))
            check(died and ("truncated or changed" in log or (SAN and "Sanitizer" in log)),
                  "file truncated in place: the server dies by SIGBUS with a message (rc=%s, reply %s, log tail %r)" %
                  (rc, st, log[-300:]))
            print("model file truncated under the server: reply %s, exit %s" % (st, rc))
        finally:
            srv.kill()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_quantize_disk_full():
    """`tinyllm quantize` when the disk fills (RLIMIT_FSIZE 64 KiB, the output needs ~370 KB): with
    SIGXFSZ ignored, writes fail with EFBIG -> a clear error, exit 1, no output folder, no temp left;
    with the default SIGXFSZ the process is killed mid-write -> no output folder (only a *.tmp-PID one).
    Without the limit the output loads and generates."""
    import resource
    src = os.path.join(ROOT, "tests", "data", "hf", "qwen2-tied-gqa2-hd64")
    d = tempfile.mkdtemp(prefix="tl_fault_quant_")
    try:
        def limit(ignore):
            def f():
                resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
                if ignore:
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            return f

        import subprocess
        for ignore in (True, False):
            out = os.path.join(d, "out%d" % ignore)
            p = subprocess.run([lt.find_bin(), "quantize", "-m", src, "-o", out], preexec_fn=limit(ignore),
                               capture_output=True, text=True, timeout=300)
            left = sorted(os.listdir(d))
            if ignore:
                check(p.returncode == 1 and "File too large" in p.stderr and not os.path.exists(out) and not left,
                      "quantize on a full disk: exit %s, error %r, left %s" % (p.returncode, p.stderr[-160:], left))
            else:
                check(p.returncode == -signal.SIGXFSZ and not os.path.exists(out) and
                      all(".tmp-" in f for f in left),
                      "quantize killed by SIGXFSZ: exit %s, nothing valid-looking left: %s" % (p.returncode, left))
            print("quantize, disk full (SIGXFSZ %s): exit %s, left %s" % ("ignored" if ignore else "default", p.returncode, left))
        out = os.path.join(d, "ok")
        p = subprocess.run([lt.find_bin(), "quantize", "-m", src, "-o", out], capture_output=True, text=True, timeout=300)
        g = subprocess.run([lt.find_bin(), "generate", "-m", out, "--tokens", "1,2,3", "-n", "4"], capture_output=True,
                           text=True, timeout=300)
        check(p.returncode == 0 and g.returncode == 0, "quantize without the limit, then generate: %s %s %r" %
              (p.returncode, g.returncode, g.stderr[-200:]))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    t0 = time.time()
    test_quantize_disk_full()
    print("quantize: %.1f s" % (time.time() - t0), flush=True)
    srv = lt.Server(extra=["--threads", "2", "--http-threads", "2"])
    try:
        st, ref = greedy(srv.url, "dummy:tiny")
        check(st == 200, "reference request: %s %s" % (st, ref))
        test_requests(srv, "dummy:tiny", ref)
        alive_and_idle(srv.url, "dummy:tiny", ref, "bad requests")
        rc = srv.stop()
        check(rc == 0, "clean exit after the bad requests (rc=%s)" % rc)
    finally:
        srv.kill()
    print("requests: %.1f s" % (time.time() - t0), flush=True)
    test_kv_exhaustion()
    print("kv: %.1f s" % (time.time() - t0), flush=True)
    test_big_prompt("dummy:tiny", ref)
    print("big prompt: %.1f s" % (time.time() - t0), flush=True)
    test_connections("dummy:tiny", ref)
    print("connections: %.1f s" % (time.time() - t0), flush=True)
    test_model_file()
    print("model file: %.1f s" % (time.time() - t0), flush=True)
    print("%d passed, %d failed" % (N_PASS, N_FAIL))
    sys.exit(1 if N_FAIL else 0)


if __name__ == "__main__":
    main()

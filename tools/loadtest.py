#!/usr/bin/env python3
"""Bounded load test of `tinyllm serve` on loopback.

Sends N requests (chat and completions, streamed and not) from C concurrent clients; a fraction of
the clients disconnect early at a random point (mid-stream, or mid-wait for a non-streamed answer).
Checks at the end: every request either completed (200 with a finish_reason, or 429 when the
queue was full) or was cancelled by its own disconnect; the server reports no running or waiting
sequence and no KV block in use (/metrics) once idle; /health still answers and a final request
completes. Prints latency percentiles (TTFT, inter-chunk, end-to-end).

  tools/loadtest.py                           # starts its own server (dummy:tiny + the Qwen2.5 tokenizer)
  tools/loadtest.py --url http://127.0.0.1:8000 --model NAME   # against a running server
  tools/loadtest.py -n 300 -c 48 --disconnect 0.2 --max-tokens 16

Only loopback addresses are allowed. The 2-core CI machine may be loaded: treat timings as rough.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_bin():
    b = os.environ.get("TL_BIN")
    if b and os.path.exists(b):
        return b
    for cand in ("build/tinyllm", "build/src/cli/tinyllm"):
        p = os.path.join(ROOT, cand)
        if os.path.exists(p):
            return p
    sys.exit("loadtest: cannot find the tinyllm binary (set TL_BIN)")


def shared(rel):
    return os.path.join(os.environ.get("TL_SHARED", os.path.join(ROOT, "..", "shared")), rel)


class Server:
    """Runs `tinyllm serve` on a free loopback port; collects its stderr."""

    def __init__(self, extra=(), model="dummy:tiny", tokenizer=None, wait_ready=True, timeout=120):
        tok = shared("assets/qwen2.5-tokenizer") if tokenizer is None else tokenizer
        self.cmd = [find_bin(), "serve", "-m", model, "--port", "0", "--kv-cache-mem", "64M"] + list(extra)
        if tok:  # "" : the model's own
            self.cmd += ["--tokenizer", tok]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        self.port = None
        got_port = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://.*:(\d+) ", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    got_port.set()
            got_port.set()

        self.reader = threading.Thread(target=reader, daemon=True)
        self.reader.start()
        if not got_port.wait(timeout) or not self.port:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        self.url = "http://127.0.0.1:%d" % self.port
        self.first_health = get(self.url, "/health")[0]
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=120):
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + "".join(self.log))
            try:
                if get(self.url, "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server not ready in %d s" % timeout)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        self.reader.join(2)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def conn_for(url, timeout=60):
    u = urllib.parse.urlparse(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadtest: loopback only (got %s)" % u.hostname)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def get(url, path, headers=None):
    c = conn_for(url, 10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def post(url, path, body, headers=None, timeout=120):
    c = conn_for(url, timeout)
    try:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=data, headers=h)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def metrics(url):
    st, text = get(url, "/metrics")
    assert st == 200, st
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def wait_idle(url, timeout=30):
    """Waits until no sequence runs or waits and no KV block is in use; returns the last metrics."""
    t_end = time.time() + timeout
    m = metrics(url)
    while time.time() < t_end:
        m = metrics(url)
        if (m.get("tinyllm_running_seqs") == 0 and m.get("tinyllm_queue_depth") == 0 and
                m.get("tinyllm_kv_blocks_used") == 0 and m.get("tinyllm_requests_in_flight") == 0):
            return m, True
        time.sleep(0.1)
    return m, False


def one_request(url, model, i, args, rng, headers):
    """Returns a dict: outcome (completed | cancelled | rejected | error), timings."""
    stream = rng.random() < getattr(args, "stream_frac", 0.7)
    chat = rng.random() < 0.5
    disconnect = rng.random() < args.disconnect
    body = {"model": model, "max_tokens": rng.randint(max(1, args.max_tokens // 2), args.max_tokens),
            "temperature": rng.choice([0.0, 0.7, 1.0]), "seed": i, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if getattr(args, "ignore_eos", False):
        body["ignore_eos"] = True
        body["max_tokens"] = rng.randint(max(1, args.min_tokens), args.max_tokens)
    words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "tiny", "model"]) for _ in range(rng.randint(2, 40)))
    if chat:
        body["messages"] = [{"role": "user", "content": "Request %d: %s" % (i, words)}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = "Request %d: %s" % (i, words)
        path = "/v1/completions"
    res = {"i": i, "stream": stream, "disconnect": disconnect}
    t0 = time.time()
    c = conn_for(url, 120)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers)
        c.request("POST", path, body=json.dumps(body), headers=h)
        if disconnect and not stream:  # mid-wait: give up before the answer
            time.sleep(rng.uniform(0.0, 0.5))
            c.sock.shutdown(socket.SHUT_RDWR)
            res["outcome"] = "cancelled"
            return res
        r = c.getresponse()
        res["status"] = r.status
        if r.status == 429:
            r.read()
            res["outcome"] = "rejected"
            return res
        if r.status != 200:
            res["outcome"] = "error"
            res["body"] = r.read()[:300]
            return res
        if not stream:
            j = json.loads(r.read())
            res["t_total"] = time.time() - t0
            res["outcome"] = "completed" if j["choices"][0]["finish_reason"] in ("stop", "length") else "error"
            res["n_tokens"] = j["usage"]["completion_tokens"]
            return res
        cut = rng.randint(1, max(1, body["max_tokens"])) if disconnect else None
        n_chunks, t_prev, gaps, finish, done = 0, None, [], None, False
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            now = time.time()
            if line == b"data: [DONE]":
                done = True
                break
            ev = json.loads(line[6:])
            if ev.get("usage"):
                res["n_tokens"] = ev["usage"]["completion_tokens"]
            if "error" in ev:
                res["outcome"] = "error"
                res["body"] = line[:300]
                return res
            if not ev["choices"]:
                continue
            n_chunks += 1
            if n_chunks == 2 or (n_chunks == 1 and not chat):
                res["t_first"] = now - t0
            elif t_prev is not None and n_chunks > 2:
                gaps.append(now - t_prev)
            t_prev = now
            if ev["choices"] and ev["choices"][0].get("finish_reason"):
                finish = ev["choices"][0]["finish_reason"]
            if cut is not None and n_chunks >= cut:
                c.sock.shutdown(socket.SHUT_RDWR)
                res["outcome"] = "cancelled"
                return res
        res["t_total"] = time.time() - t0
        res["gaps"] = gaps
        res["outcome"] = "completed" if done and finish in ("stop", "length") else "error"
        if res["outcome"] == "error":
            res["body"] = "stream ended without [DONE] or finish_reason (%s, %s)" % (done, finish)
        return res
    except (OSError, http.client.HTTPException) as e:
        res["outcome"] = "cancelled" if disconnect else "error"
        res["body"] = repr(e)
        return res
    finally:
        c.close()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def run(url, model, args, headers=None, log=print):
    headers = headers or {}
    rng = random.Random(args.seed)
    seeds = [rng.randrange(1 << 30) for _ in range(args.n)]
    m0 = metrics(url)
    t0 = time.time()
    with cf.ThreadPoolExecutor(max_workers=args.c) as ex:
        futs = [ex.submit(one_request, url, model, i, args, random.Random(seeds[i]), headers) for i in range(args.n)]
        results = [f.result() for f in futs]
    wall = time.time() - t0
    m, idle = wait_idle(url, args.idle_timeout)
    by = {}
    for r in results:
        by[r["outcome"]] = by.get(r["outcome"], 0) + 1
    errors = [r for r in results if r["outcome"] == "error"]
    h_st, _ = get(url, "/health")
    st, body = post(url, "/v1/completions", {"model": model, "prompt": "still there?", "max_tokens": 4}, headers)
    final_ok = st == 200 and json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")
    ttft = [r["t_first"] for r in results if "t_first" in r and r["outcome"] == "completed"]
    e2e = [r["t_total"] for r in results if "t_total" in r]
    gaps = [g for r in results for g in r.get("gaps", [])]
    disc = m.get("tinyllm_client_disconnects_total", 0) - m0.get("tinyllm_client_disconnects_total", 0)
    n_disc = sum(1 for r in results if r["disconnect"])
    log("loadtest: %d requests, concurrency %d, %.0f%% disconnecting, max_tokens <= %d: %.1f s wall "
        "(loopback; the machine may be loaded by other work)" % (args.n, args.c, 100 * args.disconnect,
                                                                 args.max_tokens, wall))
    log("  outcomes: %s; disconnect counted by the server: %d (clients that planned one: %d, some finished first)"
        % (json.dumps(by, sort_keys=True), disc, n_disc))
    n_tok = sum(r.get("n_tokens", 0) for r in results if r["outcome"] == "completed")
    log("  completed requests generated %d tokens: %.1f tok/s over the wall time" % (n_tok, n_tok / wall))
    log("  TTFT (streamed)  p50 %.3f  p90 %.3f  p99 %.3f s (n=%d)" % (pct(ttft, 50), pct(ttft, 90), pct(ttft, 99), len(ttft)))
    log("  inter-chunk      p50 %.3f  p90 %.3f  p99 %.3f s (n=%d)" % (pct(gaps, 50), pct(gaps, 90), pct(gaps, 99), len(gaps)))
    log("  end-to-end       p50 %.3f  p90 %.3f  p99 %.3f s (n=%d)" % (pct(e2e, 50), pct(e2e, 90), pct(e2e, 99), len(e2e)))
    log("  after: running %d, waiting %d, KV blocks used %d (peak %d of %d), health %d, final request %s" % (
        m.get("tinyllm_running_seqs", -1), m.get("tinyllm_queue_depth", -1), m.get("tinyllm_kv_blocks_used", -1),
        m.get("tinyllm_kv_blocks_peak", -1), m.get("tinyllm_kv_blocks_total", -1), h_st, "ok" if final_ok else "FAILED"))
    for r in errors[:5]:
        log("  error: %r" % (r,))
    ok = idle and not errors and h_st == 200 and final_ok and by.get("completed", 0) > 0
    return ok, {"by": by, "ttft": ttft, "e2e": e2e, "gaps": gaps, "metrics": m, "wall": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (loopback); default: start one")
    ap.add_argument("--model", default=None, help="model name for requests (default: the server's)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("-n", type=int, default=300, help="requests (default 300)")
    ap.add_argument("-c", type=int, default=48, help="concurrent clients (default 48)")
    ap.add_argument("--disconnect", type=float, default=0.2, help="fraction of clients hanging up early")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--min-tokens", type=int, default=1, help="with --ignore-eos: output lengths uniform in [min, max]")
    ap.add_argument("--ignore-eos", action="store_true", help="generate exactly max_tokens (compare with tinyllm bench)")
    ap.add_argument("--stream-frac", type=float, default=0.7, help="fraction of streamed requests")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--idle-timeout", type=float, default=30)
    ap.add_argument("--server-args", default="--threads 2 --max-seqs 64 --max-queue 512",
                    help="extra arguments when starting a server")
    args = ap.parse_args()
    srv = None
    url = args.url
    if not url:
        srv = Server(extra=args.server_args.split())
        url = srv.url
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    model = args.model
    if not model:
        st, body = get(url, "/v1/models", headers)
        model = json.loads(body)["data"][0]["id"]
    try:
        ok, _ = run(url, model, args, headers)
    finally:
        if srv:
            rc = srv.stop()
            print("  server exit code after SIGTERM: %s" % rc)
    print("loadtest: %s" % ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

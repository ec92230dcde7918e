#!/usr/bin/env python3
"""CLI behaviour: exit codes and one-line errors on bad input, generate/score output shapes,
seeded sampling reproducibility, score consistent with generate's greedy choice."""
import json, os, subprocess, sys

BIN = os.environ.get("TL_BIN", "build/tinyllm")
M = "tests/data/hf/qwen2-tied-gqa2-hd64"
failed = passed = 0


def run(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def check(cond, msg):
    global failed, passed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", msg)


rc, out, err = run()
check(rc == 2 and "usage" in err, "no command -> usage, rc 2")
rc, out, err = run("frobnicate")
check(rc == 2 and "unknown command" in err, "unknown command")
rc, out, err = run("generate", "-m", "/nonexistent/dir", "-n", "4")
check(rc == 1 and "no such file" in err and "huggingface-cli download" in err, f"missing model: {err}")
# a -m path that does not exist is named as not found (it said 'needs a model (-m PATH)' although -m
# was given, and info / bench / score said 'tinyllm chat'); the download hint stays
for cmd, extra in (("chat", ()), ("generate", ()), ("score", ("--tokens", "1,2")), ("info", ()), ("bench", ())):
    rc, out, err = run(cmd, "-m", "/nonexistent/dir", *extra)
    check(rc == 1 and f"tinyllm {cmd}: /nonexistent/dir was not found" in err and "needs a model" not in err
          and "huggingface-cli download" in err and "tinyllm chat" not in err.replace(f"tinyllm {cmd}", ""),
          f"{cmd} -m /nonexistent/dir: rc {rc} {err}")
rc, out, err = run("chat")
check(rc == 2 and "needs a model (-m PATH)" in err, f"chat without -m: rc {rc} {err}")
rc, out, err = run("generate", "-m", M, "--temp", "abc")
check(rc == 2 and "bad value" in err, "bad option value")
rc, out, err = run("generate", "-m", M, "--tokens", ",".join(["5"] * 20), "--ctx", "8")
check(rc == 1 and "does not fit the context" in err, f"prompt over context: {err}")
rc, out, err = run("generate", "-m", M, "--tokens", "5,999999")
check(rc == 1 and "outside the vocabulary" in err, f"token id out of range: {err}")

rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "6")
ids = [int(x) for x in out.split()]
check(rc == 0 and len(ids) == 6, f"generate 6 greedy ids: {out!r} {err}")
check("tok/s" in err, "timings on stderr")

# generation that ends because the context is full says so (it stopped short of -n without a word)
rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "--ctx", "8", "-n", "10", "--ignore-eos")
check(rc == 0 and len(out.split()) == 5 and "stopped: the context of 8 tokens is full" in err,
      f"generate stopped by the context: rc {rc} {out!r} {err}")
for n in ("5", "4"):  # -n reached (at or before the context's end): no note
    rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "--ctx", "8", "-n", n, "--ignore-eos")
    check(rc == 0 and len(out.split()) == int(n) and "is full" not in err, f"generate -n {n} --ctx 8: rc {rc} {err}")

# score: the greedy next token after 5,6,7 is the top-1 of position 2
rc, out, err = run("score", "-m", M, "--tokens", "5,6,7," + str(ids[0]), "--top", "3")
lines = [json.loads(l) for l in out.strip().splitlines()]
check(rc == 0 and len(lines) == 5 and lines[2]["pos"] == 2 and len(lines[2]["top"]) == 3, f"score shape {out}")
check(lines[2]["top"][0][0] == ids[0], "score top-1 == generate's greedy token")
check("perplexity" in lines[-1] and lines[-1]["n"] == 3, "perplexity line")

# seeded sampling: same seed same output, different seed (very likely) different
a = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "16", "--temp", "1.0", "--seed", "42")[1]
b = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "16", "--temp", "1.0", "--seed", "42")[1]
c = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "16", "--temp", "1.0", "--seed", "43")[1]
check(a == b and a.strip(), "same seed, same output")
check(a != c, "different seed, different output")

# a seed that is not a whole decimal number is refused, not read up to its first odd character
# ("1e5" used to run with seed 1, "0x10" with seed 0)
for bad in ("1e5", "0x10", "2.5"):
    rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "4", "--temp", "1.0", "--seed", bad)
    check(rc == 2 and "bad value" in err and "--seed" in err, f"--seed {bad}: rc {rc} {err}")
big = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "8", "--temp", "1.0", "--seed", "18446744073709551615")
check(big[0] == 0 and len(big[1].split()) == 8, f"largest seed: {big}")

# --top-k is a count: '2.5' was truncated to 2 (and '1e1' read as 10) without a word
for bad in ("2.5", "1e1", "-1"):
    rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "4", "--temp", "1.0", "--top-k", bad)
    check(rc == 2 and "bad value" in err and "--top-k" in err, f"--top-k {bad}: rc {rc} {err}")
rc, out, err = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "4", "--temp", "1.0", "--top-k", "40", "--seed", "1")
check(rc == 0 and len(out.split()) == 4, f"--top-k 40: rc {rc} {err}")

# chat: -n must be a positive count (0 or junk used to mean 256 tokens without a word)
for bad in ("0", "-3", "abc"):
    rc, out, err = run("chat", "-m", M, "-n", bad)
    check(rc == 2 and "-n" in err, f"chat -n {bad}: rc {rc} {err}")

# chat reads a whole stdin line as one message, however long (it was cut every 64 KiB into turns)
stories = os.path.join(os.environ.get("TL_SHARED", "../shared"), "assets/stories260K/stories260K.gguf")
p = subprocess.run([BIN, "chat", "-m", stories, "-n", "2", "--temp", "0"], input="ab " * 30000 + "\n",
                   capture_output=True, text=True, timeout=120)
turns = p.stderr.count("prompt tokens") + p.stderr.count("does not fit")
check(p.returncode == 0 and turns == 1, f"one long line is one turn: {turns} turns, rc {p.returncode} {p.stderr[-300:]}")

# chat over its context: the error says how to get out of it (every later turn failed the same way and
# nothing pointed at /reset)
p = subprocess.run([BIN, "chat", "-m", stories, "-n", "2", "--temp", "0"],
                   input="ab " * 600 + "\n" + "ab " * 500 + "\n/reset\nhi\n", capture_output=True, text=True, timeout=120)
check(p.returncode == 0 and "does not fit the context" in p.stderr and "type /reset to start a new conversation" in p.stderr
      and p.stderr.count("prompt tokens") == 2, f"chat over the context hints /reset: rc {p.returncode} {p.stderr[-600:]}")

# an option given last without its value is named as such (it was reported as an unknown option, or
# only the usage was printed); an unknown option is named too
for cmd, opt in (("generate", "-p"), ("generate", "-n"), ("chat", "--system"), ("score", "--top")):
    rc, out, err = run(cmd, "-m", M, opt)
    check(rc == 2 and f"option {opt} needs a value" in err, f"{cmd} {opt} without a value: rc {rc} {err[:200]}")
for cmd in ("chat", "score"):
    rc, out, err = run(cmd, "-m", M, "--frobnicate")
    check(rc == 2 and "unknown option '--frobnicate'" in err, f"{cmd} --frobnicate: rc {rc} {err[:200]}")

# sampling without --seed: each run draws its own seed (as llama.cpp, vLLM and our server do) and
# names it on stderr, and that seed repeats the run (every run used to sample with seed 0)
import re
runs = [run("generate", "-m", M, "--tokens", "5,6,7", "-n", "16", "--temp", "1.0") for _ in range(3)]
seeds = [re.search(r"--seed (\d+) repeats", r[2]) for r in runs]
check(all(r[0] == 0 for r in runs) and all(seeds), f"unseeded runs name their seed: {[r[2][-200:] for r in runs]}")
check(len({r[1] for r in runs}) > 1, f"unseeded runs differ: {[r[1] for r in runs]}")
if seeds[0]:
    again = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "16", "--temp", "1.0", "--seed", seeds[0].group(1))
    check(again[1] == runs[0][1] and "repeats" not in again[2], "the named seed repeats the run")
greedy = run("generate", "-m", M, "--tokens", "5,6,7", "-n", "4")
check("repeats" not in greedy[2], "greedy: no seed to name")

# bench parses its numbers strictly too: '--seed 1e5' ran with seed 1 and '--max-seqs 0' or
# '--block-size abc' quietly meant the default (bench has its own option loop)
BENCH = ("bench", "-m", "dummy:tiny", "--num-prompts", "2", "--input-len", "4", "--output-len", "2",
         "--kv-cache-mem", "16")
for opt, bad in (("--seed", "1e5"), ("--seed", "0x10"), ("--max-seqs", "0"), ("--block-size", "abc"),
                 ("--num-prompts", "5x"), ("--concurrency", "-1"), ("--max-batch-tokens", "2.5"),
                 ("--prefill-chunk", "x"), ("--kv-cache-mem", "lots"), ("--logprobs", "99")):
    rc, out, err = run(*BENCH, opt, bad)
    check(rc == 2 and opt in err and bad in err, f"bench {opt} {bad}: rc {rc} {err[-300:]}")
rc, out, err = run(*BENCH, "--seed", "100000", "--max-seqs", "1", "--block-size", "8")
check(rc == 0 and "seed 100000," in out and "max-seqs 1" in out, f"bench with good values: rc {rc} {out} {err[-300:]}")

# detokenize refuses ids outside the vocabulary, as the server's /detokenize does with a 400 (they were
# dropped: '999999999' printed nothing, exit 0)
QTOK = os.path.join(os.environ.get("TL_SHARED", "../shared"), "assets/qwen2-tokenizer")
rc, out, err = run("detokenize", "-m", QTOK, "9707")
check(rc == 0 and out == "Hello", f"detokenize 9707: rc {rc} {out!r} {err}")
for ids in ("999999999", "[9707, 151936]", "[-1, 9707]"):
    rc, out, err = run("detokenize", "-m", QTOK, ids)
    check(rc == 2 and "outside the vocabulary" in err and out == "", f"detokenize {ids}: rc {rc} {out!r} {err}")
p = subprocess.run([BIN, "detokenize", "-m", QTOK, "--lines"], input="[9707]\n[9707, 999999]\n",
                   capture_output=True, text=True, timeout=60)
check(p.returncode != 0 and p.stdout == '"Hello"\n' and "line 2" in p.stderr and "outside the vocabulary" in p.stderr,
      f"detokenize --lines with a bad id: rc {p.returncode} {p.stdout!r} {p.stderr}")

rc, out, err = run("info", "-m", "dummy:tiny")
check(rc == 0 and "n_embd       64" in out, f"info dummy:tiny {out} {err}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

#!/usr/bin/env python3
"""Differential test: tinyllm's tokenizer against the official HF `tokenizers` package on seeded
generated strings (many scripts, whitespace runs, digits, emoji sequences, special-token fragments,
combining marks). One `tinyllm tokenize --lines` process per tokenizer encodes all strings; HF ids of
the same strings are the expected values. Decode is checked the same way with `tinyllm detokenize`.
Failing cases are printed as lines for tests/data/tokenizer_regressions.txt.
Usage: test_tokenizer_diff.py [N] [SEED]"""
import json
import os
import random
import subprocess
import sys
import time

SHARED = os.environ.get("TL_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
BIN = os.environ.get("TL_BIN", "build/tinyllm")
TOKS = ["assets/qwen2-tokenizer", "assets/qwen2.5-tokenizer"]

try:
    from tokenizers import Tokenizer
except ImportError:
    print("SKIP: python package 'tokenizers' not installed (scripts/install-deps.sh installs it)")
    sys.exit(0)

RANGES = [  # (lo, hi) code point ranges: scripts and symbol blocks
    (0x20, 0x7E), (0xA0, 0x17F), (0x180, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F),
    (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F), (0x10A0, 0x10FF),
    (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F),
    (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFE00, 0xFE0F),
    (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF),
    (0x20000, 0x2A6DF), (0x0300, 0x036F), (0x0, 0x1F), (0x7F, 0x9F), (0xE000, 0xE0FF), (0x10000, 0x1007F),
]
WS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029", "\x85", "\x0b", "\x0c",
      "\u200b", "\u2009", "\u202f", "\u1680", "\ufeff", " \n ", "\n\n\n", "    ", "\t\t"]
DIGITS = ["0", "7", "42", "2024", "3.14159", "1,000,000", "٣٤٥", "१२३", "１２３", "½", "²", "Ⅻ", "𝟘𝟙"]
EMOJI = ["🤗", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "❤️", "✋🏿", "🧑‍💻", "😀", "🦙", "☕", "#️⃣", "🫠"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_", "|>", "<|", "<|im_start|", "<tool_call>",
           "</tool_call>", "<|fim_prefix|>", "<|file_sep|>", "<|object_ref_start|>", "<|vision_pad|>", "<<|im_end|>>"]
WORDS = ["hello", "Hello", "HELLO", "it's", "IT'S", "we'll", "I'M", "they'RE", "ſ'ſ", "'s", "'ll", "don't", "naïve",
         "café", "e\u0301", "A\u030a", "\u1100\u1161\u11a8", "Straße", "İstanbul", "ﬁ", "Ω", "K", "ǅ", "func()",
         "x=1;", "a_b", "--", "...", "!!", "http://x.y/z?q=1", "    def f(self):", "\\n", "{\"k\": [1, 2]}",
         "\u0f73\u0f73\u0334", "e\u0301\u0316\u0344", "\u1e69\u0323", "\uac00\u11a8\u1100\u1161", "\u09fe\u09bc",
         "Привет", "こんにちは", "你好世界", "안녕하세요", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "γειά"]


def gen(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        k = rng.random()
        if k < 0.25:
            lo, hi = rng.choice(RANGES)
            s = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))
        elif k < 0.45:
            s = rng.choice(WS) * rng.randint(1, 3)
        elif k < 0.55:
            s = rng.choice(DIGITS)
        elif k < 0.65:
            s = rng.choice(EMOJI)
        elif k < 0.75:
            s = rng.choice(SPECIAL)
        else:
            s = rng.choice(WORDS)
        parts.append(s)
    s = "".join(parts)
    return "".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF)


def run_lines(args, lines):
    p = subprocess.run([BIN] + args + ["--lines"], input="".join(l + "\n" for l in lines).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if p.returncode != 0:
        print("tinyllm failed:", p.stderr.decode(errors="replace")[:2000])
        sys.exit(1)
    return [json.loads(l) for l in p.stdout.decode().split("\n") if l]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1234
    rng = random.Random(seed)
    cases = [gen(rng) for _ in range(n)]
    fails = 0
    for ti, rel in enumerate(TOKS):
        path = os.path.join(SHARED, rel)
        hf = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        t0 = time.time()
        want = [e.ids for e in hf.encode_batch(cases)]
        t1 = time.time()
        got = run_lines(["tokenize", "-m", path, "--no-bos"], [json.dumps(c) for c in cases])
        t2 = time.time()
        bad = [i for i in range(n) if got[i] != want[i]]
        for i in bad[:10]:
            print(f"ENCODE MISMATCH {rel}: {cases[i]!r}\n  hf  {want[i]}\n  got {got[i]}")
        for i in bad:
            print("REGRESSION " + json.dumps({"tok": ti, "text": cases[i], "ids": want[i]}))
        # decode: HF's ids back to text, special tokens shown and skipped
        dec_bad = 0
        for skip in (False, True):
            wd = hf.decode_batch(want, skip_special_tokens=skip)
            args = ["detokenize", "-m", path] + (["--skip-special"] if skip else [])
            gd = run_lines(args, [json.dumps(w) for w in want])
            for i in range(n):
                if gd[i] != wd[i]:
                    dec_bad += 1
                    if dec_bad <= 5:
                        print(f"DECODE MISMATCH {rel} skip={skip}: {want[i]}\n  hf  {wd[i]!r}\n  got {gd[i]!r}")
        print(f"{rel}: {n} strings, encode mismatches {len(bad)}, decode mismatches {dec_bad} "
              f"(hf {t1 - t0:.2f} s, tinyllm incl. load {t2 - t1:.2f} s)")
        fails += len(bad) + dec_bad
    print(f"{0 if fails else 1} passed, {1 if fails else 0} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()

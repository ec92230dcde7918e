#!/usr/bin/env python3
"""spm_ref.py: an independent reference of llama.cpp's SentencePiece-style ("llama" vocab)
tokenization, used to make tests/data/stories260k_tok.json (expected ids for
tests/test_stories_tok.c). Reads the vocab straight from a GGUF file with struct.

Rules (llama.cpp llm_tokenizer_spm): BOS first when add_bos; a space is prepended to the text
(add_space_prefix, default true) and every ' ' becomes U+2581; the text is split into UTF-8
characters; repeatedly the adjacent pair whose concatenation is a vocab token with the highest
score is merged (ties: the leftmost pair); each final symbol is its token, or, when a single
character has no token, its UTF-8 bytes as <0xNN> tokens (unk if those are absent).
usage: tools/spm_ref.py MODEL.gguf > tests/data/stories260k_tok.json"""
import json
import struct
import sys


def read_vocab(path):
    d = open(path, 'rb').read()
    o = 24
    n_kv = struct.unpack_from('<Q', d, 16)[0]
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def rs(o):
        n = struct.unpack_from('<Q', d, o)[0]
        return d[o + 8:o + 8 + n].decode('utf-8'), o + 8 + n

    kv = {}
    for _ in range(n_kv):
        k, o = rs(o)
        t = struct.unpack_from('<I', d, o)[0]
        o += 4
        if t == 8:
            v, o = rs(o)
        elif t == 9:
            at, n = struct.unpack_from('<IQ', d, o)
            o += 12
            v = []
            for _ in range(n):
                if at == 8:
                    s, o = rs(o)
                    v.append(s)
                else:
                    v.append(struct.unpack_from({6: '<f', 5: '<i', 4: '<I'}[at], d, o)[0])
                    o += size[at]
        else:
            v = struct.unpack_from({4: '<I', 5: '<i', 6: '<f', 7: '<B', 10: '<Q'}.get(t, '<B'), d, o)[0]
            o += size[t]
        kv[k] = v
    return kv


def encode(text, tokens, scores, bos, unk, add_bos=True):
    ids = [bos] if add_bos else []
    if not text:
        return ids
    vocab = {t: i for i, t in enumerate(tokens)}
    syms = list(('\u2581' + text).replace(' ', '\u2581'))
    while True:
        best = None
        for i in range(len(syms) - 1):
            t = syms[i] + syms[i + 1]
            if t in vocab and (best is None or scores[vocab[t]] > best[0]):
                best = (scores[vocab[t]], i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    for s in syms:
        if s in vocab:
            ids.append(vocab[s])
        else:
            for b in s.encode('utf-8'):
                ids.append(vocab.get('<0x%02X>' % b, unk))
    return ids


CASES = [
    'Once upon a time',
    'Hello world',
    '  two leading spaces',
    'trailing space ',
    'Lily\'s mom said, "Don\'t worry."\nThe end.',
    'caf\u00e9',
    '\u65e5\u672c\u8a9e',
    'emoji \U0001F642!',
    '',
    'a\tb',
    '     ',
    'THE END!',
]


def main():
    kv = read_vocab(sys.argv[1])
    toks, scores = kv['tokenizer.ggml.tokens'], kv['tokenizer.ggml.scores']
    bos, unk = kv['tokenizer.ggml.bos_token_id'], kv['tokenizer.ggml.unknown_token_id']
    out = [{'text': t, 'ids': encode(t, toks, scores, bos, unk)} for t in CASES]
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == '__main__':
    main()

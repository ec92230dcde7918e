#!/usr/bin/env python3
"""make_gguf_corpus.py: writes the fuzz seed corpus fuzz/corpus/gguf/: tiny GGUF files made here
(never copies of shared assets): complete llama / qwen2 models of a few hundred weights in F32,
F16, Q8_0, Q4_0, Q5_1, Q4_K, Q5_K and Q6_K, a tied-output model with a SentencePiece-style vocab, and a
metadata-only file with every value type.  Deterministic (seeded).
usage: tools/make_gguf_corpus.py [OUT_DIR]"""
import os
import random
import struct
import sys

BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 7: (32, 24), 8: (32, 34), 12: (256, 144), 13: (256, 176), 14: (256, 210)}


def s_(x):
    b = x.encode()
    return struct.pack('<Q', len(b)) + b


class Writer:
    def __init__(self, align=32):
        self.kv, self.ti, self.data, self.n_kv, self.n_t, self.align = b'', b'', b'', 0, 0, align

    def key(self, k, t, payload):
        self.kv += s_(k) + struct.pack('<I', t) + payload
        self.n_kv += 1

    def u32(self, k, v): self.key(k, 4, struct.pack('<I', v))
    def f32(self, k, v): self.key(k, 6, struct.pack('<f', v))
    def str(self, k, v): self.key(k, 8, s_(v))
    def boolean(self, k, v): self.key(k, 7, struct.pack('<B', v))

    def arr(self, k, et, vals):
        fmt = {4: '<I', 5: '<i', 6: '<f'}
        body = b''.join(s_(v) if et == 8 else struct.pack(fmt[et], v) for v in vals)
        self.key(k, 9, struct.pack('<IQ', et, len(vals)) + body)

    def tensor(self, name, gtype, ne, rnd):
        while len(self.data) % self.align:
            self.data += b'\0'
        n = 1
        for d in ne:
            n *= d
        be, bb = BLOCK[gtype]
        nbytes = n // be * bb
        if gtype == 0:
            raw = b''.join(struct.pack('<f', rnd.uniform(-0.1, 0.1) + (1.0 if 'norm' in name else 0)) for _ in range(n))
        else:
            raw = bytearray(rnd.getrandbits(8) for _ in range(nbytes))
            if gtype == 1:
                raw = b''.join(struct.pack('<e', rnd.uniform(-0.1, 0.1)) for _ in range(n))
            else:  # keep fp16 scales small and finite
                offs = {2: [0], 7: [0, 2], 8: [0], 12: [0, 2], 13: [0, 2], 14: [208]}[gtype]
                for b in range(nbytes // bb):
                    for o in offs:
                        raw[b * bb + o:b * bb + o + 2] = struct.pack('<e', rnd.uniform(1e-4, 1e-3))
                raw = bytes(raw)
        self.ti += s_(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', d) for d in ne)
        self.ti += struct.pack('<IQ', gtype, len(self.data))
        self.data += raw
        self.n_t += 1

    def bytes(self, version=3):
        head = b'GGUF' + struct.pack('<IQQ', version, self.n_t, self.n_kv) + self.kv + self.ti
        while len(head) % self.align:
            head += b'\0'
        return head + self.data


def model(arch, gtype, tied=False, vocab=False, seed=1, n_embd=32, n_ff=64, version=3):
    rnd = random.Random(seed)
    n_head, n_kv, n_vocab = 2, 1, 16
    hd = n_embd // n_head
    small = gtype  # type of matrices whose input dim is not a multiple of 256
    if gtype in (12, 13, 14):  # k-quants need rows of 256: wide n_embd, narrow heads and n_ff
        n_embd, n_ff, hd, small = 256, 32, 16, 8
    w = Writer()
    w.str('general.architecture', arch)
    w.u32(arch + '.embedding_length', n_embd)
    w.u32(arch + '.block_count', 1)
    w.u32(arch + '.attention.head_count', n_head)
    w.u32(arch + '.attention.head_count_kv', n_kv)
    w.u32(arch + '.feed_forward_length', n_ff)
    w.u32(arch + '.context_length', 64)
    w.f32(arch + '.attention.layer_norm_rms_epsilon', 1e-5)
    if hd * n_head != n_embd:
        w.u32(arch + '.attention.key_length', hd)
        w.u32(arch + '.attention.value_length', hd)
    if vocab:
        toks = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % i for i in range(4)] + ['\u2581a', 'b', '\u2581ab', 'c', 'd', 'e', 'f', 'g', 'h']
        w.str('tokenizer.ggml.model', 'llama')
        w.arr('tokenizer.ggml.tokens', 8, toks)
        w.arr('tokenizer.ggml.scores', 6, [float(-i) for i in range(n_vocab)])
        w.arr('tokenizer.ggml.token_type', 5, [2, 3, 3] + [6] * 4 + [1] * 9)
        w.u32('tokenizer.ggml.bos_token_id', 1)
        w.u32('tokenizer.ggml.eos_token_id', 2)
        w.boolean('tokenizer.ggml.add_bos_token', 1)
    w.tensor('token_embd.weight', gtype, [n_embd, n_vocab], rnd)
    w.tensor('output_norm.weight', 0, [n_embd], rnd)
    if not tied:
        w.tensor('output.weight', gtype, [n_embd, n_vocab], rnd)
    p = 'blk.0.'
    w.tensor(p + 'attn_norm.weight', 0, [n_embd], rnd)
    w.tensor(p + 'attn_q.weight', gtype, [n_embd, n_head * hd], rnd)
    w.tensor(p + 'attn_k.weight', gtype, [n_embd, n_kv * hd], rnd)
    w.tensor(p + 'attn_v.weight', gtype, [n_embd, n_kv * hd], rnd)
    if arch == 'qwen2':
        w.tensor(p + 'attn_q.bias', 0, [n_head * hd], rnd)
        w.tensor(p + 'attn_k.bias', 0, [n_kv * hd], rnd)
        w.tensor(p + 'attn_v.bias', 0, [n_kv * hd], rnd)
    w.tensor(p + 'attn_output.weight', small, [n_head * hd, n_embd], rnd)
    w.tensor(p + 'ffn_norm.weight', 0, [n_embd], rnd)
    w.tensor(p + 'ffn_gate.weight', gtype, [n_embd, n_ff], rnd)
    w.tensor(p + 'ffn_up.weight', gtype, [n_embd, n_ff], rnd)
    w.tensor(p + 'ffn_down.weight', small, [n_ff, n_embd], rnd)
    return w.bytes(version)


def metadata_only():
    w = Writer(align=64)
    w.u32('general.alignment', 64)
    w.key('u8', 0, b'\x07'), w.key('i8', 1, b'\xf9'), w.key('u16', 2, struct.pack('<H', 7))
    w.key('i16', 3, struct.pack('<h', -7)), w.u32('u32', 7), w.key('i32', 5, struct.pack('<i', -7))
    w.f32('f32', 0.5), w.boolean('bool', 1), w.str('str', 'seven')
    w.key('u64', 10, struct.pack('<Q', 7)), w.key('i64', 11, struct.pack('<q', -7)), w.key('f64', 12, struct.pack('<d', 0.5))
    w.arr('arr.str', 8, ['a', '', 'b c']), w.arr('arr.i32', 5, [1, -2, 3]), w.arr('arr.f32', 6, [0.5, 1.5])
    return w.bytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'fuzz', 'corpus', 'gguf')
    os.makedirs(out, exist_ok=True)
    files = {
        'llama_f32.gguf': model('llama', 0),
        'llama_f32_v2.gguf': model('llama', 0, version=2),
        'llama_f16_vocab_tied.gguf': model('llama', 1, tied=True, vocab=True),
        'qwen2_q8_0.gguf': model('qwen2', 8),
        'llama_q4_0.gguf': model('llama', 2),
        'qwen2_q4_k.gguf': model('qwen2', 12, tied=True),
        'llama_q6_k.gguf': model('llama', 14, tied=True),
        'llama_q5_k.gguf': model('llama', 13, seed=3),
        'qwen2_q5_1.gguf': model('qwen2', 7, seed=4),
        'metadata_only.gguf': metadata_only(),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
        print(f'{name}: {len(data)} bytes')


if __name__ == '__main__':
    main()

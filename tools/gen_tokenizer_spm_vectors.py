#!/usr/bin/env python3
"""Reference ids for the SentencePiece-style (GGUF "llama") tokenizer: rebuilds a SentencePiece BPE
model from a GGUF file's vocab (tokens, scores, token types) and encodes test strings with the
official `sentencepiece` library (pip install sentencepiece protobuf gguf). Writes JSON lines
{"text", "ids"} (ids with BOS first, as llama.cpp's prompt encoding) and {"ids", "decoded"}.
Usage: python3 tools/gen_tokenizer_spm_vectors.py ../shared/assets/stories260K/stories260K.gguf \
         > tests/data/tokenizer_spm_stories260K.jsonl"""
import json
import random
import sys

import gguf
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

r = gguf.GGUFReader(sys.argv[1])
f = r.fields
toks = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
bos = int(f["tokenizer.ggml.bos_token_id"].parts[-1][0])

m = pb.ModelProto()
m.trainer_spec.model_type = pb.TrainerSpec.BPE
m.trainer_spec.byte_fallback = True
m.trainer_spec.vocab_size = len(toks)
m.normalizer_spec.name = "identity"
m.normalizer_spec.add_dummy_prefix = True
m.normalizer_spec.remove_extra_whitespaces = False
m.normalizer_spec.escape_whitespaces = True
for t, s, ty in zip(toks, scores, types):
    p = m.pieces.add()
    p.piece, p.score, p.type = t, s, ty
sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())

texts = ["Once upon a time", "Once upon a time, there was a little girl named Lily.", "Hello world", " leading space",
         "two  spaces", "trailing space ", "   ", " ", "a", "new\nline", "tab\there", "Lily's dog said: \"Hi!\"",
         "123 4567 89", "naïve café", "日本語", "🤗 emoji", "Zebra quartz xylophone", "ALL CAPS SHOUT", "can't won't",
         "\u00e9\u0301", "end.", "The end.\n\nOnce"]
rng = random.Random(5)
alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ .,!?'\n0123456789éü中🙂"
for _ in range(60):
    texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
for t in texts:
    print(json.dumps({"text": t, "ids": [bos] + sp.encode(t)}))
for _ in range(30):  # decode: SentencePiece drops the leading space of the first piece
    ids = [rng.randrange(3, len(toks)) for _ in range(rng.randint(1, 12))]
    print(json.dumps({"ids": ids, "decoded": sp.decode(ids)}))

#!/usr/bin/env python3
"""Creates small random-weight Qwen2 / Llama checkpoints in Hugging Face layout under tests/data/hf/
and records HF transformers' fp32 logits and greedy tokens for them.

Run:  python3 tools/make_hf_reference.py   (needs torch + transformers; pip install torch transformers)
Output per model:  config.json, generation_config.json, model.safetensors (or shards + index),
                   reference.json {tokens, n_vocab, greedy_prompt, greedy_tokens, ...},
                   logits.f32 (little-endian float32 [len(tokens), n_vocab], HF fp32 forward).
The C tests (tests/test_hf_reference.c) compare tinyllm's CPU path against these files.
"""
import json, os, shutil, sys
import numpy as np
import torch
from transformers import (Qwen2Config, Qwen2ForCausalLM, LlamaConfig, LlamaForCausalLM)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "hf")
VOCAB = 512

MODELS = [
    # name, arch, dims, storage dtype, shard
    dict(name="qwen2-tied-gqa2-hd64", arch="qwen2", hidden=128, heads=2, kv=1, head_dim=64, inter=200,
         layers=2, tied=True, dtype=torch.float32, shard=None),
    dict(name="qwen2-untied-gqa1-hd64-bf16", arch="qwen2", hidden=128, heads=2, kv=2, head_dim=64, inter=171,
         layers=2, tied=False, dtype=torch.bfloat16, shard=None),
    dict(name="qwen2-gqa7-hd128-f16", arch="qwen2", hidden=128, heads=7, kv=1, head_dim=128, inter=96,
         layers=2, tied=False, dtype=torch.float16, shard=None),
    dict(name="llama-gqa2-sharded", arch="llama", hidden=128, heads=4, kv=2, head_dim=32, inter=256,
         layers=2, tied=False, dtype=torch.float32, shard="400KB"),
]


def build(spec, seed):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=spec["hidden"], intermediate_size=spec["inter"],
                  num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                  num_key_value_heads=spec["kv"], head_dim=spec["head_dim"], max_position_embeddings=1024,
                  rms_norm_eps=1e-6, tie_word_embeddings=spec["tied"], bos_token_id=1, eos_token_id=2,
                  torch_dtype="float32")
    if spec["arch"] == "qwen2":
        cfg = Qwen2Config(rope_theta=1e6, use_sliding_window=False, **common)
        model = Qwen2ForCausalLM(cfg)
    else:
        cfg = LlamaConfig(rope_theta=10000.0, attention_bias=False, **common)
        model = LlamaForCausalLM(cfg)
    cfg._attn_implementation = "eager"
    # Larger-than-default init so logits are spread out (random models otherwise give near-ties).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / (p.shape[-1] ** 0.5))
        # Round to the storage dtype so the fp32 reference sees exactly the stored weights.
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).to(torch.float32))
    model.eval()
    return model


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    for i, spec in enumerate(MODELS):
        d = os.path.join(OUT, spec["name"])
        shutil.rmtree(d, ignore_errors=True)
        model = build(spec, 1000 + i)
        tokens = rng.integers(3, VOCAB, size=40).tolist()
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0].float().numpy()
        # greedy: pick a prompt whose greedy continuation has no near-ties (margin >= 1e-3)
        for attempt in range(20):
            prompt = rng.integers(3, VOCAB, size=8).tolist()
            with torch.no_grad():
                out = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False,
                                     output_scores=True, return_dict_in_generate=True, pad_token_id=0)
            gen = out.sequences[0, len(prompt):].tolist()
            margins = []
            for s in out.scores:
                top2 = torch.topk(s[0].float(), 2).values
                margins.append(float(top2[0] - top2[1]))
            if min(margins) >= 1e-3:
                break
        else:
            sys.exit(f"{spec['name']}: no tie-free greedy prompt found")
        model.to(spec["dtype"])
        save_kw = dict(safe_serialization=True)
        if spec["shard"]:
            save_kw["max_shard_size"] = spec["shard"]
        model.save_pretrained(d, **save_kw)
        for junk in ("generation_config.json",):
            pass
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(dict(tokens=tokens, n_vocab=VOCAB, greedy_prompt=prompt, greedy_tokens=gen,
                           greedy_min_margin=min(margins), storage_dtype=str(spec["dtype"]),
                           generator=f"transformers {__import__('transformers').__version__}, torch {torch.__version__}"),
                      f, indent=1)
        logits.astype("<f4").tofile(os.path.join(d, "logits.f32"))
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
        print(f"{spec['name']}: {size/1e6:.2f} MB, greedy {len(gen)} tokens (min margin {min(margins):.4f})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets this file's author owns (fuzz/corpus/<target>/):
safetensors, hfconfig, server_api, chat. Deterministic; rerun after changing it and commit the
result. Crash inputs found later are committed beside the seeds as crash-<what>.bin (replayed by
ctest's fuzz_<target>_corpus tests). The GGUF and tokenizer targets have their own generators."""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr, off, blob = {}, 0, b""
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blob += data
    h = json.dumps(hdr, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + blob


def tiny_model(dt="F32", drop=None, bad_shape=None):
    # fuzz_safetensors.c's CONFIG: qwen2, n_embd 8, n_ff 16, 1 layer, 2 heads (head_dim 4), 1 kv head, vocab 16, tied
    size = {"F32": 4, "F16": 2, "BF16": 2}[dt]
    shapes = {"model.embed_tokens.weight": [16, 8], "model.norm.weight": [8]}
    p = "model.layers.0."
    shapes.update({p + "input_layernorm.weight": [8], p + "post_attention_layernorm.weight": [8],
                   p + "self_attn.q_proj.weight": [8, 8], p + "self_attn.q_proj.bias": [8],
                   p + "self_attn.k_proj.weight": [4, 8], p + "self_attn.k_proj.bias": [4],
                   p + "self_attn.v_proj.weight": [4, 8], p + "self_attn.v_proj.bias": [4],
                   p + "self_attn.o_proj.weight": [8, 8], p + "mlp.gate_proj.weight": [16, 8],
                   p + "mlp.up_proj.weight": [16, 8], p + "mlp.down_proj.weight": [8, 16]})
    out = []
    for i, (n, s) in enumerate(sorted(shapes.items())):
        if n == drop:
            continue
        if n == bad_shape:
            s = s[::-1] if len(s) == 2 else [s[0] + 1]
        cnt = 1
        for x in s:
            cnt *= x
        one = {"F32": struct.pack("<f", 0.25 + i), "F16": b"\x00\x3c", "BF16": b"\x80\x3f"}[dt]
        out.append((n, dt, s, one * cnt))
    return safetensors(out, {"format": "pt"})


def main():
    # ---- safetensors: header parser + HF loader ----
    put("safetensors", "tiny_f32.st", tiny_model("F32"))
    put("safetensors", "tiny_bf16.st", tiny_model("BF16"))
    put("safetensors", "tiny_f16_no_norm.st", tiny_model("F16", drop="model.norm.weight"))
    put("safetensors", "tiny_bad_shape.st", tiny_model("F32", bad_shape="model.layers.0.self_attn.k_proj.weight"))
    put("safetensors", "empty_header.st", safetensors([]))
    put("safetensors", "dtypes.st", safetensors([("a", "I64", [2], b"\1" * 16), ("b", "U8", [3, 1], b"abc"),
                                                 ("c", "BOOL", [], b"\1"), ("d", "F64", [1, 1, 1, 1], b"\0" * 8),
                                                 ("e", "I8", [0], b"")]))
    put("safetensors", "overlap.st", struct.pack("<Q", 71) +
        b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
        [:71] + b"\0" * 8)
    put("safetensors", "short.st", b"\x10\0\0\0\0\0\0\0{}")
    # ---- config.json ----
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hf = os.path.join(here, "tests", "data", "hf")
    for m in sorted(os.listdir(hf)):
        with open(os.path.join(hf, m, "config.json"), "rb") as f:
            put("hfconfig", m + ".json", f.read())
    base = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
            "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True, "eos_token_id": [151645, 151643], "bos_token_id": 151643}
    put("hfconfig", "qwen2.5-0.5b.json", json.dumps(base, indent=1))
    put("hfconfig", "mlx-int4.json", json.dumps(dict(base, quantization={"group_size": 64, "bits": 4})))
    put("hfconfig", "llama-model-type.json",
        json.dumps({k: v for k, v in dict(base, model_type="llama", attention_bias=True, head_dim=64,
                                              rope_scaling={"type": "linear", "factor": 2.0}).items()
                    if k != "architectures"}))
    put("hfconfig", "bad-types.json", '{"architectures":["Qwen2ForCausalLM"],"hidden_size":"896","vocab_size":-1}')
    # ---- OpenAI request bodies (byte 0: even = chat, odd = completions) ----
    chat = lambda o: b"\0" + json.dumps(o).encode()
    cmpl = lambda o: b"\1" + json.dumps(o).encode()
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    put("server_api", "chat_min.json", chat({"model": "m", "messages": msgs[1:]}))
    put("server_api", "chat_full.json", chat({"model": "m", "messages": msgs, "max_tokens": 16, "temperature": 0.7,
                                              "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 7,
                                              "presence_penalty": 0.5, "frequency_penalty": -0.5,
                                              "repetition_penalty": 1.1, "stop": ["\n\n", "END", "lo"],
                                              "stream": True, "stream_options": {"include_usage": True},
                                              "logprobs": True, "top_logprobs": 3, "user": "u1"}))
    put("server_api", "chat_parts.json", chat({"messages": [{"role": "developer", "content": "x"},
                                                            {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                                         {"type": "text", "text": "\u00e9\u4e2d"}]}],
                                               "max_completion_tokens": 5, "stop": "\u4e2d"}))
    put("server_api", "chat_bad_role.json", chat({"messages": [{"role": "tool\u00e9" * 12, "content": "x"}]}))
    put("server_api", "chat_bad_json.json", b"\0{\"messages\": [")
    put("server_api", "cmpl_text.json", cmpl({"model": "m", "prompt": "Once upon a time", "max_tokens": 8,
                                              "logprobs": 2, "stop": ["time", "upon a"]}))
    put("server_api", "cmpl_ids.json", cmpl({"prompt": [1, 2, 3, 500], "max_tokens": 1, "echo": False}))
    put("server_api", "cmpl_batch.json", cmpl({"prompt": ["a", "b"], "n": 2}))
    put("server_api", "cmpl_one_batch.json", cmpl({"prompt": ["one"], "stream": True}))
    # ---- chat rendering: byte 0 flags, fields split by 0x1e: template, then role byte + content ----
    RS = b"\x1e"
    with open(os.path.join(os.path.dirname(here), "shared", "assets", "qwen2.5-tokenizer", "chat_template.jinja"),
              "rb") if os.path.exists(os.path.join(os.path.dirname(here), "shared", "assets")) else open(os.devnull, "rb") as f:
        t25 = f.read()
    put("chat", "qwen25_template.bin", b"\1" + t25 + RS + b"\1Hello" + RS + b"\2Hi there!" + RS + b"\1How are you?")
    put("chat", "chatml_system.bin", b"\1{{ '<|im_start|>' }}" + RS + b"\0You are terse." + RS + b"\1Hello")
    put("chat", "unknown_template.bin", b"\0[INST] {{ x }} [/INST]" + RS + b"\3no role" + RS + b"\1<|im_end|>inject")
    put("chat", "utf8.bin", b"\1" + RS + "\1caf\u00e9 \u4e2d\u6587 \U0001f600".encode() + RS + b"\1\xff\xfe bad")


if __name__ == "__main__":
    main()

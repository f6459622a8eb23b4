#!/usr/bin/env python3
"""A random-weight Llama in MLX 4-bit format for the bandwidth check of bench/compare.py.

  python bench/make_random_llama.py OUT_DIR --tokenizer-from MODEL_DIR [--size 1b] [--bits 4]

The default size has TinyLlama-1.1B's shape (hidden 2048, 22 layers, intermediate 5632, 32
heads, 4 KV heads) with the tokenizer (and vocabulary size) of MODEL_DIR, an untied output
head, affine quantization with groups of 64 and float32 scales/biases, like the models cortex
makes. Weights come from a seeded generator: the numbers mean nothing, but every byte a real
model of this size reads per token is there to be read. Nothing is downloaded.
"""
import argparse
import json
import pathlib
import shutil

import mlx.core as mx

SIZES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=22, intermediate_size=5632,
               num_attention_heads=32, num_key_value_heads=4),
    "tiny": dict(hidden_size=256, num_hidden_layers=2, intermediate_size=512,
                 num_attention_heads=4, num_key_value_heads=2),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--tokenizer-from", type=pathlib.Path, required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--bits", type=int, choices=[4, 8], default=4)
    a = ap.parse_args()
    src = json.loads((a.tokenizer_from / "config.json").read_text())
    vocab = src["vocab_size"]
    shape = SIZES[a.size]
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    heads, kv = shape["num_attention_heads"], shape["num_key_value_heads"]
    hd = h // heads
    mx.random.seed(20261202)
    weights = {}

    def linear(name, out_f, in_f):
        w = mx.random.normal((out_f, in_f), dtype=mx.float32) * (in_f ** -0.5)
        q, s, b = mx.quantize(w, group_size=64, bits=a.bits)
        weights[f"{name}.weight"], weights[f"{name}.scales"], weights[f"{name}.biases"] = q, s, b
        mx.eval(q, s, b)

    linear("model.embed_tokens", vocab, h)
    linear("lm_head", vocab, h)
    weights["model.norm.weight"] = mx.ones((h,), dtype=mx.float32)
    for i in range(shape["num_hidden_layers"]):
        p = f"model.layers.{i}"
        linear(f"{p}.self_attn.q_proj", heads * hd, h)
        linear(f"{p}.self_attn.k_proj", kv * hd, h)
        linear(f"{p}.self_attn.v_proj", kv * hd, h)
        linear(f"{p}.self_attn.o_proj", h, heads * hd)
        linear(f"{p}.mlp.gate_proj", inter, h)
        linear(f"{p}.mlp.up_proj", inter, h)
        linear(f"{p}.mlp.down_proj", h, inter)
        weights[f"{p}.input_layernorm.weight"] = mx.ones((h,), dtype=mx.float32)
        weights[f"{p}.post_attention_layernorm.weight"] = mx.ones((h,), dtype=mx.float32)
    a.out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(a.out / "model.safetensors"), weights, metadata={"format": "mlx"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        **shape, "head_dim": hd, "hidden_act": "silu", "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": "float32", "bos_token_id": src.get("bos_token_id"),
        "eos_token_id": src.get("eos_token_id"),
        "quantization": {"group_size": 64, "bits": a.bits},
    }
    (a.out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        if (a.tokenizer_from / name).exists():
            shutil.copy(a.tokenizer_from / name, a.out / name)
    params = sum(weights[k].size * 32 // a.bits for k in weights
                 if k.endswith(".weight") and k.replace(".weight", ".scales") in weights)
    print(json.dumps({"out": str(a.out), "parameters_approx": params}))


if __name__ == "__main__":
    main()

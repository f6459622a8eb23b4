#!/usr/bin/env python3
"""Hub benchmark: `cortex pull` vs huggingface_hub.snapshot_download, and `cortex convert` vs
mlx_lm.convert, in one run on this machine against tests/hub/server.py with added latency.

    .venv/bin/python bench/hub_bench.py [--cortex target/release/cortex] [--latency-ms 20]
        [--rounds 2] [--file-mb 40] [--files 3] [--layers 6]

Downloads: a generated repo of N large safetensors files (+ config, tokenizer) is fetched into
separate empty caches, the two tools alternating, `--rounds` times each. Conversion: a generated
float32 llama (~530 MB at 6 layers), 4-bit, group size 64, by both tools. Every tool runs as a
child process; wall time and its peak resident memory (wait4's ru_maxrss) are reported, and the
ratios cortex / reference (below 1.0 means cortex is faster or smaller).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TINY = os.path.join(ROOT, "tests", "fixtures", "generated", "tiny-llama")


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Runs `cmd`; returns (seconds, peak RSS bytes). Fails loudly on a non-zero exit.

    The peak RSS comes from GNU time (/usr/bin/time -f %M) where it exists: a forked child's
    own ru_maxrss starts at this (large, model-generating) process's resident size, which made
    every command look the same.
    """
    timed = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "CORTEX_MAXRSS_KB=%M"] + cmd) if timed else cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(full, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    if timed:
        kb = [line.split("=", 1)[1] for line in err.splitlines() if line.startswith("CORTEX_MAXRSS_KB=")]
        if kb:
            return dt, int(kb[-1]) * 1024
    return dt, usage.ru_maxrss * 1024


def make_download_repo(root: str, files: int, mb: int) -> str:
    d = os.path.join(root, "bench", "big-weights")
    os.makedirs(d)
    rng = np.random.default_rng(0)
    for i in range(files):
        n = mb * 1024 * 1024
        save_file({"w": rng.integers(0, 255, n, dtype=np.uint8)},
                  os.path.join(d, f"model-{i + 1:05d}-of-{files:05d}.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama"}, f)
    shutil.copyfile(os.path.join(TINY, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    return "bench/big-weights"


def make_llama(path: str, layers: int):
    """A float32 llama with random weights (vocab 32000, hidden 1024, GQA 16/4 heads)."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024,
           "intermediate_size": 2816, "num_hidden_layers": layers, "num_attention_heads": 16,
           "num_key_value_heads": 4, "head_dim": 64, "vocab_size": 32000, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": False,
           "torch_dtype": "float32", "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TINY, name), os.path.join(path, name))
    rng = np.random.default_rng(1)
    h, i, v, kv = 1024, 2816, 32000, 4 * 64

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02)

    shards = [{"model.embed_tokens.weight": w(v, h), "lm_head.weight": w(v, h), "model.norm.weight": np.ones(h, np.float32)}]
    for l in range(layers):
        p = f"model.layers.{l}."
        shards.append({p + "self_attn.q_proj.weight": w(h, h), p + "self_attn.k_proj.weight": w(kv, h),
                       p + "self_attn.v_proj.weight": w(kv, h), p + "self_attn.o_proj.weight": w(h, h),
                       p + "mlp.gate_proj.weight": w(i, h), p + "mlp.up_proj.weight": w(i, h),
                       p + "mlp.down_proj.weight": w(h, i),
                       p + "input_layernorm.weight": np.ones(h, np.float32),
                       p + "post_attention_layernorm.weight": np.ones(h, np.float32)})
    # Two source shards with an index, like a real checkpoint.
    half = (len(shards) + 1) // 2
    parts = [dict(kv_ for s in shards[:half] for kv_ in s.items()), dict(kv_ for s in shards[half:] for kv_ in s.items())]
    weight_map = {}
    for n, part in enumerate(parts):
        fname = f"model-{n + 1:05d}-of-00002.safetensors"
        save_file(part, os.path.join(path, fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cortex", default=os.path.join(ROOT, "target", "release", "cortex"))
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--file-mb", type=int, default=40)
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args()
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="hub-bench-")
    server = None
    try:
        hub_root = os.path.join(tmp, "hub")
        repo = make_download_repo(hub_root, args.files, args.file_mb)
        server = subprocess.Popen([py, os.path.join(ROOT, "tests", "hub", "server.py"), "--root", hub_root,
                                   "--port", "0", "--latency-ms", str(args.latency_ms)],
                                  stdout=subprocess.PIPE, text=True)
        url = server.stdout.readline().strip().removeprefix("LISTENING ")
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""}
        env.pop("HF_TOKEN")
        total_mb = args.files * args.file_mb
        print(f"# download: {repo}, {args.files} x {args.file_mb} MiB, latency {args.latency_ms} ms/request")
        times = {"cortex pull": [], "snapshot_download": []}
        for r in range(args.rounds):
            for tool in times:
                cache = os.path.join(tmp, f"cache-{tool.replace(' ', '_')}-{r}")
                e = {**env, "HF_HUB_CACHE": cache, "HF_HOME": os.path.join(cache, "home")}
                if tool == "cortex pull":
                    cmd = [args.cortex, "pull", repo]
                else:
                    cmd = [py, "-c", f"from huggingface_hub import snapshot_download; snapshot_download({repo!r})"]
                dt, rss = run(cmd, e)
                times[tool].append(dt)
                print(f"round {r + 1} {tool:18s} {dt:6.2f} s  {total_mb / dt:7.1f} MiB/s  peak RSS {rss / 2**20:6.0f} MiB")
                shutil.rmtree(cache)
        best = {k: min(v) for k, v in times.items()}
        print(f"download speedup (best of {args.rounds}): snapshot_download / cortex pull = "
              f"{best['snapshot_download'] / best['cortex pull']:.2f}x")

        src = os.path.join(tmp, "llama-f32")
        make_llama(src, args.layers)
        print(f"\n# convert: float32 llama, {folder_bytes(src) / 1e6:.0f} MB, 4-bit group 64")
        results = {}
        for tool in ("cortex convert", "mlx_lm.convert"):
            dst = os.path.join(tmp, f"out-{tool.replace(' ', '_')}")
            if tool == "cortex convert":
                cmd = [args.cortex, "convert", src, "-o", dst, "-q", "--q-bits", "4", "--q-group-size", "64"]
            else:
                cmd = [py, "-m", "mlx_lm", "convert", "--hf-path", src, "--mlx-path", dst, "-q",
                       "--q-bits", "4", "--q-group-size", "64"]
            dt, rss = run(cmd)
            results[tool] = (dt, rss)
            print(f"{tool:16s} {dt:6.2f} s  peak RSS {rss / 2**20:6.0f} MiB  output {folder_bytes(dst) / 1e6:.0f} MB")
            shutil.rmtree(dst)
        (ct, cr), (mt, mr) = results["cortex convert"], results["mlx_lm.convert"]
        print(f"convert time ratio cortex/mlx_lm = {ct / mt:.2f} (goal <= 1.0); "
              f"peak RSS ratio = {cr / mr:.2f} (goal <= 0.6)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

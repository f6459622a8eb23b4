#!/usr/bin/env python3
"""Measure mlx-lm on one model folder: the peer number `cortex bench` compares against.

Usage:
  mlx_lm_bench.py MODEL_DIR [--prompt-tokens 128] [--gen-tokens 64] [--runs 1] [--seed 0]
                  [--dtype float32|float16|bfloat16]

Prints one JSON object:
  load_s                 wall time of mlx_lm.utils.load_model with every parameter evaluated
                         (plus the optional dtype cast)
  ttft_ms                time from submitting the prompt to the first generated token
                         (prefill of the whole prompt + the first greedy choice)
  prefill_tokens_per_s   prompt_tokens / ttft, as mlx-lm's own generate reports prompt_tps
  decode_tokens_per_s    (gen_tokens - 1) / (time from the first to the last generated token)
  load_to_first_token_s  load_s + the warm-up run's time to its first token (cold_ttft_ms): what
                         `cortex bench` reports as load_to_first_token_s, measured the same way
plus the per-run numbers, the settings, the versions and cblas_sgemm_from, the library MLX's
float32 matmuls call (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0
makes it Debian's OpenBLAS instead of the reference BLAS bundled with the mlx wheel).

The prompt is seeded random token ids within the vocabulary, so EOS does not matter: decoding
runs mlx_lm.generate.generate_step (the loop mlx_lm.generate uses, with its async pipelining)
for exactly gen_tokens greedy steps with a fresh cache per run.  One untimed warm-up run with
the same shapes comes first so that one-off costs (allocations, first kernels) are excluded.
With --runs > 1 the reported numbers are medians.
"""

import argparse
import json
import os
import statistics
import sys
import time


def global_cblas_provider():
    """The library that provides cblas_sgemm in the process's global scope, or None.

    libmlx resolves cblas_sgemm through the global scope first, so a library here (one that
    LD_PRELOAD put there) wins over the reference BLAS bundled with the mlx wheel.  numpy's
    own OpenBLAS uses renamed symbols and never shows up here.
    """
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                    ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]

    try:
        proc = ctypes.CDLL(None)
        fn = proc.cblas_sgemm
    except (OSError, AttributeError):
        return None
    info = DlInfo()
    if proc.dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) and info.fname:
        return os.path.realpath(info.fname.decode())
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    args = ap.parse_args()
    if args.prompt_tokens < 1 or args.gen_tokens < 2:
        ap.error("need --prompt-tokens >= 1 and --gen-tokens >= 2")

    import numpy as np
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load_model
    from pathlib import Path

    t0 = time.perf_counter()
    model, config = load_model(Path(args.model_dir))
    if args.dtype:
        dt = getattr(mx, args.dtype)
        model.update(
            tree_map(
                lambda p: p.astype(dt) if isinstance(p, mx.array) and mx.issubdtype(p.dtype, mx.floating) else p,
                model.parameters(),
            )
        )
    mx.eval(model.parameters())
    load_s = time.perf_counter() - t0

    vocab = int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size"))
    rng = np.random.default_rng(args.seed)
    prompt = mx.array(rng.integers(0, vocab, size=args.prompt_tokens).astype(np.int32))
    greedy = lambda logprobs: mx.argmax(logprobs, axis=-1)

    def one_run(n_gen):
        cache = make_prompt_cache(model)
        start = time.perf_counter()
        first = last = None
        n = 0
        for token, _ in generate_step(prompt, model, max_tokens=n_gen, sampler=greedy, prompt_cache=cache):
            int(token)  # generate_step already evaluated it; make sure it is on the host
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            n += 1
        ttft = first - start
        decode_s = last - first
        return {
            "ttft_ms": ttft * 1e3,
            "prefill_tokens_per_s": args.prompt_tokens / ttft,
            "decode_tokens_per_s": (n - 1) / decode_s if decode_s > 0 else float("nan"),
        }

    # warm-up; on a fresh process also the cold first token, which load_to_first_token_s counts
    cold = one_run(min(args.gen_tokens, 4))
    runs = [one_run(args.gen_tokens) for _ in range(args.runs)]

    def med(k):
        return round(statistics.median(r[k] for r in runs), 3)

    from importlib.metadata import version

    result = {
        "model": os.path.abspath(args.model_dir),
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "dtype": args.dtype or "as stored",
        "quantization": config.get("quantization"),
        "load_s": round(load_s, 3),
        "cold_ttft_ms": round(cold["ttft_ms"], 3),
        "load_to_first_token_s": round(load_s + cold["ttft_ms"] / 1e3, 3),
        "ttft_ms": med("ttft_ms"),
        "prefill_tokens_per_s": med("prefill_tokens_per_s"),
        "decode_tokens_per_s": med("decode_tokens_per_s"),
        "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
        "device": str(mx.default_device()),
        "mlx_version": version("mlx"),
        "mlx_lm_version": version("mlx-lm"),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "cblas_sgemm_from": global_cblas_provider() or "mlx wheel's bundled BLAS",
    }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()

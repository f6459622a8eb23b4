"""Serving benchmark: `cortex serve` against `mlx_lm.server` (mlx-lm's own continuous batching)
on the same model folder, under the same client load, one server after the other in one run.

Each load level starts N streaming chat completions at once (distinct prompts, greedy,
max_tokens fixed) and measures per request the time to first token and the completion
tokens (from the usage chunk). Reported per server and level:
  steady tok/s   tokens streamed between the last stream's first token and the first
                 stream's last token (every stream decoding) / that window's length
  decode tok/s   the sum over streams of (tokens after the first / time after the first);
                 includes the slowdown while later streams' prompts are prefilled
  total tok/s    all completion tokens / wall time of the round (prefill included)
  TTFT p50/p90   time from the round's start to each stream's first token
For cortex, /v1/engine/stats is sampled during the mixed-length round: KV used/reserved is the
tokens cached by running sequences over the slots their blocks hold.

Goals (issue 3): cortex decode at 8 streams >= 4x cortex at 1 stream and >= 1.2x mlx_lm.server
at 8; cortex median TTFT at 8 <= mlx_lm.server's; KV used/reserved >= 0.9.

  python bench/serve_bench.py [--model DIR] [--streams 8] [--prompt-words 90] [--max-tokens 128]
"""
import argparse
import concurrent.futures as cf
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORTEX = ROOT / "target" / "release" / "cortex"
PY = sys.executable
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
TOPICS = ["the sea", "a mountain village", "a robot learning to paint", "the history of bread",
          "a city at night", "a long train journey", "an old lighthouse keeper", "the first snow",
          "a library that never closes", "a garden in spring", "a chess tournament", "the moon"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            return
        except Exception:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {timeout}s")


def prompt(i, words):
    topic = TOPICS[i % len(TOPICS)]
    filler = " ".join(f"detail{(i * 31 + j) % 97}" for j in range(max(0, words - 12)))
    return f"Story {i}: write a long, vivid story about {topic}. Notes: {filler}"


def one_request(url, model, text, max_tokens, start):
    body = json.dumps({
        "model": model, "stream": True, "temperature": 0.0, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        "stream_options": {"include_usage": True},
    }).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    first, chunks, usage, stamps = None, 0, None, []
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            if ev.get("usage"):
                usage = ev["usage"]
            for c in ev.get("choices") or []:
                if (c.get("delta") or {}).get("content"):
                    chunks += 1
                    now = time.perf_counter()
                    stamps.append(now)
                    if first is None:
                        first = now
    end = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else chunks
    first = first or end
    return {"ttft": first - start, "first": first, "end": end, "tokens": tokens, "stamps": stamps}


def round_(url, model, n, words, max_tokens, salt, mixed=False):
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(n) as ex:
        futs = []
        for i in range(n):
            w = words * (1 + (i % 4)) // 2 if mixed else words
            futs.append(ex.submit(one_request, url, model, prompt(salt + i, w), max_tokens, start))
        runs = [f.result() for f in futs]
    wall = time.perf_counter() - start
    # each stream's own decode rate, summed
    decode = sum(max(0, r["tokens"] - 1) / max(r["end"] - r["first"], 1e-9) for r in runs)
    # steady state: from the last stream's first token to the first stream's last, every
    # stream is decoding; tokens streamed in that window / its length
    lo = max(r["first"] for r in runs)
    hi = min(r["stamps"][-1] if r["stamps"] else r["end"] for r in runs)
    in_window = sum(sum(1 for t in r["stamps"] if lo < t <= hi) for r in runs)
    steady = in_window / (hi - lo) if hi - lo > 0.5 else float("nan")
    return {"decode": decode, "steady": steady, "total": sum(r["tokens"] for r in runs) / wall,
            "ttft": [r["ttft"] * 1e3 for r in runs], "tokens": sum(r["tokens"] for r in runs)}


def measure(url, model, a):
    out = {}
    round_(url, model, a.streams, a.prompt_words, a.max_tokens, 1000)  # warm-up
    salt = 0
    for n in (1, a.streams):
        rounds = []
        for _ in range(a.rounds):
            salt += n
            rounds.append(round_(url, model, n, a.prompt_words, a.max_tokens, salt))
        ttft = [t for r in rounds for t in r["ttft"]]
        out[n] = {"decode": statistics.median(r["decode"] for r in rounds),
                  "steady": statistics.median(r["steady"] for r in rounds),
                  "total": statistics.median(r["total"] for r in rounds),
                  "ttft_p50": statistics.median(ttft),
                  "ttft_p90": sorted(ttft)[int(0.9 * (len(ttft) - 1))],
                  "tokens": statistics.median(r["tokens"] for r in rounds)}
    return out


def kv_utilization(url, model, a):
    samples, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                s = json.loads(urllib.request.urlopen(url + "/v1/engine/stats", timeout=2).read())
                for e in s.get("models", []):
                    st = e.get("stats", e)
                    if st.get("running", 0) > 0:
                        samples.append(st["kv_utilization"])
            except Exception:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=poll)
    t.start()
    round_(url, model, a.streams, a.prompt_words, a.max_tokens, 5000, mixed=True)
    stop.set()
    t.join()
    return statistics.mean(samples) if samples else float("nan"), len(samples)


def blas_coretype():
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return None
    if all(f in flags for f in ("avx512f", "avx512vl", "avx512bw", "avx512dq")):
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return None


def with_cortex_blas(env):
    """env with Debian's OpenBLAS preloaded and the settings the cortex binary gives itself
    (cortex_mlx::blas: the kernels for this CPU, idle threads asleep at once), so mlx-lm's
    float matmuls run on the same BLAS as cortex's."""
    if os.path.exists(OPENBLAS):
        env["LD_PRELOAD"] = OPENBLAS
        core = blas_coretype()
        if core:
            env.setdefault("OPENBLAS_CORETYPE", core)
        env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    return env


def start_cortex(model_dir, port, a):
    env = dict(os.environ, CORTEX_HOME=str(ROOT / "bench" / ".work" / "home"))
    cmd = [str(CORTEX), "serve", str(model_dir), "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_mlx_lm(model_dir, port, a):
    env = with_cortex_blas(dict(os.environ))
    cmd = [PY, "-m", "mlx_lm", "server", "--model", str(model_dir), "--port", str(port),
           "--decode-concurrency", str(a.streams), "--prompt-concurrency", str(a.streams),
           "--max-tokens", str(a.max_tokens), "--log-level", "WARNING"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_model(a):
    if a.model:
        return pathlib.Path(a.model)
    home = pathlib.Path(os.environ.get("CORTEX_HOME", pathlib.Path.home() / ".cortexstream"))
    q4 = home / "models" / "SmolLM2-135M-Instruct"
    if not (q4 / "config.json").exists():
        subprocess.run([CORTEX, "run", "default", "hi", "--max-tokens", "1", "--temp", "0"], check=True,
                       capture_output=True)
    return q4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--prompt-words", type=int, default=90)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=["cortex", "mlx-lm"])
    a = ap.parse_args()
    if not CORTEX.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "cortex-cli"], cwd=ROOT, check=True)
    model_dir = ensure_model(a)
    results, util = {}, None
    for name, starter in (("cortex", start_cortex), ("mlx-lm", start_mlx_lm)):
        if a.only and a.only != name:
            continue
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = starter(model_dir, port, a)
        try:
            wait_ready(url, proc)
            model = str(model_dir)
            results[name] = measure(url, model, a)
            if name == "cortex":
                util = kv_utilization(url, model, a)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    n = a.streams
    print(f"\n{model_dir.name}: ~{a.prompt_words}-word prompts, {a.max_tokens} tokens each, median of "
          f"{a.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'server':<8} {'streams':>7} {'steady tok/s':>13} {'decode tok/s':>13} {'total tok/s':>12} "
          f"{'TTFT p50 ms':>12} {'TTFT p90 ms':>12}")
    for name, r in results.items():
        for k, m in r.items():
            print(f"{name:<8} {k:>7} {m['steady']:>13.1f} {m['decode']:>13.1f} {m['total']:>12.1f} "
                  f"{m['ttft_p50']:>12.0f} {m['ttft_p90']:>12.0f}")
    c, p = results.get("cortex"), results.get("mlx-lm")
    print()
    if c:
        print(f"cortex {n} streams / 1 stream, steady-state decode: {c[n]['steady'] / c[1]['steady']:.2f}x, "
              f"per-stream decode summed: {c[n]['decode'] / c[1]['decode']:.2f}x (goal >= 4)")
    if c and p:
        print(f"cortex / mlx_lm.server at {n}: steady-state decode {c[n]['steady'] / p[n]['steady']:.2f}x, "
              f"per-stream decode summed {c[n]['decode'] / p[n]['decode']:.2f}x, "
              f"total {c[n]['total'] / p[n]['total']:.2f}x (goal >= 1.2)")
        print(f"median TTFT at {n}: cortex {c[n]['ttft_p50']:.0f} ms vs mlx_lm.server {p[n]['ttft_p50']:.0f} ms "
              f"(ratio {p[n]['ttft_p50'] / c[n]['ttft_p50']:.2f}x, goal >= 1)")
    if util:
        print(f"KV used / reserved under mixed prompt lengths: {util[0]:.3f} over {util[1]} samples (goal >= 0.9)")


if __name__ == "__main__":
    main()

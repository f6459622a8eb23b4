#!/usr/bin/env python3
"""Soak benchmark (issue 11): mixed load against one `cortex serve` for a long time, then its
health. Not a test: it runs for minutes (30 by default) and prints figures for a person.

    python bench/soak.py [--minutes 30] [--cortex target/release/cortex] [--workers 6]

The server gets a scratch home whose models folder holds the tiny random-weight llama of
tests/fixtures/generated under three names (a, b, c) and runs with --max-loaded 2, so asking for
c unloads the least recently used of a and b (load/unload churn). A local test hub
(tests/hub/server.py, repos from tests/e2e/make_hub.py) serves downloads. The load, mixed at
random by each worker:
  stream      a streamed chat read to the end (TTFT and total time recorded)
  whole       a non-streamed chat (latency recorded)
  cancel      a stream read for a few chunks, then the connection dropped (a disconnect)
  bad         a bad request (malformed JSON, unknown model, a path as model, logit_bias too
              large, a negative max_tokens, an unknown route): must be 4xx, never 5xx
  churn       a chat to the model that is not loaded (an LRU unload and a load); --no-churn
              leaves it out, to see the steady serving path's RSS alone
and, every few minutes, one download of test-org/tiny-chat from the test hub through the app
API, awaited, then deleted again.

Sampled every 10 s: the server's RSS and /v1/engine/stats. Reported at the end: requests by kind
and outcome, errors (5xx, connection failures, an unexpected status), latency p50/p99 per kind,
RSS after the warm-up vs at the end (growth), and leaked KV blocks once the load has stopped
(blocks neither free nor holding a cached prefix, with no sequence running: must be 0).
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/generated/tiny-llama"
PY = sys.executable


class Server:
    """`cortex serve` on a free port over a scratch home."""

    def __init__(self, cortex, work, hub_url):
        self.home = work / "home"
        models = self.home / "models"
        models.mkdir(parents=True)
        for name in "abc":
            shutil.copytree(TINY, models / name)
        env = dict(os.environ, CORTEX_HOME=str(self.home), HF_HOME=str(work / "hf"),
                   HF_ENDPOINT=hub_url, RUST_LOG="warn")
        env.pop("HF_TOKEN", None)
        self.log = open(work / "serve.log", "w")
        self.proc = subprocess.Popen(
            [str(cortex), "serve", "--port", "0", "--max-loaded", "2", "--idle-unload", "0",
             "--kv-memory", "256"],
            stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on http://"):
            raise SystemExit(f"cortex serve did not start: {line!r} (see {work / 'serve.log'})")
        hostport = line.strip().removeprefix("listening on http://")
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def request(srv, method, path, body=None, raw=None, timeout=120, stream=False):
    """Returns (status, body bytes or the open response when stream)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    if stream:
        return resp.status, (conn, resp)
    out = resp.read()
    conn.close()
    return resp.status, out


def chat_body(model, stream, max_tokens):
    words = " ".join(random.choice(["tell", "me", "about", "the", "sea", "night", "bread", "a"])
                     for _ in range(random.randint(3, 40)))
    return {"model": model, "stream": stream, "max_tokens": max_tokens, "temperature": 0.7,
            "messages": [{"role": "user", "content": words}]}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.latency = {}
        self.errors = []

    def add(self, kind, outcome, seconds=None):
        with self.lock:
            self.counts[(kind, outcome)] = self.counts.get((kind, outcome), 0) + 1
            if seconds is not None:
                self.latency.setdefault(kind, []).append(seconds)

    def error(self, kind, what):
        with self.lock:
            self.errors.append((time.time(), kind, what[:300]))
        self.add(kind, "ERROR")


def do_stream(srv, st, model="a"):
    t0 = time.time()
    status, (conn, resp) = request(srv, "POST", "/v1/chat/completions",
                                   chat_body(model, True, random.randint(8, 48)), stream=True)
    if status != 200:
        body = resp.read().decode(errors="replace")
        conn.close()
        if status == 503:
            return st.add("stream", "503")
        return st.error("stream", f"{status} {body}")
    ttft = None
    done = False
    for line in resp:
        if ttft is None and line.startswith(b"data: {"):
            ttft = time.time() - t0
        if line.strip() == b"data: [DONE]":
            done = True
        if b'"error"' in line:
            conn.close()
            return st.error("stream", line.decode(errors="replace"))
    conn.close()
    if not done:
        return st.error("stream", "stream ended without [DONE]")
    st.add("stream", "ok", time.time() - t0)
    if ttft is not None:
        st.add("ttft", "ok", ttft)


def do_whole(srv, st, model="b", kind="whole"):
    t0 = time.time()
    status, body = request(srv, "POST", "/v1/chat/completions",
                           chat_body(model, False, random.randint(4, 24)))
    if status == 200:
        v = json.loads(body)
        if not v["choices"][0]["message"]["content"] and v["usage"]["completion_tokens"] > 0:
            return st.error(kind, "empty content")
        return st.add(kind, "ok", time.time() - t0)
    if status == 503:
        return st.add(kind, "503")  # busy: every loaded model answering (a refusal, not a fault)
    st.error(kind, f"{status} {body[:200]!r}")


def do_cancel(srv, st):
    status, (conn, resp) = request(srv, "POST", "/v1/chat/completions",
                                   chat_body("a", True, 200), stream=True)
    if status != 200:
        resp.read()
        conn.close()
        return st.add("cancel", str(status)) if status == 503 else st.error("cancel", str(status))
    for _ in range(random.randint(1, 6)):
        if not resp.readline():
            break
    conn.sock.close()  # hang up mid-stream
    conn.close()
    st.add("cancel", "ok")


BAD = [
    ("POST", "/v1/chat/completions", None, b"{not json"),
    ("POST", "/v1/chat/completions", {"model": "no-such-model", "messages": []}, None),
    ("POST", "/v1/chat/completions",
     {"model": "/etc", "messages": [{"role": "user", "content": "x"}]}, None),
    ("POST", "/v1/chat/completions",
     {"model": "a", "messages": [{"role": "user", "content": "x"}],
      "logit_bias": {str(i): 1 for i in range(400)}}, None),
    ("POST", "/v1/chat/completions",
     {"model": "a", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}, None),
    ("POST", "/v1/completions", {"model": "a", "prompt": [], "max_tokens": 4}, None),
    ("GET", "/v1/no/such/route", None, None),
    ("POST", "/api/models/import", {"path": "/etc/passwd"}, None),
]


def do_bad(srv, st):
    method, path, body, raw = random.choice(BAD)
    status, out = request(srv, method, path, body=body, raw=raw)
    if 400 <= status < 500:
        return st.add("bad", str(status))
    if status == 503 and path.startswith("/v1/completions"):
        # the prompt is checked against the model's tokenizer, so when its model must be loaded
        # while every loaded one is busy, "busy" comes first (a refusal, not a fault)
        return st.add("bad", "503")
    st.error("bad", f"{method} {path}: {status} {out[:200]!r}")


def do_download(srv, st):
    t0 = time.time()
    status, out = request(srv, "POST", "/api/downloads", {"repo": "test-org/tiny-chat"})
    if status != 200:
        return st.error("download", f"start: {status} {out[:200]!r}")
    dl = json.loads(out)
    while time.time() - t0 < 600:
        status, out = request(srv, "GET", f"/api/downloads/{dl['id']}")
        dl = json.loads(out)
        if dl["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.5)
    if dl["state"] != "completed":
        return st.error("download", f"ended {dl['state']}: {dl.get('error')}")
    status, out = request(srv, "DELETE", f"/api/models/{dl['model_id']}")
    if status != 200:
        return st.error("download", f"delete: {status} {out[:200]!r}")
    request(srv, "DELETE", f"/api/downloads/{dl['id']}")
    st.add("download", "ok", time.time() - t0)


def worker(srv, st, stop_at, churn=True):
    kinds = [do_stream] * 4 + [do_whole] * 3 + [do_cancel] * 2 + [do_bad] * 2
    if churn:
        kinds.append(lambda s, t: do_whole(s, t, "c", "churn"))
    while time.time() < stop_at:
        try:
            random.choice(kinds)(srv, st)
        except Exception as e:  # noqa: BLE001 - a connection failure is a finding, not a crash
            st.error("client", repr(e))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=3, help="minutes before the RSS baseline")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--download-every", type=float, default=5, help="minutes")
    ap.add_argument("--cortex", default=str(ROOT / "target/release/cortex"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-churn", action="store_true",
                    help="no requests for the third model: no unload/load churn, so RSS growth is "
                         "the steady serving path's alone")
    args = ap.parse_args()
    random.seed(args.seed)
    if not (TINY / "model.safetensors").exists():
        raise SystemExit("fixtures missing: PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh")

    work = pathlib.Path(tempfile.mkdtemp(prefix="cortex-soak-"))
    subprocess.run([PY, str(ROOT / "tests/e2e/make_hub.py"), str(work / "hub")], check=True,
                   stdout=subprocess.DEVNULL)
    hub = subprocess.Popen([PY, str(ROOT / "tests/hub/server.py"), "--root", str(work / "hub"),
                            "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    hub_url = hub.stdout.readline().strip().removeprefix("LISTENING ")
    srv = Server(args.cortex, work, hub_url)
    st = Stats()
    samples = []  # (t, rss_mb, stats json)
    t_start = time.time()
    stop_at = t_start + args.minutes * 60
    sampling = threading.Event()

    def sampler():
        while not sampling.wait(10):
            try:
                _, out = request(srv, "GET", "/v1/engine/stats", timeout=30)
                samples.append((time.time() - t_start, srv.rss_mb(), json.loads(out)))
            except Exception as e:  # noqa: BLE001
                st.error("stats", repr(e))

    def downloader():
        while time.time() < stop_at:
            do_download(srv, st)
            time.sleep(args.download_every * 60)

    threading.Thread(target=sampler, daemon=True).start()
    print(f"soak: {args.minutes} min, {args.workers} workers, server pid {srv.proc.pid}, "
          f"work dir {work}", flush=True)
    try:
        with cf.ThreadPoolExecutor(args.workers + 1) as pool:
            futs = [pool.submit(worker, srv, st, stop_at, not args.no_churn) for _ in range(args.workers)]
            futs.append(pool.submit(downloader))
            last = 0
            while not all(f.done() for f in futs):
                time.sleep(5)
                if samples and time.time() - last > 60:
                    last = time.time()
                    t, rss, _ = samples[-1]
                    ok = sum(n for (k, o), n in st.counts.items() if o != "ERROR")
                    print(f"  {t / 60:5.1f} min  rss {rss:7.1f} MB  requests {ok:6d}  "
                          f"errors {len(st.errors)}", flush=True)
            for f in futs:
                f.result()
        # the load has stopped: every sequence must finish and give its blocks back
        time.sleep(2)
        _, out = request(srv, "GET", "/v1/engine/stats")
        final = json.loads(out)
    finally:
        sampling.set()
        srv.stop()
        hub.terminate()

    print("\n== soak results ==")
    print(f"duration {args.minutes} min, {args.workers} workers; server log {work / 'serve.log'}")
    kinds = sorted({k for k, _ in st.counts})
    for k in kinds:
        outcomes = ", ".join(f"{o}: {n}" for (kk, o), n in sorted(st.counts.items()) if kk == k)
        print(f"  {k:9s} {outcomes}")
    for k, xs in sorted(st.latency.items()):
        print(f"  latency {k:9s} n={len(xs):6d}  p50 {pct(xs, 50) * 1000:8.1f} ms  "
              f"p99 {pct(xs, 99) * 1000:8.1f} ms  max {max(xs) * 1000:8.1f} ms")
    warm = [s for s in samples if s[0] >= args.warmup * 60]
    if warm:
        base, end, peak = warm[0][1], warm[-1][1], max(s[1] for s in warm)
        print(f"  RSS after warm-up {base:.1f} MB, at the end {end:.1f} MB "
              f"({(end - base) / base * 100:+.1f}%), peak {peak:.1f} MB; "
              f"{len(samples)} samples")
        third = max(1, len(warm) // 3)
        first_third = statistics.mean(s[1] for s in warm[:third])
        last_third = statistics.mean(s[1] for s in warm[-third:])
        print(f"  RSS mean first third {first_third:.1f} MB, last third {last_third:.1f} MB "
              f"({(last_third - first_third) / first_third * 100:+.1f}%)")
    leaked = 0
    for m in final.get("models", []):
        s = m["stats"]
        used = s["total_blocks"] - s["free_blocks"]
        if s["running"] == 0 and s["waiting"] == 0:
            leaked += used
        print(f"  {m['names']}: running {s['running']}, waiting {s['waiting']}, blocks "
              f"{s['total_blocks']} total, {s['free_blocks']} free ({s['cached_blocks']} cached "
              f"prefixes), finished {s['finished']}, preemptions {s['preemptions']}")
    print(f"  leaked KV blocks: {leaked}")
    print(f"  errors: {len(st.errors)}")
    for t, kind, what in st.errors[:20]:
        print(f"    {t - t_start:7.1f}s {kind}: {what}")
    shutil.rmtree(work / "hub", ignore_errors=True)
    return 1 if st.errors or leaked else 0


if __name__ == "__main__":
    sys.exit(main())

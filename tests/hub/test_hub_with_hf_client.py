"""Checks the local test hub (tests/hub/server.py) with the official huggingface_hub client.

    .venv/bin/python -m pytest tests/hub -q

Needs the tiny models in tests/fixtures/generated (tests/fixtures/make_all.sh).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GENERATED = ROOT / "tests" / "fixtures" / "generated"
TOKEN = "hf_test_token_with_access"
NO_ACCESS_TOKEN = "hf_test_token_without_access"
PAGE_SIZE = 10


class Hub:
    def __init__(self, url: str, root: Path, proc: subprocess.Popen):
        self.url = url
        self.root = root
        self.proc = proc

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def faults(self, *faults):
        return self._call("POST", "/_faults", list(faults))

    def clear(self):
        self._call("DELETE", "/_faults")
        self._call("DELETE", "/_log")

    def log(self):
        return self._call("GET", "/_log")


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    if not (GENERATED / "tiny-llama" / "model.safetensors").is_file():
        pytest.fail(f"{GENERATED} has no tiny models: run tests/fixtures/make_all.sh first")
    root = tmp_path_factory.mktemp("hub-root")
    subprocess.run([sys.executable, str(HERE / "make_fixture_repos.py"), str(root)], check=True,
                   stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--root", str(root), "--port", "0",
         "--token", TOKEN, "--no-access-token", NO_ACCESS_TOKEN, "--page-size", str(PAGE_SIZE)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("LISTENING "), f"server did not start: {line!r}"
    yield Hub(line.split(" ", 1)[1], root, proc)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def hf(hub, tmp_path, monkeypatch):
    """huggingface_hub pointed at the test hub, with an empty cache; a fresh import per test
    (its constants are read from the environment at import time)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # A fresh import adds its log handler again: drop the old one.
    logging.getLogger("huggingface_hub").handlers.clear()
    for name in [m for m in sys.modules if m == "huggingface_hub" or m.startswith("huggingface_hub.")]:
        del sys.modules[name]
    import huggingface_hub

    hub.clear()
    yield huggingface_hub
    hub.clear()


def sha256_file(p) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def test_snapshot_download_is_byte_identical(hf, hub, tmp_path):
    path = Path(hf.snapshot_download("test-org/tiny-llama"))
    src = hub.root / "test-org" / "tiny-llama"
    expected = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and p.name != ".hub.json")
    got = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert got == expected
    for rel in expected:
        assert filecmp.cmp(src / rel, path / rel, shallow=False), rel
    # The standard cache layout: blobs named by etag, refs/main = the commit, snapshot symlinks.
    repo_dir = tmp_path / "hf-cache" / "models--test-org--tiny-llama"
    commit = (repo_dir / "refs" / "main").read_text()
    assert path == repo_dir / "snapshots" / commit
    lfs_sha = sha256_file(src / "model.safetensors")
    assert (repo_dir / "blobs" / lfs_sha).is_file()
    # The LFS file came through the redirect to the CDN path.
    log = hub.log()
    assert any(e["path"] == "/test-org/tiny-llama/resolve/" + commit + "/model.safetensors" and e["status"] == 302
               for e in log), log
    assert any(e["path"].startswith("/cdn/test-org/tiny-llama/" + lfs_sha) and e["status"] == 200 for e in log)
    # scan_cache_dir sees it.
    info = hf.scan_cache_dir(tmp_path / "hf-cache")
    repos = {r.repo_id: r for r in info.repos}
    assert "test-org/tiny-llama" in repos
    assert {f.file_name for r in repos["test-org/tiny-llama"].revisions for f in r.files} >= {"model.safetensors", "config.json"}
    assert not info.warnings


def test_hf_hub_download_one_file(hf, hub):
    src = hub.root / "test-org" / "tiny-qwen2" / "config.json"
    p = hf.hf_hub_download("test-org/tiny-qwen2", "config.json")
    assert Path(p).read_bytes() == src.read_bytes()
    assert Path(p).parent.name == hf.HfApi().model_info("test-org/tiny-qwen2").sha
    q = hf.hf_hub_download("test-org/tiny-llama-4bit", "model.safetensors")
    assert sha256_file(q) == sha256_file(hub.root / "test-org" / "tiny-llama-4bit" / "model.safetensors")
    # By commit sha too (here already cached: no new GET of the file).
    sha = Path(p).parent.name
    before = len(hub.log())
    p2 = hf.hf_hub_download("test-org/tiny-qwen2", "config.json", revision=sha)
    assert Path(p2).read_bytes() == src.read_bytes()
    assert not [e for e in hub.log()[before:] if e["method"] == "GET"]


def test_missing_things_raise_the_hub_errors(hf):
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    with pytest.raises(RepositoryNotFoundError):
        hf.hf_hub_download("test-org/no-such-model", "config.json")
    with pytest.raises(EntryNotFoundError):
        hf.hf_hub_download("test-org/tiny-llama", "no-such-file.json")
    with pytest.raises(RevisionNotFoundError):
        hf.hf_hub_download("test-org/tiny-llama", "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf.HfApi().model_info("test-org/no-such-model")


def test_list_models_pages(hf, hub):
    api = hf.HfApi()
    models = list(api.list_models(search="small-model", limit=25, sort="downloads"))
    assert len(models) == 25
    assert len({m.id for m in models}) == 25
    downloads = [m.downloads for m in models]
    assert downloads == sorted(downloads, reverse=True)
    pages = [e for e in hub.log() if e["path"] == "/api/models"]
    assert len(pages) == 3, pages  # 10 + 10 + 5 (the client stops at the limit)
    assert "cursor=" in pages[1]["query"]
    every = list(api.list_models(author="small-org"))
    assert len(every) == 30
    mlx = list(api.list_models(author="test-org", filter="mlx"))
    assert [m.id for m in mlx] == ["test-org/tiny-llama-4bit"]
    assert all(m.id != "test-org/private-model" for m in api.list_models(author="test-org"))
    assert "test-org/private-model" in {m.id for m in api.list_models(author="test-org", token=TOKEN)}
    expanded = list(api.list_models(search="tiny-llama-4bit", expand=["downloads", "likes"]))
    assert expanded[0].downloads == 3000 and expanded[0].likes == 30


def test_model_info_with_files_metadata(hf, hub):
    info = hf.HfApi().model_info("test-org/tiny-llama", files_metadata=True)
    src = hub.root / "test-org" / "tiny-llama"
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["model.safetensors"].lfs.sha256 == sha256_file(src / "model.safetensors")
    assert sib["model.safetensors"].lfs.size == (src / "model.safetensors").stat().st_size
    assert sib["config.json"].lfs is None and sib["config.json"].size == (src / "config.json").stat().st_size
    assert len(info.sha) == 40
    assert info.safetensors is not None and info.safetensors.total > 0
    assert info.gated is False and info.card_data.license == "apache-2.0"
    # Tree API (recursive and not), paths-info.
    api = hf.HfApi()
    tree = list(api.list_repo_tree("small-org/small-model-00", recursive=True))
    paths = {e.path for e in tree}
    assert {"sub", "sub/dir", "sub/dir/nested.txt", "sub/top.txt", "config.json"} <= paths
    top = {e.path for e in api.list_repo_tree("small-org/small-model-00")}
    assert "sub/top.txt" not in top and "sub" in top
    lfs = [e for e in api.list_repo_tree("test-org/tiny-llama") if e.path == "model.safetensors"][0]
    assert lfs.lfs.sha256 == sib["model.safetensors"].lfs.sha256
    pi = api.get_paths_info("test-org/tiny-llama", ["config.json", "model.safetensors"])
    assert {e.path for e in pi} == {"config.json", "model.safetensors"}


def test_gated_and_private(hf, hub):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    # Metadata of a gated repo is public; its files are not.
    assert hf.HfApi().model_info("test-org/gated-model").gated == "manual"
    with pytest.raises(GatedRepoError):
        hf.hf_hub_download("test-org/gated-model", "config.json")
    with pytest.raises(GatedRepoError) as e:
        hf.hf_hub_download("test-org/gated-model", "config.json", token=NO_ACCESS_TOKEN)
    assert e.value.response.status_code == 403
    p = hf.snapshot_download("test-org/gated-model", token=TOKEN)
    assert (Path(p) / "model.safetensors").read_bytes() == (hub.root / "test-org" / "gated-model" / "model.safetensors").read_bytes()
    with pytest.raises(RepositoryNotFoundError):
        hf.HfApi().model_info("test-org/private-model")
    with pytest.raises(RepositoryNotFoundError):
        hf.hf_hub_download("test-org/private-model", "config.json")
    p = hf.hf_hub_download("test-org/private-model", "config.json", token=TOKEN)
    assert Path(p).is_file()


def test_drop_after_on_big_file_is_resumed(hf, hub):
    # huggingface_hub writes what it reads in 10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE), so after a
    # drop it resumes from the last whole chunk: drop past the first one.
    chunk = 10 * 1024 * 1024
    hub.faults({"path_glob": "/cdn/*/big.bin", "kind": "drop_after", "bytes": 11_000_000, "times": 1})
    p = hf.hf_hub_download("test-org/big-file", "big.bin")
    src = hub.root / "test-org" / "big-file" / "big.bin"
    assert sha256_file(p) == sha256_file(src)
    gets = [e for e in hub.log() if e["method"] == "GET" and e["path"].endswith("/big.bin") and e["path"].startswith("/cdn/")]
    assert len(gets) == 2, gets
    assert gets[0]["fault"] == "drop_after" and gets[0]["bytes_sent"] == 11_000_000
    # The client resumed: it asked only for the bytes it had not kept.
    assert gets[1]["range"] == f"bytes={chunk}-" and gets[1]["status"] == 206
    assert gets[1]["bytes_sent"] == src.stat().st_size - chunk
    # The cache holds the finished blob, named by its sha256, and no partial file.
    blobs = Path(p).resolve().parent
    assert Path(p).resolve().name == sha256_file(src)
    assert not [b for b in blobs.iterdir() if b.name.endswith(".incomplete")]


def test_server_faults_and_ranges(hub):
    """The fault kinds and Range handling, checked with plain HTTP."""
    import http.client

    hub.clear()
    url = hub.url + "/test-org/tiny-llama/resolve/main/config.json"
    src = (hub.root / "test-org" / "tiny-llama" / "config.json").read_bytes()

    def get(headers=None):
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    st, h, body = get({"Range": "bytes=10-19"})
    assert st == 206 and body == src[10:20] and h["Content-Range"] == f"bytes 10-19/{len(src)}"
    st, h, body = get({"Range": "bytes=-5"})
    assert st == 206 and body == src[-5:]
    st, h, _ = get({"Range": f"bytes={len(src)}-"})
    assert st == 416 and h["Content-Range"] == f"bytes */{len(src)}"
    hub.faults({"path_glob": "*/config.json", "kind": "status", "status": 503, "times": 2})
    assert get()[0] == 503 and get()[0] == 503 and get()[0] == 200
    hub.faults({"path_glob": "*/config.json", "kind": "corrupt", "bytes": 3, "offset": 5})
    st, _, body = get()
    assert st == 200 and len(body) == len(src) and body != src and body[:5] == src[:5] and body[8:] == src[8:]
    hub.faults({"path_glob": "*/config.json", "kind": "drop_after", "bytes": 100})
    with pytest.raises(http.client.IncompleteRead):
        get()
    hub.faults({"path_glob": "*/config.json", "kind": "stall", "bytes": 10, "seconds": 0.5})
    import time
    t = time.monotonic()
    assert get()[2] == src
    assert time.monotonic() - t >= 0.5
    log = hub.log()
    assert [e["fault"] for e in log] == [None, None, None, "status", "status", None, "corrupt", "drop_after", "stall"]

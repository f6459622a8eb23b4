#!/usr/bin/env python3
"""A local Hugging Face Hub-compatible server for tests (Python standard library only).

    python3 tests/hub/server.py --root DIR [--port 0] [--latency-ms N] [--token T]
                                [--no-access-token T] [--page-size N] [--cdn-host HOST]

Serves the repositories found in DIR/<org>/<name>/ (every file below is a repo file, except an
optional .hub.json with repo metadata: gated false|"auto"|"manual", private, tags, pipeline_tag,
library_name, downloads, likes, trendingScore, lastModified, createdAt, cardData, license).
Prints `LISTENING http://127.0.0.1:PORT` on stdout once ready.

Hub endpoints:
  GET  /api/models                              search (search, author, filter, pipeline_tag, gated,
                                                sort, direction, limit, expand, full, cardData, config);
                                                pages chained by a Link: <...cursor=...>; rel="next" header
  GET  /api/models/{org}/{name}[/revision/{rev}]  model info (?blobs=true for sizes and lfs)
  GET  /api/models/{org}/{name}/tree/{rev}[/{path}]  tree (?recursive=true, limit, cursor)
  POST /api/models/{org}/{name}/paths-info/{rev}  paths info (form or JSON: paths, expand)
  GET  /api/whoami-v2
  GET|HEAD /{org}/{name}/resolve/{rev}/{path}   small files: 200; LFS files (>= 1 MB or
                                                *.safetensors, *.gguf, *.bin): 302 to /cdn/... on
                                                --cdn-host (default "localhost", a different origin
                                                from 127.0.0.1 as the real hub's CDN is)
  GET|HEAD /cdn/{org}/{name}/{sha256}/{path}?sig=...   the bytes of an LFS file (Range supported)

Access rules (like the hub): private repos answer 401 X-Error-Code: RepoNotFound without a valid
token; gated repos have public metadata but their files answer 401 X-Error-Code: GatedRepo without a
token and 403 GatedRepo for a --no-access-token (a user who has not accepted the terms). An
Authorization header with an unknown token answers 401 "Invalid credentials in Authorization header"
when --token is set.

Control endpoints (tests only):
  POST /_faults   JSON list (or one object) of faults, appended:
                  {"path_glob": "*/big.bin", "kind": "drop_after"|"status"|"stall"|"corrupt",
                   "bytes": N, "status": 500, "seconds": S, "times": K, "method": "GET",
                   "offset": O, "headers": {...}}
                  drop_after: send N body bytes then close the connection.
                  status:     answer with that status (and optional extra headers).
                  stall:      send headers and N body bytes (default 0), sleep S seconds, go on.
                  corrupt:    flip N bytes (default 1) of the body from body offset O (default 0).
                  Each applies K times (default 1; -1 = forever) then disappears. `path_glob` is
                  matched (fnmatch) against the request path without its query. `method` defaults to
                  any method for "status" and to GET for the others.
  GET /_faults, DELETE /_faults
  GET /_log       requests served: [{method, path, query, range, status, bytes_sent, fault}]
  DELETE /_log
  POST /_reload   rescan --root
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

LFS_MIN_SIZE = 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")
DEFAULT_DATE = "2026-01-01T00:00:00.000Z"
CHUNK = 64 * 1024
ZERO_SHA = "0" * 40


# ---------------------------------------------------------------------------------------------
# Repositories
# ---------------------------------------------------------------------------------------------


class RepoFile:
    __slots__ = ("path", "abspath", "size", "blob_sha1", "sha256", "lfs", "pointer_size", "oid")

    def __init__(self, path: str, abspath: str):
        self.path = path
        self.abspath = abspath
        self.size = os.path.getsize(abspath)
        h256 = hashlib.sha256()
        h1 = hashlib.sha1(b"blob %d\0" % self.size)
        with open(abspath, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h256.update(b)
                h1.update(b)
        self.sha256 = h256.hexdigest()
        self.blob_sha1 = h1.hexdigest()
        self.lfs = self.size >= LFS_MIN_SIZE or path.endswith(LFS_SUFFIXES)
        if self.lfs:
            # In git an LFS file is a pointer file: its oid is the pointer's blob sha1.
            pointer = (
                "version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{self.sha256}\nsize {self.size}\n"
            ).encode()
            self.pointer_size = len(pointer)
            self.oid = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
        else:
            self.pointer_size = None
            self.oid = self.blob_sha1

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_sha1


def _safetensors_params(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return out
    for name, t in header.items():
        if name == "__metadata__" or not isinstance(t, dict):
            continue
        count = 1
        for d in t.get("shape", []):
            count *= int(d)
        out[t.get("dtype", "F32")] = out.get(t.get("dtype", "F32"), 0) + count
    return out


class Repo:
    def __init__(self, org: str, name: str, directory: str):
        self.id = f"{org}/{name}"
        self.org = org
        self.name = name
        self.dir = directory
        meta_path = os.path.join(directory, ".hub.json")
        self.meta: dict = {}
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                self.meta = json.load(f)
        files = []
        for base, dirs, names in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            for n in sorted(names):
                abspath = os.path.join(base, n)
                rel = os.path.relpath(abspath, directory).replace(os.sep, "/")
                if rel == ".hub.json" or not os.path.isfile(abspath):
                    continue
                files.append(RepoFile(rel, abspath))
        files.sort(key=lambda f: f.path)
        self.files = {f.path: f for f in files}
        self.by_sha256 = {f.sha256: f for f in files if f.lfs}
        # Directories (every prefix of every file path).
        self.dirs: set[str] = set()
        for f in files:
            parts = f.path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                self.dirs.add("/".join(parts[:i]))
        h = hashlib.sha1(b"commit\0" + self.id.encode() + b"\0")
        for f in files:
            h.update(f"{f.path}\0{f.oid}\n".encode())
        h.update(json.dumps(self.meta, sort_keys=True).encode())
        self.sha = h.hexdigest()
        self.config = None
        if "config.json" in self.files:
            try:
                with open(self.files["config.json"].abspath) as f:
                    cfg = json.load(f)
                self.config = {k: cfg[k] for k in ("architectures", "model_type") if k in cfg}
                if "quantization" in cfg or "quantization_config" in cfg:
                    q = cfg.get("quantization") or cfg.get("quantization_config")
                    self.config["quantization_config"] = q
            except (OSError, ValueError):
                self.config = None
        params: dict[str, int] = {}
        for f in files:
            if f.path.endswith(".safetensors"):
                for k, v in _safetensors_params(f.abspath).items():
                    params[k] = params.get(k, 0) + v
        self.safetensors = {"parameters": params, "total": sum(params.values())} if params else None

    # metadata ------------------------------------------------------------------------------
    @property
    def gated(self):
        return self.meta.get("gated", False)

    @property
    def private(self) -> bool:
        return bool(self.meta.get("private", False))

    @property
    def library_name(self):
        if "library_name" in self.meta:
            return self.meta["library_name"]
        if "mlx" in self.tags:
            return "mlx"
        return "transformers" if self.config is not None else None

    @property
    def tags(self) -> list[str]:
        if "tags" in self.meta:
            return list(self.meta["tags"])
        tags = []
        if self.config is not None:
            tags.append("transformers")
        if self.safetensors:
            tags.append("safetensors")
        if self.config and self.config.get("model_type"):
            tags.append(self.config["model_type"])
        if "license" in self.meta:
            tags.append("license:" + self.meta["license"])
        return tags

    @property
    def card_data(self):
        cd = self.meta.get("cardData")
        if cd is None and "license" in self.meta:
            cd = {"license": self.meta["license"]}
        return cd

    def get(self, key, default=None):
        return self.meta.get(key, default)

    def siblings(self, blobs: bool) -> list[dict]:
        out = []
        for f in self.files.values():
            s = {"rfilename": f.path}
            if blobs:
                s["blobId"] = f.oid
                s["size"] = f.size
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            out.append(s)
        return out

    def tree_entry(self, path: str) -> dict:
        if path in self.files:
            f = self.files[path]
            e = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
            if f.lfs:
                e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            return e
        children = sorted(p for p in self.files if p.startswith(path + "/"))
        oid = hashlib.sha1(
            ("tree\0" + "".join(f"{p}\0{self.files[p].oid}" for p in children)).encode()
        ).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def tree(self, path: str, recursive: bool) -> list[str] | None:
        """Paths below `path` ("" = root), directories first then files, or None if absent."""
        if path and path not in self.dirs:
            return None
        prefix = path + "/" if path else ""
        dirs = sorted(d for d in self.dirs if d.startswith(prefix))
        files = [p for p in self.files if p.startswith(prefix)]
        if not recursive:
            dirs = [d for d in dirs if "/" not in d[len(prefix):]]
            files = [p for p in files if "/" not in p[len(prefix):]]
        return dirs + sorted(files)


def load_repos(root: str) -> dict[str, Repo]:
    repos: dict[str, Repo] = {}
    if not os.path.isdir(root):
        return repos
    for org in sorted(os.listdir(root)):
        od = os.path.join(root, org)
        if org.startswith(".") or not os.path.isdir(od):
            continue
        for name in sorted(os.listdir(od)):
            rd = os.path.join(od, name)
            if name.startswith(".") or not os.path.isdir(rd):
                continue
            repo = Repo(org, name, rd)
            repos[repo.id] = repo
    return repos


# ---------------------------------------------------------------------------------------------
# Server state
# ---------------------------------------------------------------------------------------------


class State:
    def __init__(self, args):
        self.root = args.root
        self.tokens = set(args.token or [])
        self.no_access_tokens = set(args.no_access_token or [])
        self.latency = args.latency_ms / 1000.0
        self.page_size = args.page_size
        self.cdn_host = args.cdn_host
        self.secret = secrets.token_bytes(16)
        self.lock = threading.Lock()
        self.repos = load_repos(self.root)
        self.faults: list[dict] = []
        self.log: list[dict] = []
        # Requests begun but not yet logged: GET /_log waits for them, because a client has its
        # whole answer before the handler gets to log it (a test reading the log right after a
        # request would otherwise miss it now and then).
        self.in_flight = 0
        self.settled = threading.Condition(self.lock)

    def reload(self):
        repos = load_repos(self.root)
        with self.lock:
            self.repos = repos

    def sign(self, path: str) -> str:
        return hmac.new(self.secret, path.encode(), hashlib.sha256).hexdigest()[:32]

    def take_fault(self, method: str, path: str):
        with self.lock:
            for f in self.faults:
                kind = f.get("kind")
                want = f.get("method") or (None if kind == "status" else "GET")
                if want is not None and want.upper() != method:
                    continue
                if not fnmatch.fnmatchcase(path, f.get("path_glob", "*")):
                    continue
                times = f.get("times", 1)
                if times == 0:
                    continue
                if times > 0:
                    f["times"] = times - 1
                fault = dict(f)
                self.faults = [x for x in self.faults if x.get("times", 1) != 0]
                return fault
        return None


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Dropped(Exception):
    pass


def parse_range(value: str, size: int):
    """(start, end_inclusive) for a single `bytes=` range; raises ValueError if unsatisfiable."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise ValueError("malformed range")
    a, b = m.group(1), m.group(2)
    if a == "":
        n = int(b)
        if n == 0:
            raise ValueError("empty suffix range")
        start, end = max(size - n, 0), size - 1
    else:
        start = int(a)
        end = int(b) if b != "" else size - 1
        if end < start:
            raise ValueError("end before start")
        end = min(end, size - 1)
    if start >= size:
        raise ValueError("range starts past the end")
    return start, end


# ---------------------------------------------------------------------------------------------
# Handler
# ---------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CortexTestHub/1.0"
    state: State = None  # set in main()

    def log_message(self, fmt, *args):  # quiet
        pass

    # plumbing -------------------------------------------------------------------------------
    def _begin(self, method: str):
        self.method = method
        u = urlsplit(self.path)
        self.raw_path = u.path
        self.query_string = u.query
        self.query = parse_qs(u.query, keep_blank_values=True)
        self.status_sent = None
        self.bytes_sent = 0
        self.fault = None
        self.control = self.raw_path.startswith("/_")
        if not self.control:
            with self.state.lock:
                self.state.in_flight += 1

    def _finish_log(self):
        if self.control:
            return
        entry = {
            "method": self.method,
            "path": self.raw_path,
            "query": self.query_string,
            "range": self.headers.get("Range"),
            "status": self.status_sent,
            "bytes_sent": self.bytes_sent,
            "fault": self.fault.get("kind") if self.fault else None,
        }
        with self.state.lock:
            self.state.log.append(entry)
            self.state.in_flight -= 1
            self.state.settled.notify_all()

    def _q(self, key, default=None):
        v = self.query.get(key)
        return v[0] if v else default

    def _qbool(self, key) -> bool:
        return (self._q(key, "") or "").lower() in ("1", "true", "yes")

    def _base_url(self, host: str | None = None) -> str:
        port = self.server.server_address[1]
        return f"http://{host or '127.0.0.1'}:{port}"

    def _send_head(self, status: int, headers: dict):
        self.send_response(status)
        self.status_sent = status
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()

    def _body_bytes(self, data: bytes):
        """Write a body, applying drop_after / stall / corrupt faults."""
        self._write_stream(iter([data]))

    def _write_stream(self, chunks):
        f = self.fault
        kind = f.get("kind") if f else None
        pos = 0
        stalled = False
        for chunk in chunks:
            if kind == "corrupt":
                off, n = int(f.get("offset", 0)), int(f.get("bytes", 1))
                lo, hi = max(off, pos), min(off + n, pos + len(chunk))
                if lo < hi:
                    b = bytearray(chunk)
                    for i in range(lo - pos, hi - pos):
                        b[i] ^= 0xFF
                    chunk = bytes(b)
            if kind == "stall" and not stalled:
                n = int(f.get("bytes", 0))
                if pos + len(chunk) >= n:
                    cut = n - pos
                    self._raw_write(chunk[:cut])
                    self.wfile.flush()
                    time.sleep(float(f.get("seconds", 30)))
                    stalled = True
                    chunk = chunk[cut:]
                    pos += cut
            if kind == "drop_after":
                n = int(f.get("bytes", 0))
                if pos + len(chunk) >= n:
                    self._raw_write(chunk[: n - pos])
                    self.wfile.flush()
                    raise Dropped()
            self._raw_write(chunk)
            pos += len(chunk)
        if kind == "drop_after":
            # The body was shorter than N: drop at its end (the client still has all it asked for).
            raise Dropped()

    def _raw_write(self, data: bytes):
        if data:
            self.wfile.write(data)
            self.bytes_sent += len(data)

    def _json(self, status: int, obj, headers: dict | None = None):
        data = json.dumps(obj).encode()
        h = {"Content-Type": "application/json; charset=utf-8", "Content-Length": len(data)}
        h.update(headers or {})
        self._send_head(status, h)
        if self.method != "HEAD":
            self._body_bytes(data)

    def _error(self, e: HubError):
        h = dict(e.headers)
        if e.code:
            h["X-Error-Code"] = e.code
        h["X-Error-Message"] = e.message
        self._json(e.status, {"error": e.message}, h)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method: str):
        self._begin(method)
        try:
            if not self.control:
                if self.state.latency:
                    time.sleep(self.state.latency)
                self.fault = self.state.take_fault(method, self.raw_path)
                if self.fault and self.fault.get("kind") == "status":
                    st = int(self.fault.get("status", 500))
                    if st >= 400:
                        raise HubError(st, None, f"injected fault: status {st}", self.fault.get("headers"))
                    self._json(st, {}, self.fault.get("headers"))
                    return
                if self.fault and self.fault.get("kind") == "stall" and method == "HEAD":
                    time.sleep(float(self.fault.get("seconds", 30)))
            self.route()
        except HubError as e:
            self._error(e)
        except Dropped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._finish_log()

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # auth -----------------------------------------------------------------------------------
    def _token(self):
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None

    def _auth_level(self) -> str:
        """'none', 'full' (a --token) or 'no-access' (a --no-access-token); raises on bad tokens."""
        tok = self._token()
        if tok is None:
            return "none"
        if tok in self.state.tokens:
            return "full"
        if tok in self.state.no_access_tokens:
            return "no-access"
        if self.state.tokens or self.state.no_access_tokens:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return "none"

    def _repo(self, org: str, name: str, files: bool = False) -> Repo:
        repo_id = f"{org}/{name}"
        repo = self.state.repos.get(repo_id)
        level = self._auth_level()
        if repo is None or (repo.private and level != "full"):
            if level == "none":
                raise HubError(401, "RepoNotFound", "Repository not found")
            raise HubError(404, "RepoNotFound", "Repository not found")
        if files and repo.gated and level != "full":
            if level == "none":
                raise HubError(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                )
            raise HubError(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self._base_url()}/{repo_id} to ask for access.",
            )
        return repo

    def _rev(self, repo: Repo, rev: str) -> str:
        if rev in ("main", "refs/heads/main", repo.sha):
            return repo.sha
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    # routing --------------------------------------------------------------------------------
    def route(self):
        raw = self.raw_path
        segs = [unquote(s) for s in raw.split("/")[1:]]
        m = self.method
        if self.control:
            return self.route_control(segs)
        if segs[:2] == ["api", "models"] and m in ("GET", "HEAD", "POST"):
            rest = segs[2:]
            if not rest or rest == [""]:
                return self.api_search()
            if len(rest) >= 2:
                org, name, tail = rest[0], rest[1], rest[2:]
                if not tail:
                    return self.api_model(org, name, "main")
                if tail[0] == "revision" and len(tail) >= 2:
                    return self.api_model(org, name, "/".join(tail[1:]))
                if tail[0] == "tree" and len(tail) >= 2:
                    return self.api_tree(org, name, tail[1], "/".join(tail[2:]).strip("/"))
                if tail[0] == "paths-info" and len(tail) >= 2 and m == "POST":
                    return self.api_paths_info(org, name, "/".join(tail[1:]))
        if segs[:2] == ["api", "whoami-v2"]:
            lvl = self._auth_level()
            if lvl == "none":
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return self._json(200, {"type": "user", "name": "test-user", "auth": {"type": "access_token"}})
        if segs and segs[0] == "cdn" and len(segs) >= 5 and m in ("GET", "HEAD"):
            return self.cdn(segs[1], segs[2], segs[3], "/".join(segs[4:]))
        if len(segs) >= 5 and segs[2] == "resolve" and m in ("GET", "HEAD"):
            return self.resolve(segs[0], segs[1], segs[3], "/".join(segs[4:]))
        raise HubError(404, None, "Not Found")

    def route_control(self, segs):
        st = self.state
        m = self.method
        if segs == ["_faults"]:
            if m == "POST":
                body = json.loads(self._read_body() or b"[]")
                items = body if isinstance(body, list) else [body]
                with st.lock:
                    for f in items:
                        f.setdefault("times", 1)
                        st.faults.append(f)
                return self._json(200, {"faults": len(st.faults)})
            if m == "DELETE":
                with st.lock:
                    st.faults = []
                return self._json(200, {"faults": 0})
            with st.lock:
                return self._json(200, list(st.faults))
        if segs == ["_log"]:
            if m == "DELETE":
                with st.lock:
                    st.log = []
                return self._json(200, [])
            with st.lock:
                # a stalled or slow request may legitimately still run: wait a bounded time
                st.settled.wait_for(lambda: st.in_flight == 0, timeout=5)
                data = list(st.log)
            return self._json(200, data)
        if segs == ["_reload"] and m == "POST":
            st.reload()
            return self._json(200, {"repos": sorted(st.repos)})
        raise HubError(404, None, "Not Found")

    # API: search ----------------------------------------------------------------------------
    def _model_summary(self, repo: Repo) -> dict:
        return {
            "_id": repo.sha[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.org,
            "sha": repo.sha,
            "downloads": repo.get("downloads", 0),
            "likes": repo.get("likes", 0),
            "trendingScore": repo.get("trendingScore", 0),
            "tags": repo.tags,
            "pipeline_tag": repo.get("pipeline_tag"),
            "library_name": repo.library_name,
            "lastModified": repo.get("lastModified", DEFAULT_DATE),
            "createdAt": repo.get("createdAt", repo.get("lastModified", DEFAULT_DATE)),
            "gated": repo.gated,
            "private": repo.private,
            "disabled": False,
        }

    def _model_full(self, repo: Repo, blobs: bool) -> dict:
        d = self._model_summary(repo)
        d["siblings"] = repo.siblings(blobs)
        d["spaces"] = []
        if repo.card_data is not None:
            d["cardData"] = repo.card_data
        if repo.config is not None:
            d["config"] = repo.config
        if repo.safetensors is not None:
            d["safetensors"] = repo.safetensors
        d["usedStorage"] = sum(f.size for f in repo.files.values())
        return d

    def _expand(self, full: dict) -> dict:
        """Apply ?expand=...: only `_id`, `id` and the properties asked for."""
        keys = []
        for v in self.query.get("expand", []) + self.query.get("expand[]", []):
            keys.extend(k for k in v.split(",") if k)
        if not keys:
            return full
        out = {"_id": full["_id"], "id": full["id"]}
        for k in keys:
            if k in full:
                out[k] = full[k]
        return out

    def api_search(self):
        search = (self._q("search") or "").lower()
        author = self._q("author")
        filters = []
        for v in self.query.get("filter", []):
            filters.extend(x for x in v.split(",") if x)
        pipeline = self._q("pipeline_tag")
        gated = self._q("gated")
        level = self._auth_level()
        items = []
        for repo in self.state.repos.values():
            if repo.private and level != "full":
                continue
            if search and search not in repo.id.lower():
                continue
            if author and repo.org != author:
                continue
            tags = set(repo.tags) | {repo.library_name or "", repo.get("pipeline_tag") or ""}
            if any(f not in tags for f in filters):
                continue
            if pipeline and repo.get("pipeline_tag") != pipeline:
                continue
            if gated is not None and gated != "":
                want = gated.lower() in ("1", "true")
                if bool(repo.gated) != want:
                    continue
            items.append(repo)
        sort = self._q("sort")
        keyname = {"downloads": "downloads", "likes": "likes", "lastModified": "lastModified",
                   "last_modified": "lastModified", "trendingScore": "trendingScore",
                   "trending_score": "trendingScore", "createdAt": "createdAt",
                   "created_at": "createdAt"}.get(sort or "")
        items.sort(key=lambda r: r.id)
        if keyname:
            direction = self._q("direction", "-1")
            default = DEFAULT_DATE if keyname in ("lastModified", "createdAt") else 0
            items.sort(key=lambda r: r.get(keyname, default), reverse=direction != "1")
        full = self._qbool("full")
        want_card = self._qbool("cardData")
        want_config = self._qbool("config")
        out = []
        page, next_url = self._page(items)
        for repo in page:
            d = self._model_full(repo, False) if (full or "expand" in self.query) else self._model_summary(repo)
            if not full and "expand" not in self.query:
                if want_card and repo.card_data is not None:
                    d["cardData"] = repo.card_data
                if want_config and repo.config is not None:
                    d["config"] = repo.config
            out.append(self._expand(d))
        self._json(200, out, {"Link": f'<{next_url}>; rel="next"'} if next_url else {})

    def _page(self, items: list):
        """Slice one page (limit, cursor) and the next page's URL, or None."""
        try:
            limit = int(self._q("limit") or self.state.page_size)
        except ValueError:
            raise HubError(400, None, "Invalid limit")
        limit = max(1, min(limit, self.state.page_size))
        start = 0
        cursor = self._q("cursor")
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
            except ValueError:
                raise HubError(400, None, "Invalid cursor")
        page = items[start : start + limit]
        next_url = None
        if start + limit < len(items):
            params = [(k, v) for k, vs in self.query.items() if k != "cursor" for v in vs]
            c = base64.urlsafe_b64encode(str(start + limit).encode()).decode().rstrip("=")
            params.append(("cursor", c))
            next_url = self._base_url(self.headers.get("Host", "").split(":")[0] or None) + self.raw_path
            next_url += "?" + urlencode(params)
        return page, next_url

    # API: model info, tree, paths-info --------------------------------------------------------
    def api_model(self, org, name, rev):
        repo = self._repo(org, name)
        self._rev(repo, rev)
        d = self._model_full(repo, self._qbool("blobs"))
        self._json(200, self._expand(d))

    def api_tree(self, org, name, rev, path):
        repo = self._repo(org, name)
        self._rev(repo, rev)
        paths = repo.tree(path, self._qbool("recursive"))
        if paths is None:
            if path in repo.files:
                paths = [path]
            else:
                raise HubError(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"")
        page, next_url = self._page(paths)
        self._json(200, [repo.tree_entry(p) for p in page],
                   {"Link": f'<{next_url}>; rel="next"'} if next_url else {})

    def api_paths_info(self, org, name, rev):
        repo = self._repo(org, name)
        self._rev(repo, rev)
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        if isinstance(paths, str):
            paths = [paths]
        out = [repo.tree_entry(p) for p in paths if p in repo.files or p in repo.dirs]
        self._json(200, out)

    # downloads ------------------------------------------------------------------------------
    def resolve(self, org, name, rev, path):
        repo = self._repo(org, name, files=True)
        commit = self._rev(repo, rev)
        f = repo.files.get(path)
        if f is None:
            raise HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        common = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if f.lfs:
            cdn_path = f"/cdn/{quote(org)}/{quote(name)}/{f.sha256}/{quote(path)}"
            loc = self._base_url(self.state.cdn_host) + cdn_path + "?sig=" + self.state.sign(cdn_path)
            h = dict(common)
            h.update({
                "Location": loc,
                "ETag": f'"{f.sha256}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": f.size,
                "Content-Length": 0,
            })
            self._send_head(302, h)
            return
        self._serve_file(f, {**common, "ETag": f'"{f.blob_sha1}"'})

    def cdn(self, org, name, sha256, path):
        cdn_path = f"/cdn/{quote(org)}/{quote(name)}/{sha256}/{quote(path)}"
        if not hmac.compare_digest(self._q("sig", ""), self.state.sign(cdn_path)):
            raise HubError(403, None, "Request signature does not match")
        repo = self.state.repos.get(f"{org}/{name}")
        f = repo.by_sha256.get(sha256) if repo else None
        if f is None:
            raise HubError(404, None, "NoSuchKey")
        base = os.path.basename(path)
        self._serve_file(f, {
            "ETag": f'"{f.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(base)}; filename=\"{base}\";",
        })

    def _serve_file(self, f: RepoFile, headers: dict):
        size = f.size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        h = {"Content-Type": "application/octet-stream", **headers}
        if rng:
            try:
                start, end = parse_range(rng, size)
                status = 206
                h["Content-Range"] = f"bytes {start}-{end}/{size}"
            except ValueError:
                h2 = {k: v for k, v in h.items() if k != "Content-Type"}
                h2["Content-Range"] = f"bytes */{size}"
                raise HubError(416, None, "Range Not Satisfiable", h2)
        length = max(0, end - start + 1)
        h["Content-Length"] = length
        self._send_head(status, h)
        if self.method == "HEAD" or length == 0:
            return

        def chunks():
            with open(f.abspath, "rb") as fh:
                fh.seek(start)
                left = length
                while left > 0:
                    b = fh.read(min(CHUNK, left))
                    if not b:
                        break
                    left -= len(b)
                    yield b

        self._write_stream(chunks())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--token", action="append", help="a token with access to every repo (repeatable)")
    ap.add_argument("--no-access-token", action="append",
                    help="a valid token that has not accepted gated repos' terms (repeatable)")
    ap.add_argument("--page-size", type=int, default=1000, help="largest page for search and tree")
    ap.add_argument("--cdn-host", default="localhost",
                    help="host name in LFS redirects (another origin than 127.0.0.1, like a CDN)")
    args = ap.parse_args()
    Handler.state = State(args)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"LISTENING http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()

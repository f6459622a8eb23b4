#!/usr/bin/env python3
"""Build the test hub's fixture repositories (for tests/hub/server.py --root OUT).

    python3 tests/hub/make_fixture_repos.py OUT [--generated tests/fixtures/generated]

Makes OUT/<org>/<name>/ from the tiny models in tests/fixtures/generated (made by
tests/fixtures/make_all.sh):
  test-org/tiny-llama          Hugging Face safetensors + tokenizer (+ README card, .gitattributes)
  test-org/tiny-llama-4bit     MLX format (4-bit, from tiny-llama-q4)
  test-org/tiny-llama-sharded  two safetensors shards + index
  test-org/tiny-qwen2          Hugging Face safetensors
  test-org/gated-model         tiny-llama, gated "manual"
  test-org/private-model       tiny-qwen2, private
  test-org/big-file            big.bin: 12 MiB + 12345 bytes of deterministic pseudo-random bytes
                               (ranged / parallel / resumed downloads), plus config.json
  small-org/small-model-NN     30 cheap repos (config.json, README.md, a nested file in 00) with
                               varied downloads / likes / dates / tags, so search has several pages
Only the standard library is used. OUT is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GITATTRIBUTES = (
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.gguf filter=lfs diff=lfs merge=lfs -text\n"
)
# More than huggingface_hub's 10 MiB read chunk, so that its resume after a dropped connection
# (which it does in whole chunks) asks for a Range.
BIG_FILE_SIZE = 12 * 1024 * 1024 + 12345
N_SMALL = 30


def card(meta: dict, title: str) -> str:
    lines = ["---"]
    for k in ("license", "library_name", "pipeline_tag"):
        if k in meta:
            lines.append(f"{k}: {meta[k]}")
    if meta.get("tags"):
        lines.append("tags:")
        lines.extend(f"- {t}" for t in meta["tags"])
    lines += ["---", "", f"# {title}", "", "A tiny model for CortexStream's tests.", ""]
    return "\n".join(lines)


def write_repo(out: str, repo_id: str, src: str | None, meta: dict, extra: dict[str, bytes] | None = None):
    d = os.path.join(out, *repo_id.split("/"))
    os.makedirs(d)
    if src is not None:
        for name in sorted(os.listdir(src)):
            p = os.path.join(src, name)
            if os.path.isfile(p):
                shutil.copyfile(p, os.path.join(d, name))
    files = {".gitattributes": GITATTRIBUTES.encode(), "README.md": card(meta, repo_id).encode()}
    files.update(extra or {})
    for rel, data in files.items():
        p = os.path.join(d, *rel.split("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    card_data = {k: meta[k] for k in ("license", "library_name", "pipeline_tag", "tags") if k in meta}
    with open(os.path.join(d, ".hub.json"), "w") as f:
        json.dump({**meta, "cardData": card_data}, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--generated", default=os.path.join(ROOT, "tests", "fixtures", "generated"))
    args = ap.parse_args()
    gen = args.generated
    need = ["tiny-llama", "tiny-llama-q4", "tiny-llama-sharded", "tiny-qwen2"]
    missing = [n for n in need if not os.path.isfile(os.path.join(gen, n, "config.json"))]
    if missing:
        sys.exit(f"make_fixture_repos: {gen} lacks {missing}: run tests/fixtures/make_all.sh first")
    out = args.out
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    llama = {"license": "apache-2.0", "pipeline_tag": "text-generation", "library_name": "transformers",
             "tags": ["transformers", "safetensors", "llama", "text-generation"],
             "downloads": 5000, "likes": 50, "trendingScore": 7, "lastModified": "2026-03-01T10:00:00.000Z"}
    write_repo(out, "test-org/tiny-llama", os.path.join(gen, "tiny-llama"), llama)
    write_repo(out, "test-org/tiny-llama-4bit", os.path.join(gen, "tiny-llama-q4"), {
        "license": "apache-2.0", "pipeline_tag": "text-generation", "library_name": "mlx",
        "tags": ["mlx", "safetensors", "llama", "text-generation", "4-bit"],
        "downloads": 3000, "likes": 30, "trendingScore": 9, "lastModified": "2026-03-02T10:00:00.000Z"})
    write_repo(out, "test-org/tiny-llama-sharded", os.path.join(gen, "tiny-llama-sharded"), {
        **llama, "downloads": 100, "likes": 1, "trendingScore": 1, "lastModified": "2026-02-01T10:00:00.000Z"})
    write_repo(out, "test-org/tiny-qwen2", os.path.join(gen, "tiny-qwen2"), {
        "license": "apache-2.0", "pipeline_tag": "text-generation", "library_name": "transformers",
        "tags": ["transformers", "safetensors", "qwen2", "text-generation"],
        "downloads": 4000, "likes": 40, "trendingScore": 8, "lastModified": "2026-03-03T10:00:00.000Z"})
    write_repo(out, "test-org/gated-model", os.path.join(gen, "tiny-llama"), {
        **llama, "license": "llama3", "gated": "manual", "downloads": 10, "likes": 2,
        "lastModified": "2026-01-15T10:00:00.000Z"})
    write_repo(out, "test-org/private-model", os.path.join(gen, "tiny-qwen2"), {
        "license": "apache-2.0", "private": True, "pipeline_tag": "text-generation",
        "tags": ["transformers", "safetensors", "qwen2"], "downloads": 0, "likes": 0})
    big = random.Random(20260101).randbytes(BIG_FILE_SIZE)
    write_repo(out, "test-org/big-file", None, {
        "license": "mit", "tags": ["test"], "downloads": 1, "likes": 0},
        {"big.bin": big, "config.json": json.dumps({"model_type": "none"}).encode()})

    for i in range(N_SMALL):
        meta = {
            "license": "mit",
            "pipeline_tag": "text-generation" if i % 3 else "feature-extraction",
            "library_name": "mlx" if i % 2 else "transformers",
            "tags": (["mlx"] if i % 2 else ["transformers"]) + ["llama", "small"],
            "downloads": (i * 37) % 101,
            "likes": (i * 13) % 29,
            "trendingScore": (i * 7) % 11,
            "lastModified": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00.000Z",
        }
        extra = {"config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                            "hidden_size": 8 * (i + 1)}).encode()}
        if i == 0:
            extra["sub/dir/nested.txt"] = b"nested file\n"
            extra["sub/top.txt"] = b"top of sub\n"
        write_repo(out, f"small-org/small-model-{i:02d}", None, meta, extra)
    print(out)


if __name__ == "__main__":
    main()

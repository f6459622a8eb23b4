#!/usr/bin/env bash
# Builds llama.cpp (through PyPI llama-cpp-python) into the project venv: the GGUF importer's
# tests compare against its logits (tests/fixtures/make_llama_cpp_refs.py) and bench/compare.py
# uses it as the CPU peer. Portable flags, no AMX: the native build with AMX crashed at its
# first decode on this machine kind. Takes about 4 minutes on 2 cores; pip keeps the built
# wheel in its cache, so a second venv on the same machine installs it in seconds.
#
#   bench/install_llama_cpp.sh          the Python package
#   bench/install_llama_cpp.sh --bench  also llama.cpp's own llama-bench (bench/.work/llama-bench),
#                                       from the same source, so compare.py times llama.cpp's
#                                       prefill and decode in its native loop (about 5 minutes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
VERSION="0.3.16"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_INT8=OFF"
if "$PY" -c "import llama_cpp" 2>/dev/null; then
  echo "llama-cpp-python already installed"
else
  CMAKE_ARGS="$FLAGS" "$PY" -m pip install "llama-cpp-python==$VERSION"
fi
[[ "${1:-}" == "--bench" ]] || exit 0

WORK="$ROOT/bench/.work"
BENCH="$WORK/llama-bench"
if [[ -x "$BENCH" ]]; then
  echo "llama-bench already built: $BENCH"
  exit 0
fi
mkdir -p "$WORK"
"$PY" -m pip install -q cmake ninja
SRC="$WORK/llama_cpp_python-$VERSION"
if [[ ! -d "$SRC" ]]; then
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK"
  tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
fi
BUILD="$WORK/llama-bench-build"
# shellcheck disable=SC2086
"$ROOT/.venv/bin/cmake" -S "$SRC/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_MAKE_PROGRAM="$ROOT/.venv/bin/ninja" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF $FLAGS >/dev/null
"$ROOT/.venv/bin/cmake" --build "$BUILD" --target llama-bench -j "$(nproc)"
cp "$BUILD/bin/llama-bench" "$BENCH"
echo "built $BENCH"

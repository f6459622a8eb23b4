#!/usr/bin/env bash
# Builds llama.cpp (through PyPI llama-cpp-python) into the project venv: the GGUF importer's
# tests compare against its logits (tests/fixtures/make_llama_cpp_refs.py) and bench/compare.py
# uses it as the CPU peer. Built for the instruction sets this CPU reports (below), no AMX.
# Takes about 4 minutes on 2 cores; the wheel is kept under /var/cache/cortexstream (or
# bench/.work), so a second venv on the same machine installs it in seconds.
#
#   bench/install_llama_cpp.sh          the Python package
#   bench/install_llama_cpp.sh --bench  also llama.cpp's own llama-bench (bench/.work/llama-bench),
#                                       from the same source, so compare.py times llama.cpp's
#                                       prefill and decode in its native loop (about 5 minutes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
VERSION="0.3.16"

# The instruction sets come from this CPU, never GGML_NATIVE (whose AMX build crashed) and
# never a fixed list: a build with AVX-512 dies of SIGILL on a CPU without it (an AMD EPYC
# of this machine kind has AVX2 only), and pip's cache would hand that wheel to every later
# venv on the machine. So the wheel is built into a folder named by version and flags, and
# the venv records which flags its llama.cpp was built with.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do [[ "$cpu_flags" == *" $f "* ]] || return 1; done; }
onoff() { if has "$@"; then echo ON; else echo OFF; fi; }
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=$(onoff avx) -DGGML_AVX2=$(onoff avx2) -DGGML_FMA=$(onoff fma)"
FLAGS="$FLAGS -DGGML_F16C=$(onoff f16c) -DGGML_BMI2=$(onoff bmi2)"
FLAGS="$FLAGS -DGGML_AVX512=$(onoff avx512f avx512cd avx512vl avx512dq avx512bw) -DGGML_AMX_INT8=OFF"
TAG="$VERSION-$(echo "$FLAGS" | sha256sum | cut -c1-12)"
STAMP="$ROOT/.venv/llama-cpp-build"

if "$PY" -c "import llama_cpp" 2>/dev/null && [[ "$(cat "$STAMP" 2>/dev/null)" == "$TAG" ]]; then
  echo "llama-cpp-python already installed ($FLAGS)"
else
  CACHE="${CORTEX_CACHE_DIR:-/var/cache/cortexstream}"
  mkdir -p "$CACHE" 2>/dev/null && [[ -w "$CACHE" ]] || CACHE="$ROOT/bench/.work"
  WHEELS="$CACHE/llama-cpp-wheels/$TAG"
  if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION ($FLAGS)"
    rm -rf "$WHEELS.partial"
    CMAKE_ARGS="$FLAGS" "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
      "llama-cpp-python==$VERSION" -w "$WHEELS.partial"
    mv "$WHEELS.partial" "$WHEELS"
  fi
  "$PY" -m pip install -q --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-*.whl
  # its dependencies from the index as usual (numpy, jinja2, diskcache, typing-extensions)
  "$PY" -m pip install -q "$(ls "$WHEELS"/llama_cpp_python-*.whl)"
  echo "$TAG" > "$STAMP"
fi
[[ "${1:-}" == "--bench" ]] || exit 0

WORK="$ROOT/bench/.work"
BENCH="$WORK/llama-bench"
if [[ -x "$BENCH" && "$(cat "$BENCH.build" 2>/dev/null)" == "$TAG" ]]; then
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
BUILD="$WORK/llama-bench-build-$TAG"
# shellcheck disable=SC2086
"$ROOT/.venv/bin/cmake" -S "$SRC/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_MAKE_PROGRAM="$ROOT/.venv/bin/ninja" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF $FLAGS >/dev/null
"$ROOT/.venv/bin/cmake" --build "$BUILD" --target llama-bench -j "$(nproc)"
cp "$BUILD/bin/llama-bench" "$BENCH"
echo "$TAG" > "$BENCH.build"
echo "built $BENCH"

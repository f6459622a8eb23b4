#!/usr/bin/env bash
# Builds llama.cpp (through PyPI llama-cpp-python) into the project venv, as the CPU peer for
# bench/compare.py. Portable flags, no AMX: the native build with AMX crashed at its first
# decode on this machine kind. Takes about 4 minutes on 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/.venv/bin/python" -c "import llama_cpp" 2>/dev/null && { echo "llama-cpp-python already installed"; exit 0; }
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_INT8=OFF" \
  "$ROOT/.venv/bin/python" -m pip install --no-cache-dir "llama-cpp-python==0.3.16"

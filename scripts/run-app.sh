#!/usr/bin/env bash
# Sets everything up and starts CortexStream with the embedded default model
# (SmolLM2-135M-Instruct) ready to chat:
#   - where there is a display (macOS, or Linux with DISPLAY/WAYLAND_DISPLAY): builds and opens
#     the desktop app (src-tauri, release build, the web UI embedded);
#   - without one (a server, ssh): says so and starts browser mode instead, `cortex serve` at
#     http://127.0.0.1:8080 (PORT overrides), and prints the URL to open.
# CORTEX_APP_MODE=browser forces browser mode. Ctrl-C (or closing the window) stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd ui && npm ci --no-audit --no-fund && npm run build)

mode="${CORTEX_APP_MODE:-}"
if [[ -z "$mode" ]]; then
  if [[ "$(uname -s)" == Darwin || -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]]; then
    mode=desktop
  else
    mode=browser
  fi
fi

if [[ "$mode" == desktop ]]; then
  cargo build --release -p cortexstream-desktop
  exec "$TARGET/release/cortexstream" "$@"
fi

cargo build --release -p cortex-cli
PORT="${PORT:-8080}"
URL="http://127.0.0.1:$PORT"
if [[ -z "${CORTEX_APP_MODE:-}" ]]; then
  echo "No display here, so no desktop window: starting browser mode instead."
fi
if [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]] && command -v xdg-open >/dev/null; then
  (sleep 2 && xdg-open "$URL" >/dev/null 2>&1) &
elif [[ "$(uname -s)" == Darwin ]]; then
  (sleep 2 && open "$URL") &
else
  echo "Open $URL in a browser (from another machine: ssh -L $PORT:127.0.0.1:$PORT, then the same URL)."
fi
exec "$TARGET/release/cortex" serve default --port "$PORT" --ui-dir "$ROOT/ui/dist" "$@"

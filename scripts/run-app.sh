#!/usr/bin/env bash
# Sets everything up, builds the web UI and the `cortex` binary (release) and starts the app in
# browser mode: `cortex serve` with the embedded default model (SmolLM2-135M-Instruct) at
# http://127.0.0.1:8080 (PORT overrides), opened in the default browser where there is one.
# Ctrl-C stops it. (The desktop window comes with the Tauri shell.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT"
(cd ui && npm ci --no-audit --no-fund && npm run build)
cargo build --release -p cortex-cli
PORT="${PORT:-8080}"
URL="http://127.0.0.1:$PORT"
if [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]] && command -v xdg-open >/dev/null; then
  (sleep 2 && xdg-open "$URL" >/dev/null 2>&1) &
elif [[ "$(uname -s)" == Darwin ]]; then
  (sleep 2 && open "$URL") &
else
  echo "no display here: open $URL in a browser (ssh -L $PORT:127.0.0.1:$PORT to reach it from elsewhere)"
fi
exec "$ROOT/target/release/cortex" serve default --port "$PORT" --ui-dir "$ROOT/ui/dist" "$@"

#!/usr/bin/env bash
# Real-window tests of the desktop app (issue 10): the Tauri binary in an Xvfb screen (1280x800),
# driven by tauri-driver + WebKitWebDriver (Debian's webkit2gtk-driver) + webdriverio, as a new
# user would use it. Starts the local Hugging Face test hub with the repos of
# tests/e2e/make_hub.py (as tests/e2e/run.sh does), gives the app a scratch CORTEX_HOME, HF cache
# and XDG folders (window state, WebKit storage), a private D-Bus session bus (the single-instance
# lock) and runs the node:test specs of tests/desktop/specs in order. tauri-driver starts the app,
# so the app's environment is tauri-driver's.
#
#   CORTEX_DESKTOP_BIN=$CARGO_TARGET_DIR/debug/cortexstream bash tests/desktop/run.sh [spec-filter...]
#
# Needs: the desktop binary (default ${CARGO_TARGET_DIR:-target}/debug/cortexstream, built with
# the UI embedded), tests/fixtures/generated (tests/fixtures/make_all.sh), the project venv, and
# scripts/setup-window-tests.sh (xvfb, xauth, webkit2gtk-driver, tauri-driver, npm ci here).
# Screenshots land in ${SCREENSHOT_DIR:-/tmp/cortex-desktop-shots}. Prints node:test's summary
# (`# pass N`, `# fail N`, `# skipped N`) and exits non-zero when a test failed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/desktop"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BIN="${CORTEX_DESKTOP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/cortexstream}"
SHOTS="${SCREENSHOT_DIR:-/tmp/cortex-desktop-shots}"
log() { echo "desktop-e2e: $*" >&2; }

# --- what must be there before anything starts ---------------------------------------------------
[[ "$BIN" = /* ]] || BIN="$ROOT/$BIN"
if [[ ! -x "$BIN" ]]; then
  log "the desktop app binary is missing: $BIN"
  log "build it first (cargo build -p cortexstream-desktop, with ui/dist built) or point CORTEX_DESKTOP_BIN at it"
  exit 1
fi
TAURI_DRIVER="${TAURI_DRIVER:-$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")}"
NATIVE_DRIVER="${WEBKIT_WEBDRIVER:-/usr/bin/WebKitWebDriver}"
need=()
[[ -x "$TAURI_DRIVER" ]] || need+=("tauri-driver ($TAURI_DRIVER)")
[[ -x "$NATIVE_DRIVER" ]] || need+=("WebKitWebDriver ($NATIVE_DRIVER, Debian package webkit2gtk-driver)")
command -v Xvfb >/dev/null || need+=("Xvfb (Debian package xvfb)")
[[ -d "$HERE/node_modules/webdriverio" ]] || need+=("webdriverio (npm ci in tests/desktop)")
[[ -x "$PY" ]] || need+=("the project venv ($PY: scripts/setup.sh)")
if ((${#need[@]})); then
  log "missing: ${need[*]}"
  log "run: bash scripts/setup-window-tests.sh"
  exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cortex-desktop.XXXXXX")"
pids=()   # process groups (each started with setsid) and plain pids, ended in reverse order
cleanup() {
  local status=$?
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    local p="${pids[$i]}"
    # Everything started through tauri-driver (WebKitWebDriver, the app, WebKit's helper
    # processes) stays in tauri-driver's process group: end the group, then its leader.
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
  done
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && alive=1; kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ -n "${KEEP_WORK:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on 127.0.0.1 (preferring $1 when it is free).
free_port() {
  "$PY" - "$1" <<'EOF'
import socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
print(free(int(sys.argv[1])) or free(0))
EOF
}

# --- the local Hugging Face test hub (as tests/e2e/run.sh) ---------------------------------------
"$PY" "$ROOT/tests/e2e/make_hub.py" "$WORK/hub" >/dev/null
setsid "$PY" "$ROOT/tests/hub/server.py" --root "$WORK/hub" --port 0 >"$WORK/hub.out" 2>"$WORK/hub.log" &
pids+=($!)
for _ in $(seq 100); do grep -q LISTENING "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
HUB_URL="$(sed -n 's/^LISTENING //p' "$WORK/hub.out")"
[[ -n "$HUB_URL" ]] || { log "test hub did not start"; cat "$WORK/hub.log"; exit 1; }

# --- the screen: Xvfb picks a free display number and writes it to fd 3 -------------------------
exec 3>"$WORK/display"
setsid Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset >"$WORK/xvfb.log" 2>&1 &
pids+=($!)
exec 3>&-
for _ in $(seq 100); do [[ -s "$WORK/display" ]] && break; sleep 0.1; done
[[ -s "$WORK/display" ]] || { log "Xvfb did not start"; cat "$WORK/xvfb.log"; exit 1; }
export DISPLAY=":$(tr -d '[:space:]' <"$WORK/display")"
unset WAYLAND_DISPLAY

# --- a private session bus (the app's single-instance lock lives on it) --------------------------
unset DBUS_SESSION_BUS_ADDRESS
if command -v dbus-daemon >/dev/null; then
  dbus-daemon --session --fork --nopidfile --address="unix:path=$WORK/bus" --print-pid=1 >"$WORK/dbus.pid" 2>"$WORK/dbus.log" || true
  if [[ -s "$WORK/dbus.pid" ]]; then
    pids+=("$(head -n1 "$WORK/dbus.pid")")
    export DBUS_SESSION_BUS_ADDRESS="unix:path=$WORK/bus"
  else
    log "no D-Bus session bus (dbus-daemon failed): the app runs without its single-instance lock"
  fi
fi

# --- the app's environment (tauri-driver -> WebKitWebDriver -> the app inherit it) ---------------
mkdir -p "$WORK/xdg/config" "$WORK/xdg/data" "$WORK/xdg/cache" "$WORK/xdg/runtime" "$SHOTS"
chmod 700 "$WORK/xdg/runtime"
export CORTEX_HOME="$WORK/home" HF_HOME="$WORK/hf" HF_ENDPOINT="$HUB_URL"
export XDG_CONFIG_HOME="$WORK/xdg/config" XDG_DATA_HOME="$WORK/xdg/data" XDG_CACHE_HOME="$WORK/xdg/cache"
export XDG_RUNTIME_DIR="$WORK/xdg/runtime"
unset HF_TOKEN HF_HUB_CACHE HF_TOKEN_PATH
if [[ -z "${CORTEX_DEFAULT_GGUF:-}" && -f "$ROOT/tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]]; then
  export CORTEX_DEFAULT_GGUF="$ROOT/tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
# No accessibility bus to wait for. (Not WEBKIT_DISABLE_DMABUF_RENDERER=1, often advised for
# Tauri on Linux: under Xvfb it makes WebKitWebDriver's screenshots hang.) The compositing
# variable is unset so that the app makes its own choice (src-tauri/src/rendering.rs), which the
# first spec checks.
export NO_AT_BRIDGE=1
unset WEBKIT_DISABLE_DMABUF_RENDERER WEBKIT_DISABLE_COMPOSITING_MODE
export RUST_LOG="${RUST_LOG:-info}"

# --- tauri-driver (4444 unless taken) and WebKitWebDriver ----------------------------------------
DRIVER_PORT="$(free_port "${TAURI_DRIVER_PORT:-4444}")"
NATIVE_PORT="$(free_port 4445)"
[[ "$NATIVE_PORT" != "$DRIVER_PORT" ]] || NATIVE_PORT="$(free_port 0)"
setsid "$TAURI_DRIVER" --port "$DRIVER_PORT" --native-port "$NATIVE_PORT" --native-driver "$NATIVE_DRIVER" \
  >"$WORK/driver.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$DRIVER_PORT/status" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$DRIVER_PORT/status" >/dev/null 2>&1 || { log "tauri-driver did not start"; cat "$WORK/driver.log"; exit 1; }

log "app $BIN on $DISPLAY, tauri-driver on 127.0.0.1:$DRIVER_PORT, test hub at $HUB_URL"
log "CORTEX_HOME=$CORTEX_HOME, screenshots in $SHOTS"
status=0
DESKTOP_BIN="$BIN" DESKTOP_DRIVER_PORT="$DRIVER_PORT" DESKTOP_HUB_URL="$HUB_URL" DESKTOP_SHOTS="$SHOTS" \
  node "$HERE/run.mjs" --tap "$WORK/results.tap" "$@" || status=$?
if ((status)); then
  echo "--- tauri-driver / app log (tail) ---"
  tail -n 60 "$WORK/driver.log"
fi
# node:test's summary as TAP lines (scripts/test.sh reads `# pass N`, `# fail N`, `# skipped N`).
if [[ -f "$WORK/results.tap" ]]; then
  grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$WORK/results.tap" || true
fi
exit "$status"

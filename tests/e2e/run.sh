#!/usr/bin/env bash
# Browser end-to-end tests of the web UI against the real `cortex serve` (not the mock): starts
# the local Hugging Face test hub with the repos of tests/e2e/make_hub.py, then `cortex serve`
# on a free port with a scratch home (catalog, models folder, HF cache) and the hub as
# HF_ENDPOINT, and runs ui/e2e's specs (playwright-core driving Debian's Chromium) against it.
#
#   CORTEX_BIN=target/debug/cortex bash tests/e2e/run.sh [spec-filter...]
#
# Needs: ui/dist built (npm run build in ui/), the cortex binary, tests/fixtures/generated,
# the default model (scripts/setup.sh), /usr/bin/chromium. Screenshots land in ui/e2e/screenshots.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BIN="${CORTEX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/cortex}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cortex-e2e.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$WORK/serve.pid" ]] && kill "$(cat "$WORK/serve.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" "$ROOT/tests/e2e/make_hub.py" "$WORK/hub" >/dev/null
"$PY" "$ROOT/tests/hub/server.py" --root "$WORK/hub" --port 0 >"$WORK/hub.out" 2>"$WORK/hub.log" &
pids+=($!)
for _ in $(seq 100); do grep -q LISTENING "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
HUB_URL="$(sed -n 's/^LISTENING //p' "$WORK/hub.out")"
[[ -n "$HUB_URL" ]] || { echo "test hub did not start"; cat "$WORK/hub.log"; exit 1; }

export CORTEX_HOME="$WORK/home" HF_HOME="$WORK/hf" HF_ENDPOINT="$HUB_URL"
unset HF_TOKEN HF_HUB_CACHE
start_server() {
  "$BIN" serve --port "${1:-0}" --ui-dir "$ROOT/ui/dist" --kv-memory 256 \
    >"$WORK/serve.out" 2>>"$WORK/serve.log" &
  echo $! >"$WORK/serve.pid"
  for _ in $(seq 600); do grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "listening on" "$WORK/serve.out" || { echo "cortex serve did not start"; tail -20 "$WORK/serve.log"; exit 1; }
}
start_server 0
URL="$(sed -n 's/^listening on //p' "$WORK/serve.out")"
PORT="${URL##*:}"
# the first start imports the default model in the background: wait until the library has it
for _ in $(seq 600); do
  curl -sf "$URL/api/system" | grep -q '"default_model_id":"mdl_' && break
  sleep 0.2
done

# Short, greedy replies: the specs test the app, not the model's prose (a user can set the same
# per-model defaults in the Library).
DEFAULT_ID="$(curl -sf "$URL/api/system" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["default_model_id"])')"
curl -sf -X PATCH "$URL/api/models/$DEFAULT_ID" -H 'Content-Type: application/json' \
  -d '{"settings": {"max_tokens": 48, "temperature": 0}}' >/dev/null

# A spec that restarts the server (resume after restart) writes this file; the harness
# restarts `cortex serve` on the same port and removes it.
RESTART="$WORK/restart-request"
(
  while true; do
    if [[ -f "$RESTART" ]]; then
      old="$(cat "$WORK/serve.pid")"
      kill "$old" 2>/dev/null || true
      # A graceful stop; if it hangs (open event streams keep it waiting), kill it after 10 s.
      for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$old" 2>/dev/null; then
        echo "E2E: cortex serve did not exit within 10 s of SIGTERM; killing it" >&2
        kill -9 "$old" 2>/dev/null || true
        while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
      fi
      : >"$WORK/serve.out"
      start_server "$PORT"
      rm -f "$RESTART"
    fi
    sleep 0.2
  done
) &
pids+=($!)

echo "E2E: cortex serve at $URL, test hub at $HUB_URL"
E2E_BASE_URL="$URL" E2E_HUB_URL="$HUB_URL" E2E_RESTART_FILE="$RESTART" \
  node "$ROOT/ui/e2e/run.mjs" "$@" || { status=$?; echo "--- cortex serve log (tail) ---"; tail -40 "$WORK/serve.log"; exit $status; }

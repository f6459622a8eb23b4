#!/usr/bin/env bash
# Sets everything up, builds the `cortex` CLI in release mode and opens a chat with the
# embedded default model (SmolLM2-135M-Instruct). Extra arguments go to `cortex run default`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT"
cargo build --release -p cortex-cli
exec "$ROOT/target/release/cortex" run default "$@"

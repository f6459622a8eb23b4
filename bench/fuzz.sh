#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/fuzz_targets: GGUF metadata and the tokenizer
# built from it, whole GGUF imports, chat templates, MODEL strings, safetensors headers, and
# `cortex serve`'s HTTP application: request JSON -> sampling parameters, SSE, the app API,
# clients that leave mid-answer) with libFuzzer, each for
# SECONDS (default 600), and prints per target the executions per second, the corpus size and
# the crashes found (saved under fuzz/artifacts/TARGET/; add each as a regression test).
#
#   bash bench/fuzz.sh [SECONDS] [TARGET...]
#
# Builds with nightly Rust's sanitizer coverage the way cargo-fuzz does (no cargo-fuzz needed):
# the flags apply to the target only (`--target`), never to build scripts or proc macros. The
# corpus grows in fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET) and is minimized at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-600}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(gguf_metadata chat_template model_id safetensors_header gguf_import http_api)
# Targets that link the engine (MLX) or the whole server build with a feature.
FEATURES=""
for t in "${TARGETS[@]}"; do
  case "$t" in
    safetensors_header|gguf_import) [[ -n "$FEATURES" ]] || FEATURES="--features engine" ;;
    http_api) FEATURES="--features server" ;;
  esac
done

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"
echo "[fuzz] building ${TARGETS[*]} (nightly, $TRIPLE)"
# shellcheck disable=SC2086
cargo +nightly build --release --manifest-path fuzz/Cargo.toml --target "$TRIPLE" $FEATURES \
  $(printf -- '--bin %s ' "${TARGETS[@]}") 2>&1 | tail -n 3

LOGS="$ROOT/fuzz/logs"
mkdir -p "$LOGS"
status=0
printf '%-20s %10s %12s %8s %8s\n' target seconds "execs/s" corpus crashes
for t in "${TARGETS[@]}"; do
  bin="$CARGO_TARGET_DIR/$TRIPLE/release/$t"
  corpus="fuzz/corpus/$t"
  seeds="fuzz/seeds/$t"
  artifacts="fuzz/artifacts/$t"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  # -rss_limit_mb: a hostile input may not make the parser take more than 2 GiB;
  # -timeout: nor spend more than 10 s on one input.
  # Run in an empty folder: MODEL parsing treats a string naming an existing path as local, so
  # the files of the current folder would make results depend on where the script runs.
  empty="$(mktemp -d)"
  set +e
  (cd "$empty" && "$bin" "$ROOT/$corpus" "$ROOT/$seeds" -max_total_time="$SECS" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$ROOT/$artifacts/") \
    >"$LOGS/$t.log" 2>&1
  rc=$?
  set -e
  rmdir "$empty" 2>/dev/null || true
  # minimize the corpus in place (keeps only inputs that add coverage)
  tmp="$(mktemp -d)"
  "$bin" -merge=1 "$tmp" "$corpus" "$seeds" >"$LOGS/$t.merge.log" 2>&1 || true
  if [[ -n "$(ls -A "$tmp")" ]]; then rm -rf "$corpus"; mv "$tmp" "$corpus"; else rm -rf "$tmp"; fi
  execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$t.log" | tail -n 1)
  size=$(find "$corpus" -type f | wc -l)
  crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
  printf '%-20s %10s %12s %8s %8s\n' "$t" "$SECS" "${execs:-?}" "$size" "$crashes"
  if [[ $rc -ne 0 || $crashes -ne 0 ]]; then
    status=1
    echo "  $t: libFuzzer exit $rc; see $LOGS/$t.log and $artifacts/"
    grep -E "^==[0-9]+== ERROR|panicked at|deadly signal|out-of-memory|timeout" "$LOGS/$t.log" | head -n 5 | sed 's/^/  /'
  fi
done
exit "$status"

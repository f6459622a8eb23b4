#!/usr/bin/env bash
# What the real-window tests of the desktop app (tests/desktop) need beyond scripts/setup.sh:
# an X server without a screen (xvfb, xauth), WebKitGTK's WebDriver (webkit2gtk-driver:
# /usr/bin/WebKitWebDriver), tauri-driver (cargo install, into ~/.cargo/bin) and webdriverio
# (npm ci in tests/desktop). Idempotent: a second run only checks. Debian/Ubuntu only (the window
# tests run on Linux; tauri-driver has no macOS WebDriver to drive).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "[setup-window-tests] $*" >&2; }
if [[ "$(uname -s)" != Linux || ! -f /etc/debian_version ]]; then
  log "the window tests run on Debian/Ubuntu only; nothing to do here"
  exit 0
fi

# --- Debian packages -----------------------------------------------------------------------------
pkgs=(xvfb xauth webkit2gtk-driver dbus curl)
command -v npm >/dev/null || pkgs+=(nodejs npm)
bash "$ROOT/scripts/apt-install-missing.sh" setup-window-tests "${pkgs[@]}"

# --- tauri-driver --------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
if [[ ! -x "$HOME/.cargo/bin/tauri-driver" ]] && ! command -v tauri-driver >/dev/null; then
  command -v cargo >/dev/null || { log "Rust is not installed: get it from rustup (https://rustup.rs), then run this again"; exit 1; }
  log "installing tauri-driver (cargo install, a few minutes)"
  cargo install tauri-driver --locked --quiet
fi

# --- webdriverio (tests/desktop/package-lock.json) -----------------------------------------------
cd "$ROOT/tests/desktop"
# npm ci again only when the lock file changed since the last install (npm writes
# node_modules/.package-lock.json on every install).
if [[ ! -d node_modules/webdriverio || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci in tests/desktop"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
log "ready: Xvfb, WebKitWebDriver, tauri-driver ($(command -v tauri-driver)), webdriverio"

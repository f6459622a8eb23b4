#!/usr/bin/env bash
# What the browser tests need beyond scripts/setup.sh: Debian's Chromium (Playwright drives it
# through playwright-core; no tool downloads a browser of its own) and curl. Idempotent.
set -euo pipefail
log() { echo "[setup-browser-tests] $*" >&2; }
[[ "$(uname -s)" == Linux && -f /etc/debian_version ]] || exit 0
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v curl >/dev/null || missing+=(curl)
((${#missing[@]})) || exit 0
if [[ "$(id -u)" != 0 ]]; then
  log "missing Debian packages: ${missing[*]} (run as root or install them)"; exit 1
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

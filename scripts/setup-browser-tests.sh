#!/usr/bin/env bash
# What the browser tests need beyond scripts/setup.sh: Debian's Chromium (Playwright drives it
# through playwright-core; no tool downloads a browser of its own) and curl. Idempotent.
set -euo pipefail
[[ "$(uname -s)" == Linux && -f /etc/debian_version ]] || exit 0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkgs=(chromium curl)
# chromium may come from elsewhere; only its path matters to the tests
[[ -x /usr/bin/chromium ]] && pkgs=(curl)
bash "$ROOT/scripts/apt-install-missing.sh" setup-browser-tests "${pkgs[@]}"

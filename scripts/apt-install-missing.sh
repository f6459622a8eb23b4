#!/usr/bin/env bash
# Installs those of the given Debian packages that are not installed yet (as root; otherwise
# names them and fails). Shared by the setup scripts. Usage: apt-install-missing.sh TAG PKG...
set -euo pipefail
tag="$1"; shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ "$(id -u)" != 0 ]]; then
  echo "[$tag] missing Debian packages: ${missing[*]} (run as root or install them)" >&2; exit 1
fi
echo "[$tag] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

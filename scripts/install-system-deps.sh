#!/usr/bin/env bash
# Installs the Debian packages of the named lists (scripts/apt-LIST.txt; default: run), e.g. `run test`.
# Idempotent: does nothing when they are all present.
set -euo pipefail
cd "$(dirname "$0")/.."
lists=("${@:-run}")
wanted=()
for list in "${lists[@]}"; do
  file="scripts/apt-${list}.txt"
  [ -f "$file" ] || { echo "install-system-deps: no package list $file" >&2; exit 2; }
  mapfile -t -O "${#wanted[@]}" wanted < <(grep -vE '^\s*(#|$)' "$file")
done
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

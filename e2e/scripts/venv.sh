#!/usr/bin/env bash
# Creates (once) a Python venv from a requirements file and prints its path.
#   venv.sh [REQUIREMENTS [NAME]]   default: e2e/requirements.txt, named "venv"
# The venv lives in the cache, keyed by the hash of the requirements file, so a changed list builds
# a fresh one and an unchanged one is reused across clones.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
req="${1:-$here/requirements.txt}"
name="${2:-venv}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="$CACHE/$name-$hash"
if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
rm -rf "$venv"
mkdir -p "$CACHE"
echo "creating Python venv $venv" >&2
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
touch "$venv/.complete"
echo "$venv"

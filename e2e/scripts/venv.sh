#!/usr/bin/env bash
# Creates (once) the Python venv the tests use and prints its path. The venv lives in the cache,
# keyed by the hash of e2e/requirements.txt, so a changed requirement list builds a fresh one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
req="$here/requirements.txt"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="$CACHE/venv-$hash"
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

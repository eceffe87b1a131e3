#!/usr/bin/env bash
# Creates (once) the Python venv of the benchmark peers (s5cmd, AWS CLI) and prints its path. It
# lives in the cache keyed by the hash of bench/requirements.txt, like e2e/scripts/venv.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="$CACHE/bench-venv-$hash"
if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi
rm -rf "$venv"
mkdir -p "$CACHE"
echo "creating benchmark venv $venv" >&2
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
touch "$venv/.complete"
echo "$venv"

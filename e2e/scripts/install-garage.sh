#!/usr/bin/env bash
# Installs the Garage S3 server used by the tests, once, into a cache that outlives clones.
# Building it takes about ten minutes on two cores; later runs find the binary and return at once.
set -euo pipefail
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
ROOT="$CACHE/garage-$GARAGE_VERSION"
BIN="$ROOT/bin/garage"
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$ROOT"
echo "building garage $GARAGE_VERSION into $ROOT (about ten minutes, cached afterwards)" >&2
# A private target dir keeps the build out of the workspace and is removed afterwards.
tmp_target="$(mktemp -d)"
trap 'rm -rf "$tmp_target"' EXIT
CARGO_TARGET_DIR="$tmp_target" cargo install garage --locked --version "$GARAGE_VERSION" \
  --root "$ROOT.partial" >&2
mv "$ROOT.partial/bin/garage" "$BIN.tmp" 2>/dev/null || { mkdir -p "$ROOT/bin"; mv "$ROOT.partial/bin/garage" "$BIN.tmp"; }
rm -rf "$ROOT.partial"
mv "$BIN.tmp" "$BIN"
echo "$BIN"

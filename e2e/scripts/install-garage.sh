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
echo "building garage $GARAGE_VERSION into $ROOT (about ten minutes, cached afterwards)" >&2
# A private target dir and install root keep the build out of the workspace; removed afterwards.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR="$work/target" cargo install garage --locked --version "$GARAGE_VERSION" \
  --root "$work/root" >&2
mkdir -p "$ROOT/bin"
mv "$work/root/bin/garage" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"

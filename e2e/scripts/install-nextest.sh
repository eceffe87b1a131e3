#!/usr/bin/env bash
# Installs cargo-nextest (the test runner of e2e/test.sh), once, into the cache beside Garage.
# Prints the directory to put on PATH. A cargo-nextest already on PATH is used as it is.
set -euo pipefail
NEXTEST_VERSION="${NEXTEST_VERSION:-0.9.151}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
ROOT="$CACHE/nextest-$NEXTEST_VERSION"
if [ -x "$ROOT/bin/cargo-nextest" ]; then
  echo "$ROOT/bin"
  exit 0
fi
if command -v cargo-nextest >/dev/null 2>&1; then
  dirname "$(command -v cargo-nextest)"
  exit 0
fi
echo "building cargo-nextest $NEXTEST_VERSION into $ROOT (a few minutes, cached afterwards)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR="$work/target" cargo install cargo-nextest --locked --version "$NEXTEST_VERSION" \
  --root "$work/root" >&2
mkdir -p "$ROOT/bin"
mv "$work/root/bin/cargo-nextest" "$ROOT/bin/cargo-nextest.tmp"
mv "$ROOT/bin/cargo-nextest.tmp" "$ROOT/bin/cargo-nextest"
echo "$ROOT/bin"

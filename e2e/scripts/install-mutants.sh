#!/usr/bin/env bash
# Installs cargo-mutants (the mutation tester of e2e/scripts/mutants.sh), once, into the cache beside
# nextest. Prints the path of the binary. A cargo-mutants of the same version on PATH is used as it is.
set -euo pipefail
MUTANTS_VERSION="${MUTANTS_VERSION:-27.1.0}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
ROOT="$CACHE/mutants-$MUTANTS_VERSION"
if [ -x "$ROOT/bin/cargo-mutants" ]; then
  echo "$ROOT/bin/cargo-mutants"
  exit 0
fi
if command -v cargo-mutants >/dev/null 2>&1 &&
  [ "$(cargo-mutants mutants --version 2>/dev/null)" = "cargo-mutants $MUTANTS_VERSION" ]; then
  command -v cargo-mutants
  exit 0
fi
echo "building cargo-mutants $MUTANTS_VERSION into $ROOT (a few minutes, cached afterwards)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CARGO_TARGET_DIR="$work/target" nice -n 19 cargo install cargo-mutants --locked \
  --version "$MUTANTS_VERSION" --root "$work/root" -j 2 >&2
mkdir -p "$ROOT/bin"
mv "$work/root/bin/cargo-mutants" "$ROOT/bin/cargo-mutants.tmp"
mv "$ROOT/bin/cargo-mutants.tmp" "$ROOT/bin/cargo-mutants"
echo "$ROOT/bin/cargo-mutants"

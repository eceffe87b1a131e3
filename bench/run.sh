#!/usr/bin/env bash
# The benchmark: TableSnap against s5cmd and the AWS CLI, one Garage, the same files, one run.
#   bench/run.sh [--quick] [--only SCENARIO]... [--json FILE]
#   BENCH_PROFILE=debug bench/run.sh --quick     (CI smoke on the test build)
# Builds the agent (release), starts a throw-away Garage on loopback, installs the peers into a
# cached venv (bench/venv.sh), runs bench/bench.py and prints the table. Scratch files go to
# $BENCH_WORK (default: /work/tablesnap-bench if /work exists, else a temp dir); the full run
# needs about 12 GiB free there. --quick uses tiny sizes and takes seconds; it exits 0 only when
# every scenario produced numbers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if [ -d /work ]; then default_work=/work/tablesnap-bench; else default_work="$(mktemp -d)"; fi
work="${BENCH_WORK:-$default_work}"

# BENCH_PROFILE=debug reuses the test build (for the --quick smoke in CI); numbers want release.
profile="${BENCH_PROFILE:-release}"
echo "building tablesnap ($profile)" >&2
if [ "$profile" = release ]; then
  cargo build --release --locked --quiet -p tablesnap --manifest-path "$root/Cargo.toml"
else
  cargo build --locked --quiet -p tablesnap --manifest-path "$root/Cargo.toml"
fi
bin="$CARGO_TARGET_DIR/$profile"
venv="$("$root/bench/venv.sh")"
s5cmd="$("$venv/bin/python" -c 'import os, s5cmd; print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))')"

gdir="$(mktemp -d "${TMPDIR:-/tmp}/tablesnap-bench-garage.XXXXXX")"
cleanup() { "$root/e2e/scripts/garage.sh" stop "$gdir" >/dev/null 2>&1 || true; rm -rf "$gdir" "$work"; }
trap cleanup EXIT
# Garage's data on the same disk as the files, like a real node writing its own volume.
eval "$("$root/e2e/scripts/garage.sh" start "$gdir")"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); garage at $TABLESNAP_TEST_S3_ENDPOINT" >&2

"$venv/bin/python" "$root/bench/bench.py" --work "$work" \
  --tablesnap "$bin/tablesnap" --tableslurp "$bin/tableslurp" \
  --s5cmd "$s5cmd" --aws "$venv/bin/aws" "$@"

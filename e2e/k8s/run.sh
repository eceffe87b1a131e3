#!/usr/bin/env bash
# End-to-end scenario of the operator on a cluster chosen by KUBECONFIG: install the operator from
# deploy/, give a small StatefulSet a TableSnap, see the sidecar and the status, delete the
# TableSnap and see the sidecar removed. Prints "SKIPPED: no cluster reachable" and exits 0 when no
# cluster answers (exit 1 with TABLESNAP_REQUIRE_REAL=1, as e2e/test.sh sets it).
#
# Two ways to run the operator (E2E_OPERATOR):
#   deploy  the Deployment from deploy/ (a real cluster: kind, k3d, EKS, ...); images must be
#           pullable by the cluster (for kind: `kind load docker-image ...` first)
#   local   target/debug/tablesnap-operator as a local process, authenticated with a token minted
#           for deploy/'s ServiceAccount, so deploy/'s RBAC is what it gets. Without nodes
#           (e2e/scripts/k8s.sh: no scheduler, no kubelet) e2e/scripts/fake-kubelet.py marks pods
#           Running as a kubelet would.
#   auto    (default) local when the cluster has no nodes, else deploy
#   OPERATOR_IMAGE  the operator image   (deploy; default: the one in deploy/)
#   AGENT_IMAGE     the tablesnap image  (default: the operator's built-in default)
#   AGENT_BIN       local: the agent binary fake-kubelet.py runs (default target/debug/tablesnap)
#   E2E_PYTHON      a Python with boto3, to read the shipped file back from the bucket
# With TABLESNAP_TEST_S3_ENDPOINT/_BUCKET and AWS_* set (e2e/scripts/garage.sh) and the local
# operator, the agents ship to that server and the scenario waits for Ready (every agent reports
# that it ships) and reads a file back; otherwise it checks that the agents say they wait.
set -euo pipefail

here="$(cd "$(dirname "$0")/../.." && pwd)"
ns="tablesnap-e2e"
timeout_s="${E2E_TIMEOUT:-300}"

# skip WHY: says so on its own line; fails instead when the test command requires the real parts.
skip() {
  echo "SKIPPED: $*"
  if [ "${TABLESNAP_REQUIRE_REAL:-}" = 1 ]; then
    echo "FAILED: TABLESNAP_REQUIRE_REAL=1 and $*" >&2
    exit 1
  fi
  exit 0
}
if ! command -v kubectl >/dev/null 2>&1; then
  skip "no cluster reachable (kubectl is not installed)"
fi
if ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  skip "no cluster reachable (KUBECONFIG=${KUBECONFIG:-~/.kube/config})"
fi

step() { echo "== $*"; }
fail() {
  echo "FAILED: $*" >&2
  kubectl -n "$ns" get tablesnap,statefulset,pods -o wide >&2 || true
  if [ -n "${kubelet_log:-}" ] && [ -f "$kubelet_log" ]; then
    echo "-- last lines of fake-kubelet ($kubelet_log):" >&2; tail -n 20 "$kubelet_log" >&2
    for f in "$work"/kubelet/*.log; do [ -f "$f" ] && { echo "-- $f:" >&2; tail -n 10 "$f" >&2; }; done
  fi
  if [ -n "${operator_log:-}" ] && [ -f "$operator_log" ]; then
    echo "-- last lines of the operator's log ($operator_log):" >&2; tail -n 40 "$operator_log" >&2
  fi
  exit 1
}

# wait_for DESCRIPTION COMMAND...: run COMMAND until it succeeds, up to the deadline.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || fail "timed out after ${timeout_s}s waiting for: $what"
    sleep 2
  done
  echo "   ok: $what"
}

mode="${E2E_OPERATOR:-auto}"
if [ "$mode" = auto ]; then
  if [ -z "$(kubectl get nodes -o name 2>/dev/null)" ]; then mode=local; else mode=deploy; fi
fi
case "$mode" in local|deploy) ;; *) echo "E2E_OPERATOR must be local, deploy or auto" >&2; exit 2 ;; esac
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "install the operator (deploy/, operator: $mode)"
kubectl apply --server-side -f "$here/deploy/"
wait_for "the CRD is established" kubectl wait --for=condition=Established crd/tablesnaps.tablesnap.io --timeout=5s
if [ "$mode" = deploy ]; then
  if [ -n "${OPERATOR_IMAGE:-}" ]; then
    kubectl -n tablesnap-system set image deployment/tablesnap-operator operator="$OPERATOR_IMAGE"
  fi
  kubectl -n tablesnap-system rollout status deployment/tablesnap-operator --timeout="${timeout_s}s" || fail "the operator did not start"
else
  kubectl -n tablesnap-system scale deployment/tablesnap-operator --replicas=0 >/dev/null
  bin="${OPERATOR_BIN:-$here/target/debug/tablesnap-operator}"
  [ -x "$bin" ] || (cd "$here" && cargo build -q -p tablesnap-operator --bin tablesnap-operator)
  # The operator's own credentials: a token for deploy/'s ServiceAccount, nothing more.
  token="$(kubectl -n tablesnap-system create token tablesnap-operator --duration=1h)"
  server="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  cat > "$work/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: tablesnap-operator, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: tablesnap-operator}}]
current-context: c
KC
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
  operator_log="$work/operator.log"
  KUBECONFIG="$work/operator.kubeconfig" POD_NAMESPACE=tablesnap-system POD_NAME=e2e-local \
    HTTP_LISTEN="127.0.0.1:$port" LOG_FORMAT=text RUST_LOG="${RUST_LOG:-info}" \
    "$bin" > "$operator_log" 2>&1 &
  pids+=($!)
  wait_for "the local operator answers /healthz" curl -sf "http://127.0.0.1:$port/healthz"
fi

step "a small StatefulSet with a data claim"
# A namespace left by an earlier run may still be terminating: wait until it is gone.
kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout="${timeout_s}s" >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
if [ -z "$(kubectl get nodes -o name 2>/dev/null)" ]; then
  # No kubelet: fake-kubelet.py writes pod status and runs the sidecar (the real agent binary)
  # and the operator's pre-flight pods as local processes, each pod on its own loopback address.
  agent_bin="${AGENT_BIN:-$here/target/debug/tablesnap}"
  [ -x "$agent_bin" ] || (cd "$here" && cargo build -q -p tablesnap --bin tablesnap)
  TABLESNAP_AGENT_BIN="$agent_bin" FAKE_KUBELET_DIR="$work/kubelet" \
    python3 "$here/e2e/scripts/fake-kubelet.py" "$ns" > "$work/fake-kubelet.log" 2>&1 &
  pids+=($!)
  kubelet_log="$work/fake-kubelet.log"
fi
# Storage for the agents: the test S3 server when the test command started one (and the agents
# run here), else an endpoint that does not resolve, where each agent must say it waits.
if [ "$mode" = local ] && [ -n "${TABLESNAP_TEST_S3_ENDPOINT:-}" ] && [ -n "${TABLESNAP_TEST_BUCKET:-}" ]; then
  endpoint="$TABLESNAP_TEST_S3_ENDPOINT"; bucket="$TABLESNAP_TEST_BUCKET"; storage=real
  key_id="$AWS_ACCESS_KEY_ID"; secret_key="$AWS_SECRET_ACCESS_KEY"; region="${AWS_REGION:-garage}"
else
  endpoint="http://storage.invalid:3900"; bucket="e2e-backups"; storage=none
  key_id="GKe2e"; secret_key="e2e"; region="garage"
fi
kubectl -n "$ns" apply -f - <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cass
  labels:
    backup: tablesnap
spec:
  replicas: 1
  serviceName: cass
  selector:
    matchLabels: {app: cass}
  template:
    metadata:
      labels: {app: cass}
    spec:
      containers:
        - name: cassandra
          image: busybox:1.36
          command: ["sh", "-c", "mkdir -p /var/lib/cassandra/data && sleep 1000000"]
          volumeMounts:
            - {name: data, mountPath: /var/lib/cassandra}
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 100Mi}}
YAML

step "a TableSnap selecting it, whose credentials Secret does not exist yet (storage: $storage)"
agent_image_line=""
if [ -n "${AGENT_IMAGE:-}" ]; then agent_image_line="image: ${AGENT_IMAGE}"; fi
kubectl -n "$ns" apply -f - <<YAML
apiVersion: tablesnap.io/v1alpha1
kind: TableSnap
metadata:
  name: e2e
spec:
  bucket: ${bucket}
  endpoint: ${endpoint}
  region: ${region}
  mode: generic
  credentials:
    mode: Secret
    secretRef: {name: e2e-s3}
  targets:
    selector:
      matchLabels: {backup: tablesnap}
  agent:
    logFormat: text
    ${agent_image_line}
YAML

sidecar_present() {
  kubectl -n "$ns" get statefulset cass -o jsonpath='{.spec.template.spec.initContainers[*].name}' | grep -qw tablesnap
}
sidecar_absent() { ! sidecar_present; }
status_is() { # JSONPATH EXPECTED
  [ "$(kubectl -n "$ns" get tablesnap e2e -o jsonpath="$1")" = "$2" ]
}

wait_for "the pre-flight pod fails on the missing Secret (status PreflightFailed)" \
  status_is '{.status.conditions[?(@.type=="TargetsResolved")].reason}' PreflightFailed
sidecar_absent || fail "the pod template changed although the pre-flight check failed"
kubectl -n "$ns" get events --field-selector reason=PreflightFailed -o name | grep -q . \
  || fail "no PreflightFailed event"
step "create the Secret: the pre-flight pod runs, then the sidecar is injected"
kubectl -n "$ns" create secret generic e2e-s3 \
  --from-literal=AWS_ACCESS_KEY_ID="$key_id" --from-literal=AWS_SECRET_ACCESS_KEY="$secret_key"
wait_for "the sidecar is in the StatefulSet's pod template" sidecar_present
[ "$(kubectl -n "$ns" get statefulset cass -o jsonpath='{.spec.template.spec.initContainers[0].restartPolicy}')" = "Always" ] \
  || fail "the sidecar is not a native sidecar"
[ "$(kubectl -n "$ns" get statefulset cass -o jsonpath='{.spec.template.spec.initContainers[0].volumeMounts[0].readOnly}')" = "true" ] \
  || fail "the data volume is not mounted read-only"
[ -z "$(kubectl -n "$ns" get statefulset cass -o jsonpath='{.metadata.ownerReferences}')" ] \
  || fail "the StatefulSet got an ownerReference"
wait_for "status: one target, Injected" status_is '{.status.conditions[?(@.type=="Injected")].status}' True
status_is '{.status.targets[0].volume}' data || fail "status names the wrong volume"
status_is '{.status.targets[0].mountPath}' /var/lib/cassandra || fail "status names the wrong mount path"
wait_for "the agent runs in the pod (status podsReady 1/1)" status_is '{.status.targets[0].podsReady}/{.status.targets[0].podsTotal}' 1/1
if [ "$storage" = real ]; then
  wait_for "every agent reports that it ships (podsProtected 1/1, Ready)" \
    status_is '{.status.targets[0].podsProtected}/{.status.conditions[?(@.type=="Ready")].status}' 1/True
  [ -n "$(kubectl -n "$ns" get tablesnap e2e -o jsonpath='{.status.targets[0].oldestRecoveryPoint}')" ] \
    || fail "no oldestRecoveryPoint in the status"
  if [ -n "${kubelet_log:-}" ] && [ -n "${E2E_PYTHON:-}" ]; then
    step "a file written into the pod's data volume lands in the bucket"
    data_dir="$work/kubelet/cass-0/data"
    echo "e2e $(date +%s)" > "$data_dir/.e2e-nb-1-big-Data.db"
    mv "$data_dir/.e2e-nb-1-big-Data.db" "$data_dir/nb-1-big-Data.db"
    key="$ns/cass-0:$data_dir/nb-1-big-Data.db"
    in_bucket() {
      "$E2E_PYTHON" - "$endpoint" "$bucket" "$key" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
body = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read()
sys.exit(0 if body.startswith(b"e2e ") else 1)
PY
    }
    wait_for "s3://$bucket/$key read back by an S3 client" in_bucket
  fi
else
  wait_for "the agent says it waits for its bucket (Degraded AgentsNotShipping)" \
    status_is '{.status.conditions[?(@.type=="Degraded")].reason}' AgentsNotShipping
fi
kubectl -n "$ns" get tablesnap e2e

step "delete the TableSnap: the sidecar goes, the StatefulSet stays"
kubectl -n "$ns" delete tablesnap e2e --wait=false
wait_for "the TableSnap is gone (finalizer done)" sh -c "! kubectl -n $ns get tablesnap e2e"
wait_for "the sidecar is removed from the pod template" sidecar_absent
kubectl -n "$ns" get statefulset cass >/dev/null || fail "the StatefulSet was deleted with the TableSnap"
[ "$(kubectl -n "$ns" get statefulset cass -o jsonpath='{.spec.template.spec.containers[0].name}')" = "cassandra" ] \
  || fail "the Cassandra container was touched"

echo "PASSED: operator e2e"

#!/usr/bin/env bash
# Starts or stops a throw-away Kubernetes control plane on loopback for the tests: etcd,
# kube-apiserver and kube-controller-manager (StatefulSet, garbage collector, namespace,
# service-account and PVC-protection controllers; the last lets namespaces with claims go).
# There is no scheduler and no kubelet: pods stay Pending, and a test that needs them Running
# patches their status as a kubelet would.
#   k8s.sh start DIR   generate certificates, start the three under DIR, write DIR/kubeconfig and
#                      DIR/env, print the env (for `eval`)
#   k8s.sh stop DIR    stop what was started under DIR
# Binaries come from install-k8s.sh (built once, cached outside the clone).
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
timeout_s="${K8S_START_TIMEOUT:-120}"
COMPONENTS=(kube-controller-manager kube-apiserver etcd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now() { date +%s.%N; }
took() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$(now)"; }
log() { echo "k8s.sh: $*" >&2; }

stop() {
  local c pidf pid
  for c in "${COMPONENTS[@]}"; do
    pidf="$dir/$c.pid"
    [ -f "$pidf" ] || continue
    pid="$(cat "$pidf")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
}

# wait_until DESCRIPTION LOGFILE COMMAND...: run COMMAND until it succeeds, up to the deadline;
# fails at once when the component whose log is LOGFILE has exited.
wait_until() {
  local what="$1" logf="$2"; shift 2
  local deadline=$((SECONDS + timeout_s)) pidf
  pidf="${logf%.log}.pid"
  until "$@" >/dev/null 2>&1; do
    if [ -f "$pidf" ] && ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
      log "$(basename "${logf%.log}") exited while waiting for $what; last lines of $logf:"
      tail -n 30 "$logf" >&2
      stop
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      log "timed out after ${timeout_s}s waiting for $what; last lines of $logf:"
      tail -n 30 "$logf" >&2
      stop
      exit 1
    fi
    sleep 0.2
  done
}

certs() {
  local c="$dir/pki"
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=tablesnap-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  # leaf NAME SUBJECT EXTENSIONS: a certificate signed by the CA (never its own CA: rustls refuses that).
  leaf() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$c/$1.key" -out "$c/$1.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$c/$1.ext"
    openssl x509 -req -in "$c/$1.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial -days 7 \
      -extfile "$c/$1.ext" -out "$c/$1.crt" 2>/dev/null
  }
  leaf apiserver "/CN=kube-apiserver" \
    "$(printf '%s\n%s' "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1")"
  leaf admin "/O=system:masters/CN=tablesnap-test-admin" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
}

kubeconfig() { # FILE SERVER
  local c="$dir/pki"
  cat > "$1" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: tablesnap-test
    cluster:
      server: $2
      certificate-authority-data: $(base64 -w0 < "$c/ca.crt")
users:
  - name: admin
    user:
      client-certificate-data: $(base64 -w0 < "$c/admin.crt")
      client-key-data: $(base64 -w0 < "$c/admin.key")
contexts:
  - name: tablesnap-test
    context: {cluster: tablesnap-test, user: admin}
current-context: tablesnap-test
YAML
}

start() {
  local t0 all; all="$(now)"
  t0="$(now)"
  local bin; bin="$("$here/install-k8s.sh")"
  log "binaries in $bin ($(took "$t0"))"
  mkdir -p "$dir"
  stop
  t0="$(now)"
  certs
  log "certificates ($(took "$t0"))"

  t0="$(now)"
  local etcd_client etcd_peer; etcd_client="$(free_port)"; etcd_peer="$(free_port)"
  rm -rf "$dir/etcd-data"
  nohup "$bin/etcd" --name default --data-dir "$dir/etcd-data" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" --log-level warn \
    > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  wait_until "etcd /health" "$dir/etcd.log" curl -sf "http://127.0.0.1:$etcd_client/health"
  log "etcd on 127.0.0.1:$etcd_client ($(took "$t0"))"

  t0="$(now)"
  local port c="$dir/pki"; port="$(free_port)"
  # Every request a ServiceAccount makes (the operator under test runs as one) goes to
  # DIR/audit.log, one JSON line each, so a test can list the permissions it really used.
  cat > "$dir/audit-policy.yaml" <<YAML
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
YAML
  nohup "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address 127.0.0.1 --secure-port "$port" \
    --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --tls-cert-file "$c/apiserver.crt" --tls-private-key-file "$c/apiserver.key" \
    --client-ca-file "$c/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$c/sa.pub" --service-account-signing-key-file "$c/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true \
    --profiling=false \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
    --audit-log-mode blocking \
    > "$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"
  kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$port"
  wait_until "kube-apiserver /readyz" "$dir/kube-apiserver.log" \
    curl -sf --cacert "$c/ca.crt" --cert "$c/admin.crt" --key "$c/admin.key" "https://127.0.0.1:$port/readyz"
  log "kube-apiserver on https://127.0.0.1:$port ($(took "$t0"))"

  t0="$(now)"
  local kcm_port; kcm_port="$(free_port)"
  nohup "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --controllers statefulset-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,persistentvolumeclaim-protection-controller \
    --service-account-private-key-file "$c/sa.key" --root-ca-file "$c/ca.crt" \
    --leader-elect=false --profiling=false \
    > "$dir/kube-controller-manager.log" 2>&1 &
  echo $! > "$dir/kube-controller-manager.pid"
  wait_until "kube-controller-manager /healthz" "$dir/kube-controller-manager.log" \
    curl -skf "https://127.0.0.1:$kcm_port/healthz"
  # The service-account controller is running once it has created `default` in `default`.
  wait_until "the default ServiceAccount" "$dir/kube-controller-manager.log" \
    "$bin/kubectl" --kubeconfig "$dir/kubeconfig" -n default get serviceaccount default
  log "kube-controller-manager ($(took "$t0"))"

  cat > "$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export TABLESNAP_KUBECONFIG=$dir/kubeconfig
export TABLESNAP_K8S_DIR=$dir
export TABLESNAP_K8S_BIN=$bin
export TABLESNAP_K8S_AUDIT_LOG=$dir/audit.log
export PATH=$bin:\$PATH
ENV
  log "control plane up ($(took "$all"))"
  cat "$dir/env"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

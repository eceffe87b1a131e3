#!/usr/bin/env bash
# Starts or stops a throw-away Garage S3 server on loopback for the tests.
#   garage.sh start DIR [NODES]   start NODES (default 1) nodes under DIR, write DIR/env, print it
#   garage.sh stop DIR            stop the nodes started under DIR
# DIR/env holds the variables the tests read (endpoint, fixed test keys, region, a default bucket).
set -euo pipefail
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [NODES]" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"

KEY_ID="GK0123456789abcdef01234567"
SECRET="0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
REGION="garage"
BUCKET="tablesnap-test"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

stop() {
  for pidf in "$dir"/node*/pid; do
    [ -f "$pidf" ] || continue
    pid="$(cat "$pidf")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
}

start() {
  local nodes="${1:-1}"
  local bin; bin="$("$here/install-garage.sh")"
  mkdir -p "$dir"
  local secret; secret="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  local first_cfg="" ids=() s3_ports=()
  for n in $(seq 1 "$nodes"); do
    local nd="$dir/node$n"; mkdir -p "$nd/meta" "$nd/data"
    local rpc s3 admin; rpc="$(free_port)"; s3="$(free_port)"; admin="$(free_port)"
    cat > "$nd/garage.toml" <<TOML
metadata_dir = "$nd/meta"
data_dir = "$nd/data"
db_engine = "sqlite"
replication_factor = $nodes
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "tablesnap-test-admin-token"
metrics_token = "tablesnap-test-metrics-token"
TOML
    echo "$s3" > "$nd/s3_port"; echo "$rpc" > "$nd/rpc_port"; echo "$admin" > "$nd/admin_port"
    RUST_LOG="${GARAGE_LOG:-warn}" nohup "$bin" -c "$nd/garage.toml" server > "$nd/log" 2>&1 &
    echo $! > "$nd/pid"
    s3_ports+=("$s3")
    [ -n "$first_cfg" ] || first_cfg="$nd/garage.toml"
  done
  # Wait until every node answers, then join them and lay out the cluster.
  for n in $(seq 1 "$nodes"); do
    local cfg="$dir/node$n/garage.toml" id=""
    for _ in $(seq 100); do
      id="$("$bin" -c "$cfg" node id -q 2>/dev/null || true)"
      [ -n "$id" ] && break; sleep 0.1
    done
    [ -n "$id" ] || { echo "garage node $n did not start; see $dir/node$n/log" >&2; cat "$dir/node$n/log" >&2; exit 1; }
    ids+=("$id")
    # `node id` reads the key from disk; wait until the node also answers on its RPC port.
    for _ in $(seq 100); do
      "$bin" -c "$cfg" status >/dev/null 2>&1 && break; sleep 0.1
    done
  done
  for n in $(seq 2 "$nodes"); do "$bin" -c "$first_cfg" node connect "${ids[$((n-1))]}" >/dev/null; done
  for id in "${ids[@]}"; do
    "$bin" -c "$first_cfg" layout assign -z dc1 -c 1G "${id%@*}" >/dev/null
  done
  "$bin" -c "$first_cfg" layout apply --version 1 >/dev/null
  for _ in $(seq 100); do
    "$bin" -c "$first_cfg" key import --yes "$KEY_ID" "$SECRET" >/dev/null 2>&1 && break; sleep 0.2
  done
  "$bin" -c "$first_cfg" key allow --create-bucket "$KEY_ID" >/dev/null
  "$bin" -c "$first_cfg" bucket create "$BUCKET" >/dev/null
  "$bin" -c "$first_cfg" bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID" >/dev/null
  cat > "$dir/env" <<ENV
export TABLESNAP_TEST_S3_ENDPOINT=http://127.0.0.1:${s3_ports[0]}
export TABLESNAP_TEST_S3_ENDPOINTS=$(IFS=,; echo "${s3_ports[*]/#/http://127.0.0.1:}")
export TABLESNAP_TEST_BUCKET=$BUCKET
export TABLESNAP_TEST_GARAGE_DIR=$dir
export TABLESNAP_TEST_GARAGE_BIN=$bin
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=$REGION
export AWS_DEFAULT_REGION=$REGION
ENV
  # The S3 API answers once the layout has propagated.
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:${s3_ports[0]}/" && break; sleep 0.1
  done
  cat "$dir/env"
}

case "$cmd" in
  start) shift 2; start "${1:-1}" ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR [NODES]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Builds the Kubernetes control plane the tests run against (kube-apiserver,
# kube-controller-manager, kubectl and etcd) from Go modules, once, into a cache that outlives
# clones, and prints the bin directory. Later runs find the binaries and return at once.
#
# k8s.io/kubernetes replaces its ~30 staging modules (k8s.io/api, k8s.io/apiserver, ...) with local
# paths, so `go install k8s.io/kubernetes/cmd/...@v1.X.Y` cannot work. A small wrapper module
# requires k8s.io/kubernetes and pins every module it replaces to the published v0.X.Y, the list
# read from its own go.mod. etcd's server module does the same with its siblings and gets its own
# wrapper. Go's module and build caches stay where `go env` puts them (outside the clone).
#
# The minor matches the operator's k8s-openapi feature (v1_33 in the workspace Cargo.toml); etcd is
# the release k8s.io/kubernetes v1.33 itself requires.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-3.5.21}"
CACHE="${TABLESNAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tablesnap}"
ROOT="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
BIN="$ROOT/bin"
TOOLS=(kube-apiserver kube-controller-manager kubectl etcd)

present() {
  local t
  for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || return 1; done
  "$BIN/kube-apiserver" --version >/dev/null 2>&1 && "$BIN/etcd" --version >/dev/null 2>&1
}
if present; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "install-k8s.sh: needs go (1.24 or newer) on PATH" >&2; exit 1; }
started=$(date +%s)
echo "building kubernetes v$K8S_VERSION and etcd v$ETCD_VERSION into $ROOT (10-30 minutes cold, cached afterwards)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0 GOTOOLCHAIN=local
PAR="${K8S_BUILD_PARALLEL:-2}"

# Writes "replace M => M V" for every module a go.mod replaces with a local path. V is the version
# that go.mod requires M at, or PIN where it requires the placeholder v0.0.0 (Kubernetes' staging).
pin_local_replaces() { # GOMOD PIN
  awk -v pin="$2" '
    /^require[ \t]*\(/ { inreq = 1; next }
    /^replace[ \t]*\(/ { inrep = 1; next }
    /^\)/ { inreq = 0; inrep = 0; next }
    inreq && NF >= 2 { req[$1] = $2; next }
    $1 == "require" && NF >= 3 { req[$2] = $3; next }
    {
      line = $0; sub(/^replace[ \t]+/, "", line)
      if ((inrep || $1 == "replace") && line ~ /=>[ \t]*\.\.?\// && line !~ /FORBIDDEN/) {
        split(line, f, /[ \t]+/); n = 1; while (f[n] == "") n++
        mods[++count] = f[n]
      }
    }
    END {
      for (i = 1; i <= count; i++) {
        m = mods[i]; v = (m in req && req[m] != "v0.0.0") ? req[m] : pin
        printf "replace %s => %s %s\n", m, m, v
      }
    }' "$1"
}

# wrapper DIR MODULE VERSION PINNED_VERSION PACKAGE...
wrapper() {
  local dir="$1" mod="$2" ver="$3" pin="$4"; shift 4
  mkdir -p "$dir"
  local gomod
  gomod="$(cd "$dir" && go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [ -f "$gomod" ] || { echo "install-k8s.sh: no go.mod for $mod@$ver" >&2; exit 1; }
  {
    echo "module tablesnap.test/build"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require $mod $ver"
    echo
    pin_local_replaces "$gomod" "$pin"
  } > "$dir/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package build"
    echo
    local p
    for p in "$@"; do echo "import _ \"$p\""; done
  } > "$dir/tools.go"
  echo "  $mod@$ver with $(grep -c '^replace' "$dir/go.mod") pinned replaces" >&2
  (cd "$dir" && go mod tidy >&2)
}

t0=$(date +%s)
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
wrapper "$work/k8s" k8s.io/kubernetes "v$K8S_VERSION" "v0.${K8S_VERSION#*.}" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl
wrapper "$work/etcd" go.etcd.io/etcd/server/v3 "v$ETCD_VERSION" "v$ETCD_VERSION" \
  go.etcd.io/etcd/server/v3
echo "  modules resolved in $(( $(date +%s) - t0 ))s" >&2

mkdir -p "$work/bin"
t0=$(date +%s)
date_now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date_now"
done
(cd "$work/k8s" && go build -p "$PAR" -trimpath -ldflags "$ldflags" -o "$work/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl >&2)
echo "  kubernetes built in $(( $(date +%s) - t0 ))s" >&2
t0=$(date +%s)
(cd "$work/etcd" && go build -p "$PAR" -trimpath -ldflags "-s -w" -o "$work/bin/etcd" \
  go.etcd.io/etcd/server/v3 >&2)
echo "  etcd built in $(( $(date +%s) - t0 ))s" >&2

mkdir -p "$BIN"
for t in "${TOOLS[@]}"; do
  mv "$work/bin/$t" "$BIN/$t.tmp"
  mv "$BIN/$t.tmp" "$BIN/$t"
done
"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version | sed -n 1p >&2
echo "install-k8s.sh: done in $(( $(date +%s) - started ))s" >&2
echo "$BIN"

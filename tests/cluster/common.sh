# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# Shared settings for the tests/cluster scripts. Source it; do not run it.
#
# Everything expensive (kubectl/helm, the Go caches, the built binaries) lives in the
# cache dir and survives `down.sh --purge`.

# Directory of this file, the repo root and the cache.
CLUSTER_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SCRIPTS_DIR/../.." && pwd)"
CACHE="${CONNECT_OPERATOR_CACHE:-$HOME/.cache/connect-operator}"
CACHE_BIN="$CACHE/bin"

# The Go modules of our own that build the cluster's binaries (build-kube.sh), and the Go caches
# (warm across runs and `down.sh --purge`).
GO_MODULES_DIR="$CLUSTER_SCRIPTS_DIR/go"
export GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" GOCACHE="${GOCACHE:-$CACHE/gocache}"
export GOFLAGS="${GOFLAGS:--modcacherw}"

# go_module_version DIR MODULE: the version (without v) DIR's go.mod requires of MODULE.
go_module_version() {
  awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) && $0 !~ /=>/ {
      for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { sub(/^v/, "", $i); print $i; exit } }' "$1/go.mod"
}

# The Kubernetes version: the one variable (x.y.z; a leading v is accepted). Default: the version
# the committed tests/cluster/go/kube/go.mod requires (the newest the suite runs on).
K8S_VERSION="${K8S_VERSION:-$(go_module_version "$GO_MODULES_DIR/kube" k8s.io/kubernetes)}"
K8S_VERSION="${K8S_VERSION#v}"
[[ "$K8S_VERSION" =~ ^1\.[0-9]+\.[0-9]+$ ]] || { printf '[cluster] ERROR: K8S_VERSION=%s is not x.y.z\n' "$K8S_VERSION" >&2; exit 1; }
KUBE_BIN_DIR="$CACHE/kube-v$K8S_VERSION/bin"
ETCD_VERSION="$(go_module_version "$GO_MODULES_DIR/etcd" go.etcd.io/etcd/server/v3)"
ETCD_BIN_DIR="$CACHE/etcd-v$ETCD_VERSION/bin"
NODE_RUNTIME_BIN_DIR="$CACHE/containerd-v$(go_module_version "$GO_MODULES_DIR/node" github.com/containerd/containerd/v2)-runc-v$(go_module_version "$GO_MODULES_DIR/node" github.com/opencontainers/runc)/bin"

# Test cluster state (certs, etcd data, logs, pid files, kubeconfig).
CLUSTER_DIR="$(realpath -m "${CLUSTER_DIR:-$REPO_ROOT/target/test-cluster}")"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1 (or on $2:$1).
port_in_use() {
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

# pid_matches PID PATTERN: the process exists and its command line contains PATTERN.
pid_matches() {
  local pid="$1" pattern="$2" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$pattern"* ]]
}

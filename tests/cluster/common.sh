# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# Shared settings for the tests/cluster scripts. Source it; do not run it.
#
# Everything expensive (kubectl/helm, the Kubernetes source tree, the built
# kube-apiserver) lives in the cache dir and survives `down.sh --purge`.

# Directory of this file, the repo root and the cache.
CLUSTER_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SCRIPTS_DIR/../.." && pwd)"
CACHE="${CONNECT_OPERATOR_CACHE:-$HOME/.cache/connect-operator}"
CACHE_BIN="$CACHE/bin"

# Kubernetes from Debian bookworm's source package (the only registry that ships it).
KUBE_VERSION="v1.20.2"
KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
KUBE_SRC_PARENT="$CACHE/src"
KUBE_SRC_DIR="$KUBE_SRC_PARENT/kubernetes-1.20.5+really1.20.2"
KUBE_BIN_DIR="$CACHE/kube-$KUBE_VERSION/bin"

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

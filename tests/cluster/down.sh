#!/usr/bin/env bash
# Stop the test cluster that up.sh started: only the pids in $CLUSTER_DIR/*.pid,
# and only when the process's command line still is that component of this
# CLUSTER_DIR. Waits for them to exit and removes the pid files.
#
# A node (up.sh --node) goes first: kube-proxy, kubelet, kube-scheduler; the pod
# containers are killed (through containerd, then leftover shims and runc
# containers of this cluster's runc root), containerd stops, mounts under
# $CLUSTER_DIR are unmounted, the CNI bridge and the cgroups go, and (unless
# another kubelet/kube-proxy runs on this host) the KUBE-* iptables chains and the
# sysctls up.sh found are restored. Container metadata and images stay (kubelet
# cleans up the dead pods on the next start) unless --purge.
#
# Usage: tests/cluster/down.sh [--purge]
#   --purge   also delete $CLUSTER_DIR (etcd data, certs, logs, kubeconfig,
#             containerd's images and containers) and this cluster's pod logs
#             in /var/log/pods; the cache (kubectl, helm, built binaries) is kept
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=tests/cluster/node.sh
source "$CLUSTER_SCRIPTS_DIR/node.sh"

PURGE=0
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

# Still alive and still ours? (A zombie has an empty cmdline: counts as gone.)
ours() {
  pid_matches "$1" "$2" && pid_matches "$1" "$CLUSTER_DIR/"
}

stop() {
  local name="$1" pidfile="$CLUSTER_DIR/$1.pid" pid waited=0
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if ! ours "$pid" "$name"; then
    log "$name: pid ${pid:-?} is not running (or is not ours); removing stale $pidfile"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  while ours "$pid" "$name"; do
    if ((waited == 300)); then # 30 s
      log "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    elif ((waited > 400)); then
      die "$name (pid $pid) does not exit"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$pidfile"
}

if [[ -d "$CLUSTER_DIR" ]]; then
  # The node (if any) first, then clients, etcd last.
  node_down
  for component in kube-controller-manager kube-apiserver etcd; do
    stop "$component"
  done
fi

if ((PURGE)) && [[ -e "$CLUSTER_DIR" ]]; then
  if [[ ! -f "$CLUSTER_DIR/.connect-operator-test-cluster" ]]; then
    die "refusing to delete $CLUSTER_DIR: it has no .connect-operator-test-cluster marker (not made by up.sh)"
  fi
  if [[ -n "$(mounts_under_cluster_dir)" ]]; then
    die "refusing to delete $CLUSTER_DIR: something is still mounted under it: $(mounts_under_cluster_dir | head -n3 | tr '\n' ' ')"
  fi
  if [[ -f "$NODE_ENV_FILE" ]]; then node_purge_pod_logs; fi
  log "deleting $CLUSTER_DIR"
  rm -rf "$CLUSTER_DIR"
fi

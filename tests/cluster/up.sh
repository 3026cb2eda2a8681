#!/usr/bin/env bash
# Start a real Kubernetes control plane (K8S_VERSION, default 1.37) on 127.0.0.1 for the tests:
# etcd 3.6 + kube-apiserver (+ kube-controller-manager: namespace deletion, ownerReference GC,
# service accounts), built from their Go modules by build-kube.sh (cached; a warm start builds
# nothing).
# With --node also a node that runs pods (see "Node mode" below).
#
# Usage: tests/cluster/up.sh [--fresh] [--node]
#   --fresh   wipe the cluster's data (down.sh --purge) before starting
#   --node    node mode (also TEST_CLUSTER_NODE=1)
#
# Stdout carries only the lines the tests need, so this works:
#   eval "$(tests/cluster/up.sh)"
# (they are also written to $CLUSTER_DIR/env). Progress goes to stderr.
# A no-op (prints the export lines) when the cluster it started is up.
#
# Env:
#   K8S_VERSION                 Kubernetes version x.y.z (default: tests/cluster/go/kube/go.mod's);
#                               a cluster of another version (or etcd) running on the same
#                               CLUSTER_DIR is stopped and its data deleted first
#   CLUSTER_DIR                 state dir (default <repo>/target/test-cluster)
#   CONNECT_OPERATOR_CACHE      cache dir (default ~/.cache/connect-operator)
#   TEST_CLUSTER_APISERVER_PORT (default 26443), TEST_CLUSTER_ETCD_PORT
#   (default 22379), TEST_CLUSTER_ETCD_PEER_PORT (default 22380): preferred
#                               ports; the next free one is taken when busy
#                               (up.sh runs pick and bind their ports one at a
#                               time; a start that finds a port taken anyway
#                               is retried on the next free ports)
#   TEST_CLUSTER_KCM=0          do not run kube-controller-manager
#   TEST_CLUSTER_SKIP_DEPS=1    do not run install-deps.sh first
#
# Node mode (root only; tests/cluster/node.sh lists what the machine needs):
# kube-apiserver also listens on the host's address (bind 0.0.0.0, advertised as
# the host's primary IPv4 address, which its certificate names) with the
# ServiceAccount admission plugin; kube-controller-manager runs all controllers;
# kube-scheduler; containerd 2 (root, state and socket under $CLUSTER_DIR/node,
# runc, CNI bridge; both built from their Go modules), kubelet and kube-proxy (iptables mode), so pods run and reach
# the apiserver at https://10.96.0.1:443 and the host's address. Images are
# imported (tests/cluster/load-image.sh), never pulled. kubelet, kube-proxy,
# kube-scheduler, containerd and runc are built like kube-apiserver (once, into the cache).
#   TEST_CLUSTER_PAUSE_IMAGE_TAR  pause image archive (docker save or OCI layout
#                               tar), imported into containerd; needed on the
#                               first start (afterwards the imported one is used)
#   TEST_CLUSTER_PAUSE_IMAGE    its name (default: the name in the archive)
#   TEST_CLUSTER_HOST_IP        the host address pods use (default: the source
#                               address of the default route)
#   TEST_CLUSTER_NODE_NAME      (default: the short host name)
#   TEST_CLUSTER_POD_CIDR       (default 10.88.0.0/16)
#   TEST_CLUSTER_NODE_BRIDGE    CNI bridge (default cotest0)
#   TEST_CLUSTER_NODE_CGROUP_ROOT  kubelet --cgroup-root (default /connect-operator-test)
#   TEST_CLUSTER_KUBELET_PORT (default 10250), TEST_CLUSTER_KUBELET_HEALTHZ_PORT
#                               (default 10248): preferred, the next free is taken
# A default-mode up.sh accepts a running node-mode cluster; up.sh --node restarts
# a running default-mode control plane in node mode (the data stays).
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=tests/cluster/build-kube.sh
source "$CLUSTER_SCRIPTS_DIR/build-kube.sh"
# shellcheck source=tests/cluster/node.sh
source "$CLUSTER_SCRIPTS_DIR/node.sh"

FRESH=0
NODE=0
if [[ "${TEST_CLUSTER_NODE:-0}" == 1 ]]; then NODE=1; fi
for arg in "$@"; do
  case "$arg" in
    --fresh) FRESH=1 ;;
    --node) NODE=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

PKI="$CLUSTER_DIR/pki"
KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"
TOKEN_FILE="$CLUSTER_DIR/tokens.csv"
PORTS_FILE="$CLUSTER_DIR/ports.env"
ENV_FILE="$CLUSTER_DIR/env"
MARKER="$CLUSTER_DIR/.connect-operator-test-cluster"
ETCD_BIN="$ETCD_BIN_DIR/etcd"
VERSIONS_FILE="$CLUSTER_DIR/versions"
VERSIONS="kubernetes=$K8S_VERSION etcd=$ETCD_VERSION"
READY_TIMEOUT=120
RUN_KCM=0
PORTS_LOCK="$CACHE/ports.lock"
PORT_TRIES=5
# Components whose death fails the start (node mode adds its own).
COMPONENTS=(etcd kube-apiserver kube-controller-manager)

print_env() {
  local lines
  lines="export KUBECONFIG=$KUBECONFIG_FILE
export PATH=\"$CACHE_BIN:\$PATH\""
  printf '%s\n' "$lines" >"$ENV_FILE"
  printf '%s\n' "$lines"
}

# pid of our running component NAME (from NAME.pid), or fail.
running_pid() {
  local name="$1" pid
  [[ -f "$CLUSTER_DIR/$name.pid" ]] || return 1
  pid="$(cat "$CLUSTER_DIR/$name.pid")"
  if pid_matches "$pid" "$name" && pid_matches "$pid" "$CLUSTER_DIR/"; then
    echo "$pid"
  else
    return 1
  fi
}

api() { # api PATH [curl args...]: authenticated request to our apiserver
  local path="$1"
  shift
  curl -sS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $TOKEN" \
    "$@" "https://127.0.0.1:$APISERVER_PORT$path"
}

load_state() {
  TOKEN=""
  APISERVER_PORT=""
  if [[ -f "$TOKEN_FILE" ]]; then TOKEN="$(cut -d, -f1 "$TOKEN_FILE" | sed -n 1p)"; fi
  # shellcheck disable=SC1090
  if [[ -f "$PORTS_FILE" ]]; then source "$PORTS_FILE"; fi
}

already_up() {
  local pid
  pid="$(running_pid etcd)" || return 1
  pid_matches "$pid" "$ETCD_BIN " || return 1
  pid="$(running_pid kube-apiserver)" || return 1
  pid_matches "$pid" "$KUBE_BIN_DIR/kube-apiserver " || return 1
  if [[ -f "$CLUSTER_DIR/kube-controller-manager.pid" ]]; then
    running_pid kube-controller-manager >/dev/null || return 1
  fi
  [[ -n "$TOKEN" && -n "$APISERVER_PORT" && -f "$KUBECONFIG_FILE" ]] || return 1
  [[ "$(api /readyz 2>/dev/null)" == ok ]] || return 1
  if ((NODE)); then node_already_up; fi
}

# pick_port PREFERRED: PREFERRED, or the next port up that nobody listens on.
pick_port() {
  local p="$1" taken=" ${*:2} "
  while port_in_use "$p" || [[ "$taken" == *" $p "* ]]; do
    p=$((p + 1))
    ((p < 32768)) || die "no free port found below 32768"
  done
  echo "$p"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -f "$PKI/ca.crt" || ! -f "$PKI/ca.key" ]]; then
    log "generating CA"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -subj "/CN=connect-operator-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    rm -f "$PKI/apiserver.crt"
  fi
  # Node mode: pods reach the apiserver at the host's address, which the certificate must name.
  if ((NODE)) && [[ -f "$PKI/apiserver.crt" ]] && ! cert_has apiserver "IP Address:$HOST_IP,"; then
    log "the apiserver certificate lacks IP:$HOST_IP: regenerating it"
    rm -f "$PKI/apiserver.crt"
  fi
  if [[ ! -f "$PKI/apiserver.crt" || ! -f "$PKI/apiserver.key" ]]; then
    log "generating apiserver serving certificate"
    local ext="$PKI/apiserver.ext"
    cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local${API_EXTRA_SANS:-}
EOF
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$PKI/apiserver.key" \
      -out "$PKI/apiserver.csr" -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -sha256 -days 3650 -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" \
      -CAkey "$PKI/ca.key" -CAcreateserial -extfile "$ext" -out "$PKI/apiserver.crt" 2>/dev/null
    rm -f "$PKI/apiserver.csr" "$ext"
  fi
  if [[ ! -f "$PKI/sa.key" || ! -f "$PKI/sa.pub" ]]; then
    log "generating service-account key pair"
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  if [[ ! -s "$TOKEN_FILE" ]]; then
    # token,user,uid,"groups"
    printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 24)" >"$TOKEN_FILE"
    chmod 600 "$TOKEN_FILE"
  fi
  TOKEN="$(cut -d, -f1 "$TOKEN_FILE" | sed -n 1p)"
}

write_kubeconfig() {
  local ca_data
  ca_data="$(base64 -w0 "$PKI/ca.crt")"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: connect-operator-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca_data
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: connect-operator-test
  context:
    cluster: connect-operator-test
    user: admin
    namespace: default
current-context: connect-operator-test
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# start NAME BINARY ARGS...: run detached (own session), log to NAME.log, pid to NAME.pid.
start() {
  local name="$1" bin="$2" pid
  shift 2
  {
    echo
    echo "===== $(date -Is) starting $name"
  } >>"$CLUSTER_DIR/$name.log"
  # fd 9 (the ports lock) stays with this script.
  setsid "$bin" "$@" </dev/null >>"$CLUSTER_DIR/$name.log" 2>&1 9>&- &
  pid=$!
  # Until the child has exec'd, /proc/PID/cmdline is this script's, and running_pid would take the
  # component for exited (seen on a loaded machine: kubelet "exited" with an empty log). Wait for the
  # exec (or the exit) before anyone looks.
  local i
  for ((i = 0; i < 100; i++)); do
    pid_matches "$pid" "$bin" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$pid" >"$CLUSTER_DIR/$name.pid"
  log "started $name (pid $pid, log $CLUSTER_DIR/$name.log)"
}

fail_with_logs() {
  local name
  log "$1"
  for name in "${COMPONENTS[@]}"; do
    if [[ -f "$CLUSTER_DIR/$name.log" ]]; then
      printf '\n----- last lines of %s -----\n' "$CLUSTER_DIR/$name.log" >&2
      tail -n 30 "$CLUSTER_DIR/$name.log" >&2
    fi
  done
  "$CLUSTER_SCRIPTS_DIR/down.sh" >&2 || true
  exit 1
}

# wait_for DESCRIPTION TIMEOUT COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
  local what="$1" timeout="$2" start=$SECONDS name
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < timeout)) || fail_with_logs "timed out after ${timeout}s waiting for $what"
    for name in "${COMPONENTS[@]}"; do
      if [[ -f "$CLUSTER_DIR/$name.pid" ]] && ! running_pid "$name" >/dev/null; then
        fail_with_logs "$name exited while waiting for $what"
      fi
    done
    sleep 0.5
  done
}

# since_last_start NAME: NAME's log since start() last started it.
since_last_start() {
  awk -v marker="starting $1" 'index($0, "===== ") == 1 && index($0, marker) { out = "" } { out = out $0 "\n" }
    END { printf "%s", out }' "$CLUSTER_DIR/$1.log"
}

# wait_bound NAME WHAT TIMEOUT COMMAND...: like wait_for, for NAME that was just started; returns 1
# when NAME exited because a port was taken (its log since the start says "address already in use").
wait_bound() {
  local name="$1" what="$2" timeout="$3" start=$SECONDS
  shift 3
  until "$@" >/dev/null 2>&1 && running_pid "$name" >/dev/null; do
    if ! running_pid "$name" >/dev/null; then
      if since_last_start "$name" | grep 'address already in use' >/dev/null; then
        log "$name found a port taken; picking other ports"
        return 1
      fi
      fail_with_logs "$name exited while waiting for $what"
    fi
    ((SECONDS - start < timeout)) || fail_with_logs "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep '"health":"true"' >/dev/null; }
apiserver_ready() { [[ "$(api /readyz)" == ok ]]; }
# Our apiserver answers (with our CA) on its port, ready or not.
apiserver_listening() { api /healthz -o /dev/null; }
api_ok() { api "$1" -f -o /dev/null; }

# --- main -----------------------------------------------------------------

if [[ "${TEST_CLUSTER_SKIP_DEPS:-0}" != 1 ]]; then
  if ((NODE)); then
    "$CLUSTER_SCRIPTS_DIR/install-deps.sh" --node >/dev/null
  else
    "$CLUSTER_SCRIPTS_DIR/install-deps.sh" >/dev/null
  fi
fi

if [[ "${TEST_CLUSTER_KCM:-1}" != 0 ]]; then RUN_KCM=1; fi
if ((NODE)); then RUN_KCM=1; fi
# Build what is missing or stale first (nothing, warm): node mode checks for the binaries it runs.
KUBE_BUILD_KCM="$RUN_KCM" KUBE_BUILD_NODE="$NODE" build_kube_binaries

if ((NODE)); then
  # Checks before anything starts or is deleted; sets HOST_IP, NODE_NAME, PAUSE_IMAGE...
  node_prepare "$FRESH"
  COMPONENTS+=(kube-scheduler containerd kubelet kube-proxy)
  API_EXTRA_SANS=",IP:$HOST_IP"
fi

# Data of another Kubernetes or etcd version (etcd does not skip minors; the apiserver's
# storage is not meant to go down a version): start over.
if ((FRESH == 0)) && [[ -f "$CLUSTER_DIR/.connect-operator-test-cluster" ]] &&
  [[ "$(cat "$VERSIONS_FILE" 2>/dev/null)" != "$VERSIONS" ]]; then
  log "$CLUSTER_DIR holds a cluster of $(cat "$VERSIONS_FILE" 2>/dev/null || echo 'another version'), not $VERSIONS: deleting its data"
  FRESH=1
fi
if ((FRESH)); then
  "$CLUSTER_SCRIPTS_DIR/down.sh" --purge >&2
fi

mkdir -p "$CLUSTER_DIR"
touch "$MARKER"
echo "$VERSIONS" >"$VERSIONS_FILE"
load_state
if already_up; then
  log "cluster already running (apiserver https://127.0.0.1:$APISERVER_PORT)"
  print_env
  exit 0
fi
# Something half-running (e.g. apiserver died): stop what is left, keep the data.
"$CLUSTER_SCRIPTS_DIR/down.sh" >&2

[[ -x "$ETCD_BIN" ]] || die "$ETCD_BIN missing (build-kube.sh builds it)"

# Ports: TEST_CLUSTER_*_PORT, else the previous ones (stable kubeconfig); the next
# free port when taken. Between picking a free port and the process binding it another
# up.sh could pick the same one: runs hold a lock over that window; anything else that
# takes a port meanwhile makes the start fail with "address already in use", and it is
# retried on the next ports.
ETCD_PORT="${TEST_CLUSTER_ETCD_PORT:-${ETCD_PORT:-22379}}"
ETCD_PEER_PORT="${TEST_CLUSTER_ETCD_PEER_PORT:-${ETCD_PEER_PORT:-22380}}"
APISERVER_PORT="${TEST_CLUSTER_APISERVER_PORT:-${APISERVER_PORT:-26443}}"
make_pki
if ((NODE)); then node_make_pki; fi
started=$SECONDS
mkdir -p "$CACHE"
exec 9>"$PORTS_LOCK"
flock -w 600 9 || die "another up.sh has held $PORTS_LOCK for 10 minutes"
mkdir -p "$CLUSTER_DIR/etcd"
chmod 700 "$CLUSTER_DIR/etcd"
for ((try = 1; ; try++)); do
  ((try <= PORT_TRIES)) || fail_with_logs "etcd found its ports taken $PORT_TRIES times"
  ETCD_PORT="$(pick_port "$ETCD_PORT")"
  ETCD_PEER_PORT="$(pick_port "$ETCD_PEER_PORT" "$ETCD_PORT")"
  start etcd "$ETCD_BIN" \
    --name=connect-operator-test \
    --data-dir="$CLUSTER_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="connect-operator-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --logger=zap --log-outputs=stderr
  wait_bound etcd "etcd on 127.0.0.1:$ETCD_PORT" 30 etcd_healthy && break
  ETCD_PORT=$((ETCD_PORT + 1)) ETCD_PEER_PORT=$((ETCD_PEER_PORT + 1))
done

# Node mode: reachable from pods (bind all, advertise the host address; the `kubernetes`
# service's endpoint), ServiceAccount admission (token volumes), apiserver -> kubelet
# (logs, exec) with a client cert, verifying the kubelet's serving cert.
if ((NODE)); then
  APISERVER_MODE_ARGS=(
    --bind-address=0.0.0.0
    --advertise-address="$HOST_IP"
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
    --kubelet-certificate-authority="$PKI/ca.crt"
    "--kubelet-preferred-address-types=InternalIP,Hostname"
  )
  KCM_MODE_ARGS=(
    "--controllers=*"
    --node-monitor-period=2s
    --cluster-signing-cert-file="$PKI/ca.crt"
    --cluster-signing-key-file="$PKI/ca.key"
  )
else
  APISERVER_MODE_ARGS=(
    --bind-address=127.0.0.1
    --advertise-address=127.0.0.1
    # The kubernetes Service's endpoint may not be a loopback address (1.2x+); no pod needs it here.
    --endpoint-reconciler-type=none
    --disable-admission-plugins=ServiceAccount
  )
  KCM_MODE_ARGS=("--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token")
fi
for ((try = 1; ; try++)); do
  ((try <= PORT_TRIES)) || fail_with_logs "kube-apiserver found its port taken $PORT_TRIES times"
  APISERVER_PORT="$(pick_port "$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT")"
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' \
    "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$PORTS_FILE"
  write_kubeconfig
  start kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    "${APISERVER_MODE_ARGS[@]}" \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --token-auth-file="$TOKEN_FILE" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --profiling=false
  # Once it answers on its port (any TLS answer) the port is its own: the lock can go.
  wait_bound kube-apiserver "kube-apiserver on 127.0.0.1:$APISERVER_PORT" "$READY_TIMEOUT" apiserver_listening && break
  APISERVER_PORT=$((APISERVER_PORT + 1))
done
flock -u 9
exec 9>&-
wait_for "kube-apiserver /readyz on https://127.0.0.1:$APISERVER_PORT" "$READY_TIMEOUT" apiserver_ready

if ((RUN_KCM)); then
  start kube-controller-manager "$KUBE_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false \
    --secure-port=0 \
    "${KCM_MODE_ARGS[@]}" \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=false
fi
if ((NODE)); then
  start kube-scheduler "$KUBE_BIN_DIR/kube-scheduler" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false \
    --secure-port=0
fi

# Usable for the tests: default namespace, CRD API, and (with the controller
# manager) the default service account.
wait_for "namespace default" 60 api_ok /api/v1/namespaces/default
wait_for "the apiextensions.k8s.io/v1 API" 60 api_ok /apis/apiextensions.k8s.io/v1
if ((RUN_KCM)); then
  wait_for "service account default/default" 60 api_ok /api/v1/namespaces/default/serviceaccounts/default
fi
if ((NODE)); then
  node_start
  log "node $NODE_NAME Ready: kubelet $HOST_IP:$KUBELET_PORT, containerd $CTR_SOCK, pods $POD_CIDR on $NODE_BRIDGE"
fi

log "cluster ready in $((SECONDS - started))s: apiserver https://127.0.0.1:$APISERVER_PORT, etcd 127.0.0.1:$ETCD_PORT"
print_env

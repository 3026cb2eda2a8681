#!/usr/bin/env bash
# Smoke test of the test cluster's node (start it with `up.sh --node` first):
#  - the node is Ready
#  - the image archive is imported into the node's containerd (never pulled)
#  - from the host: https://10.96.0.1:443 (the `kubernetes` service, through
#    kube-proxy's rules) and https://<host address>:<apiserver port> verify against
#    the cluster CA (the apiserver certificate names both)
#  - a Deployment's pod runs; `kubectl logs` and `kubectl exec` work (apiserver ->
#    kubelet); in the pod, the service account token is mounted and the apiserver
#    answers at https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with it;
#    a TCP (HTTP) server on the host address answers the pod
#  - `kubectl delete pod` gets the pod replaced by a new Ready one
#
# Usage: tests/cluster/node-smoke.sh [IMAGE_ARCHIVE [IMAGE_NAME]]
#   IMAGE_ARCHIVE  docker save or OCI layout tar (default $NODE_SMOKE_IMAGE_TAR) of an
#                  image with /bin/sh, wget (with https, e.g. busybox + ssl_client),
#                  cat, sleep (busybox 1.35's wget crashes with -T and https: not used)
#   IMAGE_NAME     its name (default $NODE_SMOKE_IMAGE, else the name in the archive)
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=tests/cluster/node.sh
source "$CLUSTER_SCRIPTS_DIR/node.sh"

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 0
    ;;
esac
IMAGE_TAR="${1:-${NODE_SMOKE_IMAGE_TAR:-}}"
IMAGE_NAME="${2:-${NODE_SMOKE_IMAGE:-}}"
[[ -n "$IMAGE_TAR" ]] || die "give an image archive (argument or NODE_SMOKE_IMAGE_TAR; try --help)"

export KUBECONFIG="${KUBECONFIG:-$CLUSTER_DIR/kubeconfig}"
export PATH="$CACHE_BIN:$PATH"
[[ -f "$NODE_ENV_FILE" ]] || die "no node in $CLUSTER_DIR: start the cluster with tests/cluster/up.sh --node"
node_load_settings
# shellcheck disable=SC1090,SC1091
source "$CLUSTER_DIR/ports.env"
# shellcheck disable=SC1090
source "$NODE_ENV_FILE" # HOST_IP
NS="node-smoke-$$"
SERVER_DIR="$(mktemp -d)"
SERVER_PID=""
T0=$SECONDS

cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$SERVER_DIR"
  kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { log "[$((SECONDS - T0))s] $*"; }

# wait_until DESCRIPTION TIMEOUT COMMAND...
wait_until() {
  local what="$1" timeout="$2" start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < timeout)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.5
  done
}

step "node $NODE_NAME"
kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=60s >&2
kubectl get nodes -o wide >&2

step "importing $IMAGE_TAR"
IMAGE="$("$CLUSTER_SCRIPTS_DIR/load-image.sh" "$IMAGE_TAR" ${IMAGE_NAME:+"$IMAGE_NAME"})"

step "host -> https://$SERVICE_IP_APISERVER:443 and https://$HOST_IP:$APISERVER_PORT (verified with the cluster CA)"
for url in "https://$SERVICE_IP_APISERVER:443/version" "https://$HOST_IP:$APISERVER_PORT/version"; do
  curl -fsS --max-time 5 --cacert "$CLUSTER_DIR/pki/ca.crt" "$url" | grep '"gitVersion"' >/dev/null ||
    die "$url did not answer with the version"
done

# A TCP server on the host address (where the Connect emulator listens in the e2e tests).
TOKEN="node-smoke-$RANDOM$RANDOM"
printf '%s' "$TOKEN" >"$SERVER_DIR/token"
python3 - "$HOST_IP" "$SERVER_DIR" >"$SERVER_DIR/server.log" 2>&1 <<'PY' &
import functools, http.server, os, sys
host, root = sys.argv[1], sys.argv[2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = http.server.ThreadingHTTPServer((host, 0), handler)
with open(os.path.join(root, "port.tmp"), "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(os.path.join(root, "port.tmp"), os.path.join(root, "port"))
srv.serve_forever()
PY
SERVER_PID=$!
wait_until "the host test server" 10 test -s "$SERVER_DIR/port"
SERVER_PORT="$(cat "$SERVER_DIR/port")"

step "namespace $NS (and its service account)"
kubectl create namespace "$NS" >&2
# The account must exist before a pod uses it (its token is projected by the kubelet, 1.24+).
sa_ready() { kubectl get -n "$NS" serviceaccount default >/dev/null 2>&1; }
wait_until "service account $NS/default" 60 sa_ready

step "deployment node-smoke ($IMAGE)"
kubectl apply -n "$NS" -f - >&2 <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: node-smoke
spec:
  replicas: 1
  selector:
    matchLabels: {app: node-smoke}
  template:
    metadata:
      labels: {app: node-smoke}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: $IMAGE
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo node-smoke-started; while true; do sleep 1; done"]
EOF
if ! kubectl rollout status -n "$NS" deployment/node-smoke --timeout=120s >&2; then
  kubectl describe pods -n "$NS" >&2 || true
  die "the deployment's pod did not become Ready (see the events above; logs in $CLUSTER_DIR/kubelet.log, containerd.log)"
fi

ready_pod() {
  # shellcheck disable=SC2016  # a Go template
  kubectl get pods -n "$NS" -l app=node-smoke -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{$n := .metadata.name}}{{range .status.conditions}}{{if and (eq .type "Ready") (eq .status "True")}}{{$n}}{{"\n"}}{{end}}{{end}}{{end}}{{end}}'
}
POD="$(ready_pod | sed -n 1p)"
[[ -n "$POD" ]] || die "no Ready pod after the rollout"
kubectl get pods -n "$NS" -o wide >&2

step "kubectl logs $POD"
wait_until "the pod's first log line" 30 sh -c "kubectl logs -n '$NS' '$POD' | grep -x node-smoke-started >/dev/null"

step "kubectl exec: the apiserver at https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT with the service account token"
# shellcheck disable=SC2016  # expanded in the pod
out="$(timeout 60 kubectl exec -n "$NS" "$POD" -- sh -c '
  sa=/var/run/secrets/kubernetes.io/serviceaccount
  echo "namespace=$(cat $sa/namespace) host=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
  wget -qO- --no-check-certificate --header "Authorization: Bearer $(cat $sa/token)" \
    "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api"')" || die "the pod could not reach the apiserver: $out"
log "$(head -n1 <<<"$out")"
grep -q "^namespace=$NS host=$SERVICE_IP_APISERVER:443\$" <<<"$out" || die "unexpected service account/env in the pod: $out"
grep -q '"kind": "APIVersions"' <<<"$out" || die "the apiserver did not answer the pod with its token: $out"

step "kubectl exec: the host's TCP server at $HOST_IP:$SERVER_PORT"
got="$(timeout 60 kubectl exec -n "$NS" "$POD" -- wget -qO- "http://$HOST_IP:$SERVER_PORT/token")" ||
  die "the pod could not reach $HOST_IP:$SERVER_PORT"
[[ "$got" == "$TOKEN" ]] || die "the host server answered '$got', expected '$TOKEN'"

step "kubectl delete pod $POD: the deployment replaces it"
kubectl delete pod -n "$NS" "$POD" --wait=false >&2
replaced() { local p; p="$(ready_pod | sed -n 1p)"; [[ -n "$p" && "$p" != "$POD" ]]; }
wait_until "a new Ready pod replacing $POD" 120 replaced
NEW_POD="$(ready_pod | sed -n 1p)"
kubectl get pods -n "$NS" -o wide >&2
step "$NEW_POD Ready; waiting for $POD to be gone"
wait_until "$POD to be gone" 60 sh -c "! kubectl get pod -n '$NS' '$POD' >/dev/null 2>&1"

step "node smoke test passed (new pod $NEW_POD)"

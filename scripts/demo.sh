#!/usr/bin/env bash
# `make demo`: the local cluster (already up), the Connect emulator, the CRD, the operator, the samples.
# Usage: scripts/demo.sh up|down
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=target/demo
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mkdir -p "$DEMO_DIR"
# shellcheck disable=SC1091
source target/test-cluster/env

stop() {
  for name in operator emulator; do
    if [[ -f "$DEMO_DIR/$name.pid" ]]; then
      pid=$(cat "$DEMO_DIR/$name.pid")
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "connect-"; then kill "$pid" || true; fi
      rm -f "$DEMO_DIR/$name.pid"
    fi
  done
}

case "${1:-up}" in
  down) stop; echo "demo stopped (the cluster keeps running: make cluster-down)"; exit 0 ;;
  up) ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

stop
port="${CONNECT_EMULATOR_PORT:-8787}"
"$TARGET_DIR/debug/connect-emulator" --listen "127.0.0.1:$port" >"$DEMO_DIR/emulator.log" 2>&1 &
echo $! >"$DEMO_DIR/emulator.pid"
kubectl apply --validate=false -f crds/securityprofile.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/securityprofiles.connect.cloud-operators.dev >/dev/null
AWS_ENDPOINT_URL_CONNECT="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true \
  "$TARGET_DIR/debug/connect-operator" run >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"
kubectl apply -f deploy/samples/
kubectl wait --for=condition=Ready --timeout=60s csp --all
kubectl get csp
cat <<MSG

The emulator listens on http://127.0.0.1:$port (its state: curl -s http://127.0.0.1:$port/_emulator/state).
Logs: $DEMO_DIR/operator.log, $DEMO_DIR/emulator.log. Use the cluster with:
  source target/test-cluster/env
Stop with: make demo-down (and make cluster-down)
MSG

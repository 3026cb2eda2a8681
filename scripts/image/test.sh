#!/usr/bin/env bash
# Checks the images scripts/image/build.sh makes (`make image-test`):
#  - reproducible: two builds (same commit, same binary) give byte-identical archives and digests;
#  - contents: no shell or package manager, the binary and the base files in place, the config
#    (user 65532:65532 / 65535:65535, entrypoint, cmd, port, labels), a docker-archive with RepoTags;
#  - containerd imports both archive formats under their names, and runs them read-only as the
#    image's user: `/connect-operator --version` and `crd`, `/pause -v`, and /pause as uid 65535
#    until SIGTERM.
# containerd runs privately for the test (its own root, state, socket and runc root under a temp
# dir), never touching a system containerd, and is stopped at the end.
#
# Usage: scripts/image/test.sh [--binary PATH]   (default: the binary build.sh takes)
# Runs as root (containerd, runc). Prints "N passed, N failed"; exits 1 when a check failed.
set -euo pipefail
umask 022
start=$(date +%s)

# shellcheck source=scripts/image/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/image/names.sh
source "$IMAGE_SCRIPTS_DIR/names.sh"

binary="$IMAGE_DEFAULT_BINARY"
case "${1:-}" in
  --binary) binary="${2:?--binary needs a path}" ;;
  --binary=*) binary="${1#*=}" ;;
  "") ;;
  *) echo "usage: $0 [--binary PATH]" >&2 && exit 2 ;;
esac
[[ $EUID -eq 0 ]] || image_die "run as root (containerd and runc)"
[[ -f "$binary" ]] || image_die "no operator binary at $binary: $IMAGE_BUILD_HINT"
need_tools containerd:containerd ctr:containerd containerd-shim-runc-v2:containerd runc:runc \
  skopeo:skopeo python3:python3

T="$(mktemp -d /tmp/image-test.XXXXXX)"
CTR_PID=""
cleanup() {
  if [[ -n "$CTR_PID" ]]; then
    ctr_ tasks ls -q 2>/dev/null | while read -r t; do
      ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true
      sleep 0.2
      ctr_ tasks delete "$t" >/dev/null 2>&1 || true
    done
    ctr_ containers ls -q 2>/dev/null | xargs -r "${CTR[@]}" containers rm >/dev/null 2>&1 || true
    kill "$CTR_PID" 2>/dev/null || true
    wait "$CTR_PID" 2>/dev/null || true
  fi
  # Whatever containerd left mounted under the temp dir (snapshots), deepest first.
  awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

passed=0 failed=0
# check NAME COMMAND...: runs COMMAND; prints ok/not ok with its output on failure.
check() {
  local name="$1" output line
  shift
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    printf 'ok - %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'not ok - %s\n' "$name"
    while IFS= read -r line; do printf '    %s\n' "$line"; done <<<"$output"
  fi
}

# --- two builds ---------------------------------------------------------------------------------------
# A private copy, so that a rebuild of the binary during the test cannot make the builds differ.
cp "$binary" "$T/connect-operator"
version="$("$T/connect-operator" --version | awk '{ print $2 }')"
t0=$(date +%s)
"$IMAGE_SCRIPTS_DIR/build.sh" all --binary "$T/connect-operator" --out "$T/a" >"$T/build-a.log" 2>&1 ||
  { cat "$T/build-a.log" >&2; image_die "build failed"; }
t1=$(date +%s)
sleep 1 # a build that stamped the wall clock anywhere would now differ
"$IMAGE_SCRIPTS_DIR/build.sh" all --binary "$T/connect-operator" --out "$T/b" >"$T/build-b.log" 2>&1 ||
  { cat "$T/build-b.log" >&2; image_die "build failed"; }
sed -n '/^[^[]/p' "$T/build-a.log"
echo "build: $((t1 - t0))s"

digest() { sed -n 's/^IMAGE_DIGEST=//p' "$1"; }
for name in connect-operator pause; do
  check "$name: same manifest digest from two builds ($(digest "$T/a/$name.env"))" \
    test "$(digest "$T/a/$name.env")" == "$(digest "$T/b/$name.env")"
  check "$name: byte-identical OCI archives from two builds" cmp "$T/a/$name.oci.tar" "$T/b/$name.oci.tar"
  check "$name: byte-identical docker-archives from two builds" cmp "$T/a/$name.docker.tar" "$T/b/$name.docker.tar"
done

# --- contents and config ------------------------------------------------------------------------------
# inspect LAYOUT CHECK...: python checks on the image's files (all layers) and config.
inspect() {
  python3 - "$@" <<'PY'
import gzip, json, os, sys, tarfile

layout, checks = sys.argv[1], sys.argv[2:]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":", 1))
(desc,) = json.load(open(os.path.join(layout, "index.json")))["manifests"]
manifest = json.load(open(blob(desc["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
files = {}
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:gz") as t:
        for m in t:
            files["/" + m.name.lstrip("./")] = m
cfg = config["config"]
for c in checks:
    if not eval(c, {"files": files, "cfg": cfg, "config": config, "manifest": manifest}):
        sys.exit(f"failed: {c}")
PY
}
op="$T/a/connect-operator.oci"
check "connect-operator: no shell, no package manager" inspect "$op" \
  'not [p for p, m in files.items() if not m.isdir() and p.rsplit("/", 1)[-1] in ("sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg")]'
check "connect-operator: /connect-operator (0755), libc, libgcc_s, CA bundle, /tmp 1777, nonroot home" inspect "$op" \
  'files["/connect-operator"].mode == 0o755' \
  '"/lib/x86_64-linux-gnu/libc.so.6" in files and "/lib/x86_64-linux-gnu/libgcc_s.so.1" in files' \
  'files["/lib64/ld-linux-x86-64.so.2"].issym()' \
  'files["/etc/ssl/certs/ca-certificates.crt"].size > 100000' \
  'files["/tmp"].mode == 0o1777' \
  'files["/home/nonroot"].uid == 65532 and files["/home/nonroot"].gid == 65532' \
  'not [p for p in files if p.startswith(("/usr/share/man/", "/usr/share/locale/", "/usr/lib/x86_64-linux-gnu/gconv/"))]'
# /etc/passwd and /etc/group as the docker-archive's layers hold them.
accounts() {
  local layer
  while read -r layer; do
    tar -xOf "$T/a/connect-operator.docker.tar" "$layer" | tar -xO --ignore-failed-read etc/passwd etc/group 2>/dev/null || true
  done < <(tar -xOf "$T/a/connect-operator.docker.tar" manifest.json | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)[0]["Layers"]))')
}
has_nonroot() {
  local a
  a="$(accounts)"
  grep -qx 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' <<<"$a" && grep -qx 'nonroot:x:65532:' <<<"$a"
}
check "connect-operator: /etc/passwd and /etc/group have nonroot 65532" has_nonroot
check "connect-operator: config (user 65532:65532, entrypoint, cmd, port 8080, env, labels)" inspect "$op" \
  'cfg["User"] == "65532:65532"' \
  'cfg["Entrypoint"] == ["/connect-operator"] and cfg["Cmd"] == ["run"]' \
  'list(cfg["ExposedPorts"]) == ["8080/tcp"]' \
  '"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg["Env"]' \
  "cfg['Labels']['org.opencontainers.image.version'] == '$version'" \
  "cfg['Labels']['org.opencontainers.image.licenses'] == 'Apache-2.0'" \
  "cfg['Labels']['org.opencontainers.image.revision'] == '$(git -C "$IMAGE_REPO_ROOT" rev-parse HEAD)'" \
  "config['architecture'] == 'amd64' and config['os'] == 'linux'"
check "pause: only /pause, config (user 65535:65535, entrypoint /pause)" inspect "$T/a/pause.oci" \
  'set(files) == {"/", "/pause"} and files["/pause"].mode == 0o755' \
  'cfg["User"] == "65535:65535" and cfg["Entrypoint"] == ["/pause"]'
for name in connect-operator pause; do
  ref="$(sed -n 's/^IMAGE_REF=//p' "$T/a/$name.env")"
  check "$name: docker-archive manifest.json (Config, RepoTags [$ref], Layers) and skopeo inspect" python3 - \
    "$T/a/$name.docker.tar" "$ref" <<'PY'
import json, subprocess, sys, tarfile
path, ref = sys.argv[1], sys.argv[2]
with tarfile.open(path) as t:
    (entry,) = json.load(t.extractfile("manifest.json"))
    names = set(t.getnames())
assert entry["RepoTags"] == [ref], entry
assert entry["Config"] in names and entry["Layers"] and all(l in names for l in entry["Layers"]), entry
info = json.loads(subprocess.check_output(["skopeo", "inspect", f"docker-archive:{path}"]))
assert len(info["Layers"]) == len(entry["Layers"]), info
PY
done

# --- containerd ---------------------------------------------------------------------------------------
mkdir -p "$T/ctr"
cat >"$T/ctr/config.toml" <<EOF
version = 2
root = "$T/ctr/root"
state = "$T/ctr/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/ctr/containerd.sock"
[ttrpc]
  address = "$T/ctr/containerd.sock.ttrpc"
EOF
containerd --config "$T/ctr/config.toml" >"$T/ctr/containerd.log" 2>&1 &
CTR_PID=$!
CTR=(ctr --address "$T/ctr/containerd.sock" -n k8s.io)
ctr_() { "${CTR[@]}" "$@"; }
for _ in $(seq 50); do
  ctr_ version >/dev/null 2>&1 && break
  kill -0 "$CTR_PID" 2>/dev/null || { cat "$T/ctr/containerd.log" >&2; image_die "containerd exited"; }
  sleep 0.2
done
ctr_ version >/dev/null || image_die "containerd did not answer on $T/ctr/containerd.sock"
RUN=(run --runc-root "$T/ctr/runc" --fifo-dir "$T/ctr/fifo")

in_ctr() { ctr_ images ls -q | grep -xF -- "$1" >/dev/null; }
ctr_digest_is() { [[ "$(ctr_ images ls | awk -v ref="$1" '$1 == ref { print $3 }')" == "$2" ]]; }
for format in docker oci; do
  for name in connect-operator pause; do
    check "ctr -n k8s.io images import --all-platforms $name.$format.tar" \
      ctr_ images import --all-platforms "$T/a/$name.$format.tar"
  done
  check "ctr images ls has $OPERATOR_IMAGE ($format archive)" in_ctr "$OPERATOR_IMAGE"
  check "ctr images ls has $PAUSE_IMAGE ($format archive)" in_ctr "$PAUSE_IMAGE"
done
# From the OCI archives, containerd keeps the very manifests build.sh printed.
check "ctr images ls: $OPERATOR_IMAGE is $(digest "$T/a/connect-operator.env")" \
  ctr_digest_is "$OPERATOR_IMAGE" "$(digest "$T/a/connect-operator.env")"
check "ctr images ls: $PAUSE_IMAGE is $(digest "$T/a/pause.env")" \
  ctr_digest_is "$PAUSE_IMAGE" "$(digest "$T/a/pause.env")"

operator_version() {
  local out
  out="$(ctr_ "${RUN[@]}" --rm --read-only "$OPERATOR_IMAGE" image-test-version /connect-operator --version)"
  echo "$out"
  [[ "$out" == "connect-operator $version" ]]
}
check "ctr run --read-only $OPERATOR_IMAGE /connect-operator --version" operator_version
operator_crd() {
  ctr_ "${RUN[@]}" --rm --read-only "$OPERATOR_IMAGE" image-test-crd /connect-operator crd >"$T/crd.yaml"
  grep -q '^kind: CustomResourceDefinition' "$T/crd.yaml"
}
check "ctr run --read-only $OPERATOR_IMAGE /connect-operator crd (prints the CRD)" operator_crd
operator_spec() {
  ctr_ containers create --read-only "$OPERATOR_IMAGE" image-test-spec >/dev/null
  ctr_ containers info image-test-spec >"$T/spec.json"
  ctr_ containers rm image-test-spec >/dev/null
  python3 - "$T/spec.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))["Spec"]
user = spec["process"]["user"]
assert (user["uid"], user["gid"]) == (65532, 65532), user
assert spec["root"]["readonly"] is True, spec["root"]
assert spec["process"]["args"] == ["/connect-operator", "run"], spec["process"]["args"]
PY
}
check "the operator's container: user 65532:65532, read-only rootfs, args [/connect-operator run]" operator_spec

pause_version() {
  local out
  out="$(ctr_ "${RUN[@]}" --rm --read-only "$PAUSE_IMAGE" image-test-pause-v /pause -v)"
  echo "$out"
  [[ "$out" == "pause.c v$PAUSE_VERSION-"* ]]
}
check "ctr run --read-only $PAUSE_IMAGE /pause -v" pause_version
pause_task() { ctr_ tasks ls | awk -v s="$1" '$1 == "image-test-pause" && $3 == s { print $2 }'; }
pause_runs_as_65535() {
  local pid=""
  ctr_ "${RUN[@]}" -d --read-only "$PAUSE_IMAGE" image-test-pause >/dev/null
  for _ in $(seq 25); do
    pid="$(pause_task RUNNING)"
    [[ -n "$pid" ]] && break
    sleep 0.2
  done
  sleep 1 # still running a second later
  [[ -n "$pid" && "$(pause_task RUNNING)" == "$pid" ]] && grep -E '^(Uid|Gid):' "/proc/$pid/status" &&
    grep -Eq '^Uid:[[:space:]]+65535[[:space:]]' "/proc/$pid/status"
}
check "ctr run -d $PAUSE_IMAGE: /pause keeps running, as uid 65535" pause_runs_as_65535
pause_stops_on_sigterm() {
  ctr_ tasks kill -s TERM image-test-pause
  for _ in $(seq 25); do
    if ctr_ tasks ls | awk '$1 == "image-test-pause" { print $3 }' | grep -x STOPPED >/dev/null; then
      ctr_ tasks delete image-test-pause >/dev/null 2>&1 || true
      ctr_ containers rm image-test-pause
      return 0
    fi
    sleep 0.2
  done
  return 1
}
check "/pause stops on SIGTERM" pause_stops_on_sigterm

echo "image-test: $((passed + failed)) checks in $(($(date +%s) - start))s"
echo "$passed passed, $failed failed"
((failed == 0))

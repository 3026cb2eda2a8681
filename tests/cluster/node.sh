# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# The test cluster's node (up.sh --node): containerd + runc + CNI bridge, kubelet,
# kube-proxy. Sourced by up.sh, down.sh, load-image.sh and node-smoke.sh after
# common.sh; do not run it.
#
# What the machine needs (node_check_host checks it and names what is missing):
#  - root, Linux with overlayfs, veth and bridge, br_netfilter (/proc/sys/net/bridge),
#    iptables (the nf_tables backend of Debian's iptables 1.8 is fine; the nat,
#    filter and mangle tables with the addrtype, comment, conntrack, mark,
#    multiport, statistic matches and the MASQUERADE/MARK targets kube-proxy uses)
#  - cgroups: the unified cgroup v2 hierarchy, or cgroup v1 hierarchies mounted under
#    /sys/fs/cgroup for cpu, cpuacct, cpuset, memory, pids, devices, freezer. Kubelet 1.35+
#    refuses cgroup v1 unless its configuration says failCgroupV1: false, which ours does on
#    a v1 host (cgroup v1 is deprecated upstream, in kubelet, containerd 2 and runc 1.4; it
#    still works, with warnings in their logs)
#  - containerd 2 and runc, built from their Go modules by build-kube.sh --node into
#    $NODE_RUNTIME_BIN_DIR (Debian bookworm's containerd 1.6 is older than kubelet 1.36+
#    supports); Debian packages containernetworking-plugins, iptables, libseccomp-dev
#    (install-deps.sh --node installs them). up.sh runs its own containerd with root, state
#    and socket under $CLUSTER_DIR, runc state under it too, network namespaces under its state
#  - CAP_SYS_RESOURCE is optional (without it containerd's restrict_oom_score_adj is
#    set, and kubelet logs that it cannot set rlimits/oom_score_adj)
#  - a pause image archive (TEST_CLUSTER_PAUSE_IMAGE_TAR): images are imported
#    into containerd, never pulled
#
# What it changes on the host (down.sh undoes it): sysctls net.ipv4.ip_forward=1,
# net.bridge.bridge-nf-call-iptables=1, and what kubelet/kube-proxy set themselves
# (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops,
# kernel.keys.root_max*, net.ipv4.conf.all.route_localnet) -- the values found
# first are saved and restored; the bridge $NODE_BRIDGE; cgroups under
# $NODE_CGROUP_ROOT in every hierarchy; the KUBE-* iptables chains; pod logs in
# /var/log/pods and /var/log/containers (kubelet's defaults; removed by
# down.sh --purge for this cluster's pods).
#
# One node cluster per machine: the host-global names are configurable
# (TEST_CLUSTER_NODE_BRIDGE, TEST_CLUSTER_POD_CIDR, TEST_CLUSTER_NODE_CGROUP_ROOT; ports
# are picked free), but every kubelet deletes the /var/log/pods directories of pods
# it does not know, so a second node would break the first one's `kubectl logs`.
# Default-mode clusters (other CLUSTER_DIRs) run beside a node cluster fine.

# containerd, its shim, ctr and runc: ours, built from their Go modules (build-kube.sh --node).
PATH="$NODE_RUNTIME_BIN_DIR:$PATH"
NODE_DIR="$CLUSTER_DIR/node"
NODE_ENV_FILE="$CLUSTER_DIR/node.env"
CTR_DIR="$NODE_DIR/containerd"
CTR_CONFIG="$CTR_DIR/config.toml"
CTR_SOCK="$CTR_DIR/containerd.sock"
RUNC_ROOT="$NODE_DIR/runc"
CNI_CONF_DIR="$NODE_DIR/cni/net.d"
CNI_IPAM_DIR="$NODE_DIR/cni/ipam"
CNI_BIN_DIR="${TEST_CLUSTER_CNI_BIN_DIR:-/usr/lib/cni}"
KUBELET_ROOT="$NODE_DIR/kubelet"
KUBELET_CONFIG="$NODE_DIR/kubelet-config.yaml"
KUBELET_KUBECONFIG="$NODE_DIR/kubelet.kubeconfig"
SYSCTL_SAVED="$NODE_DIR/sysctl.orig"
# Sysctls up.sh, kubelet (setupKernelTunables) and kube-proxy may change.
NODE_SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet
  vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
SERVICE_CIDR="${SERVICE_CIDR:-10.96.0.0/12}"
SERVICE_IP_APISERVER=10.96.0.1

# Settings the running node was started with (down.sh needs them even when the
# environment differs); the environment wins for a new start. With an argument 1:
# ignore the saved ones (up.sh --fresh).
node_load_settings() {
  local saved_bridge="" saved_cidr="" saved_cgroup="" saved_name="" saved_pause=""
  if [[ "${1:-0}" != 1 && -f "$NODE_ENV_FILE" ]]; then
    # shellcheck disable=SC1090
    source "$NODE_ENV_FILE"
    saved_bridge="${NODE_BRIDGE:-}" saved_cidr="${POD_CIDR:-}" saved_cgroup="${NODE_CGROUP_ROOT:-}"
    saved_name="${NODE_NAME:-}" saved_pause="${PAUSE_IMAGE:-}"
  fi
  NODE_BRIDGE="${TEST_CLUSTER_NODE_BRIDGE:-${saved_bridge:-cotest0}}"
  POD_CIDR="${TEST_CLUSTER_POD_CIDR:-${saved_cidr:-10.88.0.0/16}}"
  NODE_CGROUP_ROOT="${TEST_CLUSTER_NODE_CGROUP_ROOT:-${saved_cgroup:-/connect-operator-test}}"
  NODE_NAME="${TEST_CLUSTER_NODE_NAME:-${saved_name:-$(hostname -s | tr '[:upper:]' '[:lower:]')}}"
  PAUSE_IMAGE="${TEST_CLUSTER_PAUSE_IMAGE:-$saved_pause}"
}

node_save_settings() {
  printf 'NODE_BRIDGE=%q\nPOD_CIDR=%q\nNODE_CGROUP_ROOT=%q\nNODE_NAME=%q\nPAUSE_IMAGE=%q\nHOST_IP=%q\n' \
    "$NODE_BRIDGE" "$POD_CIDR" "$NODE_CGROUP_ROOT" "$NODE_NAME" "$PAUSE_IMAGE" "$HOST_IP" >"$NODE_ENV_FILE"
}

ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

# Our containerd answers on its socket.
containerd_up() { [[ -S "$CTR_SOCK" ]] && ctr --address "$CTR_SOCK" --timeout 3s version >/dev/null 2>&1; }

# The host's primary IPv4 address: TEST_CLUSTER_HOST_IP, else the source address of
# the default route, else the first global address that is not on our bridge.
node_host_ip() {
  local ip=""
  if [[ -n "${TEST_CLUSTER_HOST_IP:-}" ]]; then
    echo "$TEST_CLUSTER_HOST_IP"
    return 0
  fi
  ip="$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "src") { print $(i + 1); exit } }')"
  if [[ -z "$ip" ]]; then
    ip="$(ip -4 -o addr show scope global 2>/dev/null | awk -v br="$NODE_BRIDGE" '$2 != br { sub(/\/.*/, "", $4); print $4; exit }')"
  fi
  [[ -n "$ip" ]] || return 1
  echo "$ip"
}

# Mount point of the cgroup v1 hierarchy that has controller $1 (e.g. cpu, memory, name=systemd).
cgroup_v1_mount() {
  awk -v want="$1" '{
      for (i = 1; i <= NF; i++) if ($i == "-") break
      if ($(i + 1) != "cgroup") next
      n = split($(i + 3), opts, ",")
      for (j = 1; j <= n; j++) if (opts[j] == want) { print $5; exit }
    }' /proc/self/mountinfo
}

# Every cgroup (v1 and v2) mount point under /sys/fs/cgroup.
cgroup_mounts() {
  awk '{ for (i = 1; i <= NF; i++) if ($i == "-") break
         if (($(i + 1) == "cgroup" || $(i + 1) == "cgroup2") && index($5, "/sys/fs/cgroup") == 1) print $5 }' \
    /proc/self/mountinfo | sort -u
}

# Fail, naming everything missing, when this machine cannot run the node.
node_check_host() {
  local missing=() c f
  [[ $EUID -eq 0 ]] || die "node mode needs root (containerd, kubelet, iptables, mounts)"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || missing+=("overlayfs (kernel CONFIG_OVERLAY_FS; modprobe overlay)")
  [[ -d /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || true
  [[ -d /proc/sys/net/bridge ]] || missing+=("br_netfilter: /proc/sys/net/bridge is missing (CONFIG_BRIDGE_NETFILTER; modprobe br_netfilter)")
  if [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]]; then
    for c in cpu cpuacct cpuset memory pids devices freezer; do
      [[ -n "$(cgroup_v1_mount "$c")" ]] || missing+=("cgroup v1 controller $c (not mounted under /sys/fs/cgroup)")
    done
  fi
  [[ -w /proc/sys/net/ipv4/ip_forward ]] || missing+=("a writable /proc/sys/net/ipv4/ip_forward")
  for c in containerd containerd-shim-runc-v2 ctr runc; do
    [[ -x "$NODE_RUNTIME_BIN_DIR/$c" ]] || missing+=("$NODE_RUNTIME_BIN_DIR/$c (tests/cluster/build-kube.sh --node)")
  done
  for c in iptables iptables-save iptables-restore ip mount umount; do
    command -v "$c" >/dev/null || missing+=("command $c (tests/cluster/install-deps.sh --node)")
  done
  for f in bridge host-local portmap loopback; do
    [[ -x "$CNI_BIN_DIR/$f" ]] || missing+=("CNI plugin $CNI_BIN_DIR/$f (Debian containernetworking-plugins)")
  done
  if command -v iptables >/dev/null && ! iptables -t nat -S >/dev/null 2>&1; then
    missing+=("a working iptables nat table ('iptables -t nat -S' fails: $(iptables -t nat -S 2>&1 | head -n1))")
  fi
  if ((${#missing[@]} > 0)); then
    log "node mode: this machine lacks:"
    printf '[cluster]   - %s\n' "${missing[@]}" >&2
    die "node mode prerequisites missing (see above)"
  fi
  # The socket path must fit in sockaddr_un (108 bytes, with ".ttrpc" appended).
  ((${#CTR_SOCK} <= 100)) || die "containerd socket path too long (${#CTR_SOCK} > 100 chars): $CTR_SOCK; use a shorter CLUSTER_DIR"
  ((${#NODE_BRIDGE} <= 15)) || die "TEST_CLUSTER_NODE_BRIDGE '$NODE_BRIDGE' is longer than 15 characters"
}

# The pod CIDR must not overlap the service CIDR, a host address or a route (other
# than our bridge's).
node_check_pod_cidr() {
  local nets
  nets="$({
    ip -4 -o addr show | awk -v br="$NODE_BRIDGE" '$2 != br && $2 != "lo" { print "addr " $2 " " $4 }'
    ip -4 route show | awk -v br="$NODE_BRIDGE" '$1 != "default" && index($0, " dev " br " ") == 0 { print "route - " $1 }'
  })"
  python3 - "$POD_CIDR" "$SERVICE_CIDR" "$nets" <<'PY' || die "TEST_CLUSTER_POD_CIDR=$POD_CIDR clashes (see above)"
import ipaddress, sys
pod = ipaddress.ip_network(sys.argv[1], strict=True)
svc = ipaddress.ip_network(sys.argv[2])
bad = []
if pod.overlaps(svc):
    bad.append(f"the service CIDR {svc}")
for line in sys.argv[3].splitlines():
    kind, dev, net = line.split()
    try:
        n = ipaddress.ip_network(net, strict=False)
    except ValueError:
        continue
    if n.version == 4 and pod.overlaps(n):
        bad.append(f"{kind} {net}" + (f" on {dev}" if dev != "-" else ""))
if bad:
    print(f"[cluster] pod CIDR {pod} overlaps: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

# --- host settings --------------------------------------------------------

node_save_sysctls() {
  local p
  [[ -f "$SYSCTL_SAVED" ]] && return 0
  mkdir -p "$NODE_DIR"
  for p in "${NODE_SYSCTLS[@]}"; do
    if [[ -r "/proc/sys/$p" ]]; then printf '%s=%s\n' "$p" "$(cat "/proc/sys/$p")"; fi
  done >"$SYSCTL_SAVED.tmp"
  mv -f "$SYSCTL_SAVED.tmp" "$SYSCTL_SAVED"
}

node_set_sysctl() { # node_set_sysctl PATH VALUE
  [[ "$(cat "/proc/sys/$1")" == "$2" ]] || echo "$2" >"/proc/sys/$1" || die "cannot set /proc/sys/$1=$2"
}

node_restore_sysctls() {
  local p v
  [[ -f "$SYSCTL_SAVED" ]] || return 0
  while IFS='=' read -r p v; do
    [[ -n "$p" && -w "/proc/sys/$p" ]] || continue
    if [[ "$(cat "/proc/sys/$p")" != "$v" ]]; then
      log "restoring sysctl ${p//\//.}=$v"
      echo "$v" >"/proc/sys/$p" || log "could not restore /proc/sys/$p"
    fi
  done <"$SYSCTL_SAVED"
  rm -f "$SYSCTL_SAVED"
}

# Our cgroup root in every hierarchy (kubelet --cgroup-root must exist); cpuset needs
# cpus/mems copied from the parent.
node_make_cgroup_root() {
  local m dir f
  while read -r m; do
    dir="$m$NODE_CGROUP_ROOT"
    mkdir -p "$dir" || die "cannot create cgroup $dir"
    for f in cpuset.cpus cpuset.mems; do
      if [[ -f "$dir/$f" && -z "$(cat "$dir/$f")" ]]; then cat "$m/$f" >"$dir/$f"; fi
    done
  done < <(cgroup_mounts)
}

node_remove_cgroup_root() {
  local m dir left=0
  while read -r m; do
    dir="$m$NODE_CGROUP_ROOT"
    [[ -d "$dir" ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d "$dir" ]] && left=1
  done < <(cgroup_mounts)
  ((left == 0)) || log "some cgroups under $NODE_CGROUP_ROOT are still in use (left in place)"
}

# --- PKI and config files -------------------------------------------------

# sign_cert NAME SUBJECT EXTFILE_CONTENT: $PKI/NAME.{crt,key} signed by our CA.
sign_cert() {
  local name="$1" subj="$2" ext="$PKI/$1.ext"
  printf '%s\n' "$3" >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$PKI/$name.key" \
    -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -sha256 -days 3650 -in "$PKI/$name.csr" -CA "$PKI/ca.crt" \
    -CAkey "$PKI/ca.key" -CAcreateserial -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

# cert_has CERT TEXT: CERT exists, verifies against our CA, and its text (each line
# ending in a comma) has TEXT.
cert_has() {
  [[ -f "$PKI/$1.crt" && -f "$PKI/$1.key" ]] || return 1
  openssl verify -CAfile "$PKI/ca.crt" "$PKI/$1.crt" >/dev/null 2>&1 || return 1
  openssl x509 -in "$PKI/$1.crt" -noout -text 2>/dev/null | sed 's/$/,/' | grep -F -- "$2" >/dev/null
}

# Certificates of node mode (after make_pki): the apiserver's client cert for kubelets,
# the kubelet's client cert (group system:nodes, bound to ClusterRole system:node by
# node_start) and its serving cert.
node_make_pki() {
  if ! cert_has apiserver-kubelet-client "O = system:masters,"; then
    log "generating the apiserver's kubelet client certificate"
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  fi
  if ! cert_has kubelet-client "CN = system:node:$NODE_NAME,"; then
    log "generating the kubelet's client certificate (system:node:$NODE_NAME)"
    sign_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  fi
  if ! cert_has kubelet "IP Address:$HOST_IP, DNS:$NODE_NAME,"; then
    log "generating the kubelet's serving certificate ($NODE_NAME, $HOST_IP)"
    sign_cert kubelet "/CN=$NODE_NAME" \
      "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST_IP,DNS:$NODE_NAME,IP:127.0.0.1,DNS:localhost"
  fi
}

node_write_configs() {
  local restrict_oom=false
  mkdir -p "$CTR_DIR/root" "$CTR_DIR/state" "$RUNC_ROOT" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" "$KUBELET_ROOT"
  chmod 700 "$NODE_DIR"
  # Without CAP_SYS_RESOURCE (some VM sandboxes drop it even for root) no process may
  # lower its oom_score_adj, and runc fails every sandbox ("failed to update
  # /proc/self/oom_score_adj: Permission denied"): keep containers at or above ours.
  if ! (echo -1 >/proc/self/oom_score_adj) 2>/dev/null; then
    restrict_oom=true
    log "no CAP_SYS_RESOURCE: containerd restricts containers' oom_score_adj (restrict_oom_score_adj)"
  fi
  cat >"$CTR_CONFIG" <<EOF
# containerd 2 for the connect-operator test node (written by tests/cluster/up.sh --node).
version = 3
root = "$CTR_DIR/root"
state = "$CTR_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTR_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins."io.containerd.cri.v1.runtime"]
  # network namespaces under state/netns instead of the host-global /var/run/netns
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = $restrict_oom

  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$NODE_RUNTIME_BIN_DIR/runc"
        Root = "$RUNC_ROOT"
        SystemdCgroup = false

  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF
  # containerd adds the loopback interface itself (with $CNI_BIN_DIR/loopback).
  # No ipMasq: pods reach the host ($HOST_IP) and services; nothing off the host.
  cat >"$CNI_CONF_DIR/10-connect-operator-test.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "connect-operator-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$CNI_IPAM_DIR"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  local ca_data
  ca_data="$(base64 -w0 "$PKI/ca.crt")"
  cat >"$KUBELET_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: connect-operator-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca_data
users:
- name: kubelet
  user:
    client-certificate-data: $(base64 -w0 "$PKI/kubelet-client.crt")
    client-key-data: $(base64 -w0 "$PKI/kubelet-client.key")
contexts:
- name: kubelet
  context: {cluster: connect-operator-test, user: kubelet}
current-context: kubelet
EOF
  chmod 600 "$KUBELET_KUBECONFIG"
}

node_write_kubelet_config() {
  local fail_cgroup_v1=true
  if [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]]; then fail_cgroup_v1=false; fi
  cat >"$KUBELET_CONFIG" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$HOST_IP"
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization:
  mode: Webhook
containerRuntimeEndpoint: "unix://$CTR_SOCK"
imageServiceEndpoint: "unix://$CTR_SOCK"
runtimeRequestTimeout: 5m
registerNode: true
cgroupDriver: cgroupfs
# Kubelet 1.35+ refuses to start on cgroup v1 unless told; on a cgroup v1 host (this
# machine's kernel mounts only v1 hierarchies) it is told, and warns.
failCgroupV1: $fail_cgroup_v1
cgroupsPerQOS: true
cgroupRoot: "$NODE_CGROUP_ROOT"
failSwapOn: false
# The disk of a dev machine may well be 50-80% full: evict only when nearly full,
# and never garbage-collect images (they are imported, not pullable).
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  nodefs.inodesFree: "2%"
  imagefs.available: "2%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
clusterDomain: cluster.local
# Status is computed this often but only posted when it changed (or every
# nodeStatusReportFrequency, 5m): a new node turns Ready sooner than with 10s.
nodeStatusUpdateFrequency: 3s
resolvConf: /etc/resolv.conf
maxPods: 110
EOF
}

# --- images ---------------------------------------------------------------

# The name containerd's CRI plugin resolves REF to (docker.io/library/x:latest style).
normalize_image_ref() {
  local ref="$1" first rest
  if [[ "$ref" != */* ]]; then
    ref="docker.io/library/$ref"
  else
    first="${ref%%/*}" rest="${ref#*/}"
    if [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then
      ref="docker.io/$first/$rest"
    fi
  fi
  local last="${ref##*/}"
  if [[ "$last" != *:* && "$ref" != *@* ]]; then ref="$ref:latest"; fi
  echo "$ref"
}

# node_import_image TAR [NAME]: import an image archive (docker save or OCI layout tar)
# into the node's containerd (namespace k8s.io) and print the image's normalized name:
# NAME when given (the imported image is tagged so when the archive calls it
# otherwise), else the archive's own name. ctr's made-up names are avoided (an OCI
# archive with only a tag is imported under NAME's repository) rather than removed
# afterwards: removing a name the CRI plugin has seen can leave it resolving the
# image to that name ("image ... not found" on the next sandbox).
node_import_image() {
  local tar="$1" want="${2:-}" own out names=() base=()
  [[ -f "$tar" ]] || die "image archive not found: $tar"
  containerd_up || die "the node's containerd is not running ($CTR_SOCK): start the cluster with up.sh --node"
  own="$(archive_image_name "$tar")" || die "cannot read $tar (a docker-save or OCI layout tar?)"
  if [[ -z "$own" ]]; then
    [[ -n "$want" ]] || die "$tar does not name its image (no RepoTags, no full ref name): give the image name"
    want="$(normalize_image_ref "$want")"
    base=(--base-name "${want%:*}")
  fi
  out="$(ctr_ images import --all-platforms "${base[@]}" "$tar" 2>&1)" || die "ctr images import $tar failed: $out"
  # The imported image's name: the archive's own, else the one --base-name gave it (ctr's progress output
  # is for people: ctr 2 prints names mangled).
  if [[ -n "$own" ]]; then
    names=("$(normalize_image_ref "$own")")
  else
    mapfile -t names < <(ctr_ images ls -q 2>/dev/null | grep -F -- "${base[1]}:" || true)
  fi
  if ((${#names[@]} == 0)) || ! node_image_present "${names[0]}"; then
    die "ctr images import $tar imported no image named ${names[0]:-${base[1]}:*}: $out"
  fi
  if [[ -z "$want" ]]; then
    echo "${names[0]}"
    return 0
  fi
  want="$(normalize_image_ref "$want")"
  if ! printf '%s\n' "${names[@]}" | grep -xF -- "$want" >/dev/null; then
    ctr_ images tag --force "${names[0]}" "$want" >/dev/null || die "ctr images tag ${names[0]} $want failed"
  fi
  echo "$want"
}

node_image_present() { ctr_ images ls -q 2>/dev/null | grep -xF -- "$1" >/dev/null; }

# --- stopping (down.sh) ---------------------------------------------------

# Mount points under $CLUSTER_DIR, deepest first.
mounts_under_cluster_dir() {
  awk -v dir="$CLUSTER_DIR/" '{
      m = $5
      while (match(m, /\\[0-7][0-7][0-7]/)) {
        c = sprintf("%c", (substr(m, RSTART + 1, 1) * 64) + (substr(m, RSTART + 2, 1) * 8) + substr(m, RSTART + 3, 1))
        m = substr(m, 1, RSTART - 1) c substr(m, RSTART + 4)
      }
      if (index(m "/", dir) == 1) print length(m) "\t" m
    }' /proc/self/mountinfo | sort -u | sort -t$'\t' -s -k1,1nr | cut -f2-
}

node_unmount_all() {
  local pass m mounts=()
  for pass in 1 2 3 4 5; do
    mapfile -t mounts < <(mounts_under_cluster_dir)
    ((${#mounts[@]} == 0)) && return 0
    ((pass == 1)) && log "unmounting ${#mounts[@]} mount(s) under $CLUSTER_DIR"
    for m in "${mounts[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  mounts_under_cluster_dir | sed 's/^/[cluster] still mounted: /' >&2
  return 1
}

# Other kubelets/kube-proxies on this host (another CLUSTER_DIR): then the shared
# KUBE-* iptables chains and kernel settings are theirs too and stay.
other_node_running() {
  local pid
  for pid in $(pgrep -x kubelet 2>/dev/null || true) $(pgrep -x kube-proxy 2>/dev/null || true); do
    # A zombie (empty command line, e.g. ours not yet reaped) does not count.
    [[ -s "/proc/$pid/cmdline" ]] || continue
    pid_matches "$pid" "$CLUSTER_DIR/" || return 0
  done
  return 1
}

# Delete the KUBE-* chains kubelet and kube-proxy made (and the rules jumping to them).
node_iptables_cleanup() {
  local t chain
  if [[ -x "$KUBE_BIN_DIR/kube-proxy" ]]; then
    "$KUBE_BIN_DIR/kube-proxy" --cleanup --proxy-mode=iptables >>"$CLUSTER_DIR/kube-proxy.log" 2>&1 || true
  fi
  for t in filter nat mangle; do
    iptables -t "$t" -S 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | grep -vE '^-A KUBE-' |
      sed 's/^-A /-D /' | xargs -r -L1 iptables -t "$t" 2>/dev/null || true
    for chain in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$t" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$t" -X "$chain" 2>/dev/null || true
    done
  done
}

# Stop everything of the node; containerd's data stays unless down.sh --purge
# deletes $CLUSTER_DIR afterwards. Needs `stop` from down.sh.
node_down() {
  local pid id ids=() waited c
  [[ -f "$NODE_ENV_FILE" || -d "$NODE_DIR" || -f "$CLUSTER_DIR/kube-scheduler.pid" ]] || return 0
  node_load_settings
  for c in kube-proxy kubelet kube-scheduler; do stop "$c"; done
  [[ -f "$NODE_ENV_FILE" || -d "$NODE_DIR" ]] || return 0

  # Containers: kill their processes through our containerd (their metadata stays for
  # kubelet to clean up on the next start); then whatever is left, by our runc root.
  if containerd_up; then
    mapfile -t ids < <(ctr_ tasks ls -q 2>/dev/null)
    if ((${#ids[@]} > 0)); then
      log "killing ${#ids[@]} container(s)"
      for id in "${ids[@]}"; do ctr_ tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true; done
      for id in "${ids[@]}"; do
        for ((waited = 0; waited < 50; waited++)); do
          ctr_ tasks ls 2>/dev/null | awk -v id="$id" '$1 == id && $3 != "STOPPED" { f = 1 } END { exit !f }' || break
          sleep 0.1
        done
        ctr_ tasks delete --force "$id" >/dev/null 2>&1 || true
      done
    fi
  fi
  stop containerd
  # Shims whose containerd is gone (each names our socket on its command line).
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CTR_SOCK" 2>/dev/null || true); do
    if pid_matches "$pid" "-address $CTR_SOCK"; then
      log "killing leftover shim (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Containers whose shim is gone (e.g. containerd was killed): by our runc root.
  for ((waited = 0; waited < 5; waited++)); do
    [[ -d "$RUNC_ROOT/k8s.io" ]] || break
    mapfile -t ids < <(runc --root "$RUNC_ROOT/k8s.io" list -q 2>/dev/null)
    ((${#ids[@]} > 0)) || break
    ((waited == 0)) && log "deleting ${#ids[@]} leftover runc container(s)"
    for id in "${ids[@]}"; do
      runc --root "$RUNC_ROOT/k8s.io" delete --force "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
  done

  node_unmount_all || log "some mounts under $CLUSTER_DIR could not be unmounted"
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "deleting bridge $NODE_BRIDGE"
    ip link delete "$NODE_BRIDGE" 2>/dev/null || log "could not delete bridge $NODE_BRIDGE"
  fi
  node_remove_cgroup_root
  if other_node_running; then
    log "another kubelet/kube-proxy runs on this host: leaving the KUBE-* iptables chains and sysctls"
  else
    node_iptables_cleanup
    node_restore_sysctls
  fi
}

# Pod logs of this cluster's pods in the host-global /var/log/pods and /var/log/containers
# (kubelet's defaults): the pods containerd ever ran a sandbox for (its log
# names each one's uid) and those kubelet still has.
node_purge_pod_logs() {
  local uid d l uids=()
  mapfile -t uids < <({
    if [[ -f "$CLUSTER_DIR/containerd.log" ]]; then
      grep -o 'PodSandboxMetadata{[^}]*Uid:[0-9a-f-]\{36\}' "$CLUSTER_DIR/containerd.log" | sed 's/.*Uid://'
    fi
    for d in "$KUBELET_ROOT"/pods/*/; do
      if [[ -d "$d" ]]; then basename "$d"; fi
    done
  } | grep -xE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' | sort -u)
  for uid in "${uids[@]}"; do
    for d in /var/log/pods/*_"$uid"; do
      [[ -d "$d" ]] || continue
      for l in /var/log/containers/*.log; do
        if [[ -L "$l" && "$(readlink "$l")" == "$d/"* ]]; then rm -f "$l"; fi
      done
      rm -rf "$d"
    done
  done
  # Empty ones only (kubelet made them).
  rmdir /var/log/containers /var/log/pods 2>/dev/null || true
}

# --- starting (up.sh) -----------------------------------------------------

# The image name an archive gives (docker save: manifest.json RepoTags; OCI layout:
# index.json's io.containerd.image.name or a full org.opencontainers.image.ref.name).
archive_image_name() {
  python3 - "$1" <<'PY'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    names = {m.name.lstrip("./"): m for m in t.getmembers()}
    if "manifest.json" in names:
        for entry in json.load(t.extractfile(names["manifest.json"])):
            for tag in entry.get("RepoTags") or []:
                print(tag)
                sys.exit(0)
    if "index.json" in names:
        for m in json.load(t.extractfile(names["index.json"])).get("manifests", []):
            ann = m.get("annotations") or {}
            name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name", "")
            if "/" in name or ":" in name:
                print(name)
                sys.exit(0)
PY
}

# Before anything starts: host checks, settings, the pause image's name.
# node_prepare FRESH (1: ignore the saved settings).
node_prepare() {
  node_load_settings "${1:-0}"
  node_check_host
  HOST_IP="$(node_host_ip)" || die "cannot find this host's IPv4 address: set TEST_CLUSTER_HOST_IP"
  [[ "$HOST_IP" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "host address '$HOST_IP' is not an IPv4 address"
  [[ "$HOST_IP" != 127.* ]] || die "host address $HOST_IP is a loopback address: pods cannot reach it; set TEST_CLUSTER_HOST_IP"
  node_check_pod_cidr
  PAUSE_TAR="${TEST_CLUSTER_PAUSE_IMAGE_TAR:-}"
  if [[ -n "$PAUSE_TAR" ]]; then
    [[ -f "$PAUSE_TAR" ]] || die "TEST_CLUSTER_PAUSE_IMAGE_TAR=$PAUSE_TAR: no such file"
    if [[ -z "${TEST_CLUSTER_PAUSE_IMAGE:-}" ]]; then
      PAUSE_IMAGE="$(archive_image_name "$PAUSE_TAR")" ||
        die "cannot read $PAUSE_TAR (a docker-save or OCI layout tar?)"
      [[ -n "$PAUSE_IMAGE" ]] || die "$PAUSE_TAR does not name its image: set TEST_CLUSTER_PAUSE_IMAGE"
    fi
  elif [[ -z "$PAUSE_IMAGE" ]]; then
    die "node mode needs a pause image: set TEST_CLUSTER_PAUSE_IMAGE_TAR to its archive (docker save or OCI layout tar; e.g. from scripts/image/build.sh pause) and optionally TEST_CLUSTER_PAUSE_IMAGE to its name"
  fi
  PAUSE_IMAGE="$(normalize_image_ref "$PAUSE_IMAGE")"
  log "node mode: host address $HOST_IP, node $NODE_NAME, pod CIDR $POD_CIDR on bridge $NODE_BRIDGE, pause image $PAUSE_IMAGE"
}

# node_pick_port PREFERRED TAKEN...: like pick_port, also free on $HOST_IP.
node_pick_port() {
  local p="$1" taken=" ${*:2} "
  while port_in_use "$p" || port_in_use "$p" "$HOST_IP" || [[ "$taken" == *" $p "* ]]; do
    p=$((p + 1))
    ((p < 32768)) || die "no free port found below 32768"
  done
  echo "$p"
}

node_ready() {
  api "/api/v1/nodes/$NODE_NAME" | python3 -c '
import json, sys
n = json.load(sys.stdin)
ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in n.get("spec", {}).get("taints") or [])
sys.exit(0 if ready and not tainted else 1)'
}

# The `kubernetes` service's endpoints are exactly $HOST_IP (no stale 127.0.0.1 of a
# default-mode run of the same data).
kubernetes_endpoints_are_host() {
  api /api/v1/namespaces/default/endpoints/kubernetes | python3 -c '
import json, sys
e = json.load(sys.stdin)
ips = {a["ip"] for s in e.get("subsets") or [] for a in s.get("addresses") or []}
sys.exit(0 if ips == {sys.argv[1]} else 1)' "$HOST_IP"
}

kube_proxy_synced() {
  iptables -t nat -S 2>/dev/null | grep -F -- "--to-destination $HOST_IP:$APISERVER_PORT" >/dev/null
}

kubelet_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" | grep -x ok >/dev/null; }

# ClusterRole system:node for the group system:nodes (there is no Node authorizer).
node_rbac() {
  local code
  code="$(api /apis/rbac.authorization.k8s.io/v1/clusterrolebindings -o /dev/null -w '%{http_code}' \
    -X POST -H 'Content-Type: application/json' -d '{
      "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
      "metadata": {"name": "connect-operator-test:nodes"},
      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
      "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}]}')"
  [[ "$code" == 201 || "$code" == 409 ]] || die "creating ClusterRoleBinding connect-operator-test:nodes failed (HTTP $code)"
}

# Start containerd, kubelet and kube-proxy once the control plane is up. Uses up.sh's
# start, wait_for, wait_bound, fail_with_logs, api.
node_start() {
  local try
  node_save_settings
  node_save_sysctls
  node_set_sysctl net/ipv4/ip_forward 1
  node_set_sysctl net/bridge/bridge-nf-call-iptables 1
  node_make_cgroup_root
  node_write_configs
  node_rbac

  start containerd "$NODE_RUNTIME_BIN_DIR/containerd" --config "$CTR_CONFIG"
  wait_for "containerd on $CTR_SOCK" 60 containerd_up
  if [[ -n "$PAUSE_TAR" ]]; then
    local t0=$SECONDS
    node_import_image "$PAUSE_TAR" "$PAUSE_IMAGE" >/dev/null
    log "imported $PAUSE_TAR as $PAUSE_IMAGE in $((SECONDS - t0))s"
  fi
  node_image_present "$PAUSE_IMAGE" ||
    fail_with_logs "the pause image $PAUSE_IMAGE is not in containerd: set TEST_CLUSTER_PAUSE_IMAGE_TAR"

  # kube-proxy needs neither kubelet nor the node object (--bind-address gives the node IP).
  start kube-proxy "$KUBE_BIN_DIR/kube-proxy" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --proxy-mode=iptables \
    --cluster-cidr="$POD_CIDR" \
    --hostname-override="$NODE_NAME" \
    --bind-address="$HOST_IP" \
    --healthz-bind-address= \
    --metrics-bind-address= \
    --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 \
    --conntrack-tcp-timeout-close-wait=0 \
    --v=1

  KUBELET_PORT="${TEST_CLUSTER_KUBELET_PORT:-${KUBELET_PORT:-10250}}"
  KUBELET_HEALTHZ_PORT="${TEST_CLUSTER_KUBELET_HEALTHZ_PORT:-${KUBELET_HEALTHZ_PORT:-10248}}"
  exec 9>"$PORTS_LOCK"
  flock -w 600 9 || die "another up.sh has held $PORTS_LOCK for 10 minutes"
  for ((try = 1; ; try++)); do
    ((try <= PORT_TRIES)) || fail_with_logs "kubelet found its ports taken $PORT_TRIES times"
    KUBELET_PORT="$(node_pick_port "$KUBELET_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT")"
    KUBELET_HEALTHZ_PORT="$(node_pick_port "$KUBELET_HEALTHZ_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KUBELET_PORT")"
    node_write_kubelet_config
    start kubelet "$KUBE_BIN_DIR/kubelet" \
      --config="$KUBELET_CONFIG" \
      --kubeconfig="$KUBELET_KUBECONFIG" \
      --root-dir="$KUBELET_ROOT" \
      --cert-dir="$KUBELET_ROOT/pki" \
      --hostname-override="$NODE_NAME" \
      --node-ip="$HOST_IP" \
      --v=1
    wait_bound kubelet "kubelet healthz on 127.0.0.1:$KUBELET_HEALTHZ_PORT" "$READY_TIMEOUT" kubelet_healthy && break
    KUBELET_PORT=$((KUBELET_PORT + 1)) KUBELET_HEALTHZ_PORT=$((KUBELET_HEALTHZ_PORT + 1))
  done
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\n' "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" >>"$PORTS_FILE"
  flock -u 9
  exec 9>&-

  wait_for "node $NODE_NAME Ready (and untainted)" "$READY_TIMEOUT" node_ready
  wait_for "the kubernetes service's endpoints to be $HOST_IP" 60 kubernetes_endpoints_are_host
  wait_for "kube-proxy's rules for $SERVICE_IP_APISERVER -> $HOST_IP:$APISERVER_PORT" 60 kube_proxy_synced
}

# The running cluster is a node-mode one for these settings.
node_already_up() {
  local pid c
  pid="$(running_pid kube-apiserver)" || return 1
  pid_matches "$pid" "--advertise-address=$HOST_IP " || return 1
  for c in kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    running_pid "$c" >/dev/null || return 1
  done
  containerd_up && node_ready
}

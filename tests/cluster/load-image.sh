#!/usr/bin/env bash
# Import an image archive (docker save or OCI layout tar) into the test node's
# containerd (up.sh --node), where pods find it: the node never pulls, so use the
# printed name with imagePullPolicy IfNotPresent or Never.
#
# Usage: tests/cluster/load-image.sh ARCHIVE [NAME]
#   NAME   the image name to give it (default: the name in the archive); the
#          normalized name (docker.io/library/x:latest style) goes to stdout
set -euo pipefail

# shellcheck source=tests/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=tests/cluster/node.sh
source "$CLUSTER_SCRIPTS_DIR/node.sh"

case "${1:-}" in
  "" | -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
(($# <= 2)) || die "too many arguments (try --help)"
start=$SECONDS
ref="$(node_import_image "$1" "${2:-}")"
log "imported $1 as $ref in $((SECONDS - start))s"
echo "$ref"

# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# The names of the images scripts/image/build.sh makes. Source this file (other scripts, a node
# setup that imports the images) instead of repeating the names.
#
# The operator's repository and tag are the Helm chart's defaults (values.yaml image.repository,
# Chart.yaml appVersion), so `helm install` with the chart's defaults finds an imported image.

_image_names_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_image_chart_dir="$_image_names_dir/../../charts/connect-operator"

# ghcr.io/cloud-operators/connect-operator
OPERATOR_REPOSITORY="$(awk '/^image:/ { inside = 1; next } /^[^[:space:]#]/ { inside = 0 }
  inside && $1 == "repository:" { gsub(/"/, "", $2); print $2; exit }' "$_image_chart_dir/values.yaml")"
# The chart's appVersion (build.sh checks that it equals Cargo.toml's version).
OPERATOR_VERSION="$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2; exit }' "$_image_chart_dir/Chart.yaml")"
OPERATOR_IMAGE="$OPERATOR_REPOSITORY:$OPERATOR_VERSION"

# The pod sandbox ("pause") image, built from build/pause/linux/pause.c of the Kubernetes source
# the test cluster uses (v1.37, whose build/pause/Makefile says TAG = 3.10.2). A local name: no
# registry serves it, so a node must have it imported (and containerd told to use it: its
# pinned_images.sandbox).
PAUSE_VERSION="3.10.2"
PAUSE_IMAGE="registry.local/pause:$PAUSE_VERSION"

unset _image_names_dir _image_chart_dir

# connect-operator: common tasks. `make help` lists them.
SHELL := /bin/bash
CACHE ?= $(or $(CONNECT_OPERATOR_CACHE),$(HOME)/.cache/connect-operator)
CLUSTER_ENV := target/test-cluster/env
export PATH := $(CACHE)/bin:$(HOME)/.cargo/bin:$(PATH)
# The test cluster's Kubernetes version (tests/cluster/common.sh): unset, the newest the suite runs on (the
# version tests/cluster/go/kube/go.mod requires); `make test K8S_VERSION=1.35.4` runs on another.
ifdef K8S_VERSION
export K8S_VERSION
endif
# The oldest minor still supported upstream, and the version of it the suite runs on (make test-oldest).
K8S_OLDEST := 1.35.4

.PHONY: help deps cluster-up cluster-down build test test-oldest unit-test lint crd demo demo-down bench image image-test e2e-node

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## install what the tests need (Debian packages, kubectl, helm)
	tests/cluster/install-deps.sh

cluster-up: deps ## start the local cluster: etcd, kube-apiserver, kube-controller-manager (built once from Go modules, ~7 min)
	TEST_CLUSTER_SKIP_DEPS=1 tests/cluster/up.sh >/dev/null

cluster-down: ## stop the local cluster
	tests/cluster/down.sh

build: ## build the binaries (debug): connect-operator and connect-emulator
	cargo build --locked --workspace --bins

# One cargo invocation for the whole workspace: everything is compiled once, and the connect-emulator
# binary the end-to-end tests run (crates/connect-emulator) is built before any test starts.
test: cluster-up ## the whole test suite: unit, emulator, CRD, end to end (starts the cluster)
	source $(CLUSTER_ENV) && cargo test --locked --workspace --lib --bins --tests -- --test-threads=3

# The same suite on the oldest supported Kubernetes minor: its binaries are built once into the cache (about
# 7 minutes cold), and the cluster of target/test-cluster is restarted on that version with fresh data
# (up.sh deletes data of another version; plain `make test` afterwards goes back to the newest).
test-oldest: ## the whole test suite (make test) on the oldest supported Kubernetes minor (K8S_OLDEST)
	$(MAKE) test K8S_VERSION=$(K8S_OLDEST)

unit-test: ## tests that need no cluster
	cargo test --locked --workspace --lib --bins --test emulator --test binary

lint: ## rustfmt + clippy + shell syntax
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	@for f in .ci/run $$(find scripts tests/cluster -name '*.sh'); do bash -n "$$f" || exit 1; done
	@# `cmd | grep -q` under pipefail fails when grep exits at the first match while cmd still writes
	@# (SIGPIPE, exit 141): a race that turned CI red once (ctr images ls). Read the whole input instead.
	@if grep -nE '\|[[:space:]]*grep[[:space:]]+-[A-Za-z]*q' .ci/run $$(find scripts tests/cluster -name '*.sh'); then \
	  echo "lint: pipe into 'grep ... >/dev/null', not 'grep -q' (SIGPIPE under pipefail)"; exit 1; fi

crd: ## regenerate crds/*.yaml (and the chart's copies) from the Rust types
	cargo run --locked --quiet --bin connect-operator -- crd securityprofile > crds/securityprofile.yaml
	cargo run --locked --quiet --bin connect-operator -- crd instancebinding > crds/instancebinding.yaml
	cp crds/securityprofile.yaml crds/instancebinding.yaml charts/connect-operator/files/

demo: cluster-up build ## local cluster + Connect emulator + operator; applies deploy/samples and shows them Ready
	scripts/demo.sh up

demo-down: ## stop what `make demo` started (the cluster stays; `make cluster-down` stops it)
	scripts/demo.sh down

# Release builds (the image's binary, the benchmark's): static-pie, glibc linked in. The process maps no
# shared libraries, whose pages (libc, libm, the loader: about 2 MiB resident) cost more memory than the
# parts of glibc linked in (under 1 MiB). The explicit --target keeps the flag off build scripts and
# proc macros (which cannot be static); the binaries go to $(RELEASE_DIR).
RELEASE_TRIPLE := x86_64-unknown-linux-gnu
RELEASE_DIR = $${CARGO_TARGET_DIR:-target}/$(RELEASE_TRIPLE)/release
RELEASE_BUILD = CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target $(RELEASE_TRIPLE)

# The fairness part's "before" row runs the operator of the commit before the fair limiter.
BENCH_BEFORE_COMMIT := 931f0b1

bench: cluster-up ## the benchmark (release build): prints a table and writes BENCHMARKS.md
	$(RELEASE_BUILD) --workspace --bins --example bench
	scripts/bench-before.sh $(BENCH_BEFORE_COMMIT) $(CACHE)/bench-before
	source $(CLUSTER_ENV) && CONNECT_OPERATOR_BIN_DIR=$(RELEASE_DIR) BENCH_BEFORE_BIN=$(CACHE)/bench-before/connect-operator \
		$(RELEASE_DIR)/examples/bench

# The release binary for the image is built where scripts/image/build.sh looks for it: CARGO_TARGET_DIR,
# else the cache's cargo-target (as in .ci/run).
image image-test e2e-node: export CARGO_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CACHE)/cargo-target)

image: ## container images without Docker: target/image/{connect-operator,pause}.{oci,docker}.tar (release build)
	$(RELEASE_BUILD) --bin connect-operator
	scripts/image/build.sh all

image-test: ## build the images twice (same digest?), check their contents, run them with containerd
	$(RELEASE_BUILD) --bin connect-operator
	scripts/image/test.sh

# The end-to-end tests on a real node (tests/e2e/node.rs, ignored by `make test`): the images (release
# build), the cluster of target/test-cluster in node mode (root; a running plain one is restarted in
# node mode, and it is left running: `make cluster-down`), the operator image imported, then the tests
# with --ignored. The tests are built as `make test` builds them (the same invocation, so warm after it),
# which also builds the connect-emulator binary (`--test e2e` alone does not: it is another package's).
e2e-node: image ## the chart's pod on a real node (root): images, up.sh --node, import, tests/e2e/node.rs
	cargo test --locked --workspace --lib --bins --tests --no-run
	TEST_CLUSTER_PAUSE_IMAGE_TAR=target/image/pause.oci.tar tests/cluster/up.sh --node >/dev/null
	tests/cluster/load-image.sh target/image/connect-operator.oci.tar >/dev/null
	source $(CLUSTER_ENV) && kubectl version && kubectl get nodes -o wide
	source $(CLUSTER_ENV) && cargo test --locked --workspace --test e2e -- --ignored node:: --test-threads=4

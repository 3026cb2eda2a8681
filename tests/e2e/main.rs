//! End-to-end tests: the real kube-apiserver, the Connect emulator and the operator binary.
//! Needs the test cluster: `tests/cluster/up.sh` and KUBECONFIG (see README.md), or `make test`. The
//! tests of node.rs need its node and are ignored unless asked for: `make e2e-node`.

mod admission;
mod bad_input;
mod conventions;
mod core_loop;
mod events;
mod faults;
mod harness;
mod helm_install;
mod iam;
mod instance_observation;
mod leader_election_and_metrics;
mod lifecycle;
mod multitenancy;
mod namespace_deletion;
mod node;
mod observe_mode;
mod onboarding;
mod readiness;
mod roles;
#[path = "../support/mod.rs"]
mod support;
mod tenancy;
mod test_cluster;

//! End-to-end tests: the real kube-apiserver, the Connect emulator and the operator binary.
//! Needs the test cluster: `tests/cluster/up.sh` and KUBECONFIG (see README.md), or `make test`.

mod core_loop;
mod corpus;
mod faults;
mod harness;
mod lifecycle;
mod multitenancy;
mod onboarding;
mod packaging;
mod proving_ground;
mod roles;
mod runtime;

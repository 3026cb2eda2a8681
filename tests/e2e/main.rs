//! End-to-end tests: the real kube-apiserver, the Connect emulator and the operator binary.
//! Needs the test cluster: `tests/cluster/up.sh` and KUBECONFIG (see README.md), or `make test`.

mod core_loop;
mod harness;
mod lifecycle;
mod proving_ground;

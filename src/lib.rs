//! connect-operator: manages Amazon Connect security profiles as Kubernetes resources.

pub mod connect;
pub mod constraints;
pub mod emulator;

//! connect-operator: manages Amazon Connect security profiles as Kubernetes resources.

pub mod api;
pub mod connect;
pub mod constraints;
pub mod domain;
pub mod export;
pub mod offline;
pub mod reconcile;
pub mod runtime;
pub mod yaml;

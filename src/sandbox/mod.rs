//! An in-memory Kubernetes API server: the cluster tests and `channel-operator dev` run against.
//! Production code never depends on it.

pub mod patch;
pub mod schema;
pub mod selector;
pub mod table;

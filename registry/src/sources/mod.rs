//! Registry sources: each reads one kind of source of truth and produces validated model
//! objects plus the errors of what it rejected.
//!
//! - [`static_files`]: a folder of Istio YAML documents, hot-reloaded.
//! - [`consul`]: Consul services and their healthy instances (blocking queries).
//! - [`kubernetes`]: Services and EndpointSlices, and Istio's ServiceEntry/WorkloadEntry CRDs
//!   when served, through the Kubernetes API's list/watch.
//! - [`backoff`]: retry pauses with jitter.
//! - [`health`]: the status every source reports (healthy, last error, last update).

pub mod backoff;
pub mod consul;
pub mod health;
pub mod kubernetes;
pub mod static_files;

//! The model of the mesh: the contract between registries and the xDS translation.
//!
//! - [`types`]: small validated values (host names, ports, labels, identities).
//! - [`protocol`]: port protocols and Istio's protocol selection.
//! - [`istio`]: the wire shapes of Istio's objects, for serde.
//! - [`validate`]: Istio's validation rules, wire shapes in, typed objects out.
//! - [`config`]: the typed, validated objects.
//! - [`provenance`]: where a service or endpoint came from (source, object, revision).
//! - [`registration`]: an agent that registered itself into a `WorkloadGroup`.
//! - [`snapshot`]: the immutable, versioned view built from a set of objects.
//!
//! Pure code: no I/O here.

pub mod config;
pub mod fallback;
pub mod istio;
pub mod protocol;
pub mod provenance;
pub mod rate_limit;
pub mod registration;
pub mod snapshot;
pub mod types;
pub mod validate;

pub use config::{ConfigObject, Kind, ObjectKey};
pub use protocol::Protocol;
pub use provenance::{Provenance, SourceName};
pub use registration::{Registration, RegistrationError};
pub use snapshot::{Endpoint, Service, Snapshot};
pub use types::{Hostname, Identity, Labels, Namespace, PortNumber, TrustDomain};

#[cfg(test)]
mod tests;

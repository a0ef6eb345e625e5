//! The merge of the registry sources: pure and synchronous, no I/O, no clock.
//!
//! Each source hands in a full [`SourceView`] of its part: services already built (with
//! their endpoints and provenance) and config objects (routing and policy). [`merge`]
//! combines the views into one [`Snapshot`] under one version and says what it refused
//! and why ([`Conflict`], [`Rejection`]).
//!
//! # Precedence: static > Kubernetes > Consul > auto-registration
//!
//! A host name belongs to one source: the highest in this order that defines it. The
//! static registry comes first because its files are written by an operator, for this
//! mesh, on purpose: overlap with a discovery system is how an operator overrides it.
//! Kubernetes comes next: its services are namespaced and owned by the cluster that runs
//! them. Consul comes last: its catalog is the broadest and most dynamic, often of services
//! outside the mesh, and its mesh names are derived (`<service>.service.consul`).
//! A host is never assembled from several sources: ports, resolution, location and the
//! workload identities a client verifies must come from one place, so mixing a plaintext
//! Consul service's endpoints into an mTLS static service (say) cannot happen.
//!
//! Auto-registration comes last and defines no host and no object: it hands in workloads
//! (agents connected with `AUTO_REGISTER_GROUP`) that become `WorkloadEntry`s of their
//! group and endpoints of whichever services select them, as Istio's auto-registered
//! entries are selected like any other. Its provenance (`auto-registration`) marks those
//! endpoints.
//!
//! Owns: the precedence, ownership of host names and declared addresses, conflict
//! reports. Must not touch: I/O, sources' state, xDS.

mod combine;
mod registered;
mod view;

pub use combine::merge;
pub use view::{Conflict, ConflictKind, MergeOutcome, Precedence, Rejection, SourceView};

#[cfg(test)]
mod tests;

//! `hostmesh-registry`: the control server's library.
//!
//! Owns the model of the mesh (services, ports, endpoints, traffic and security config), the
//! registry sources that feed it (static files, Consul, Kubernetes, auto-registration), the
//! pure merge of their views, the translation of a model snapshot into Envoy xDS v3 resources,
//! the ADS server, and the status API. `hostmesh-control` is its binary.
//!
//! Must not depend on `hostmesh-proxy`: data flows registries → model → xDS → proxy, and the
//! only contract with the data plane is Envoy's xDS API.

pub mod drop_later;
pub mod merge;
pub mod model;
pub mod sources;
pub mod xds;

//! `hostmesh-ca`: the mesh's certificate authority and workload identity.
//!
//! Owns the SPIFFE identity types ([`identity`]), the file-backed CA in Istio's plug-in layout
//! ([`store`]), CSR checks ([`csr`]) and signing ([`sign`]), join tokens ([`token`]), Istio's
//! certificate service and its TLS serving ([`service`], [`server`]), the client a host uses to
//! get and renew its certificate ([`client`], [`workload`]), and the rustls verifiers that
//! check SPIFFE identities ([`tls`]).
//!
//! Must not know about xDS, registries or the proxy: it deals in keys, certificates and
//! identities only.

#[cfg(feature = "cli-docs")]
pub mod cli_docs;
pub mod client;
pub mod csr;
pub mod files;
pub mod identity;
pub mod server;
pub mod service;
pub mod sign;
pub mod store;
pub mod tls;
pub mod token;
pub mod workload;

/// Istio's certificate service, generated from `proto/istio/v1/auth/ca.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("istio.v1.auth");
}

pub use identity::{SpiffeId, TrustDomain};
pub use store::{CaPaths, CertificateAuthority};

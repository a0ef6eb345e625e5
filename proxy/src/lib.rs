//! `hostmesh-proxy`: the data plane every agent embeds.
//!
//! Owns the validated runtime config ([`config`]), the outbound (15001) and inbound (15006)
//! listeners ([`outbound`], [`inbound`]), HTTP/1.1, HTTP/2, gRPC, WebSocket and TCP proxying,
//! Istio-compatible mutual TLS between hosts ([`tls`]), upstream connection pools and load
//! balancing ([`pool`]), counters ([`metrics`]) and graceful shutdown ([`drain`]). The xDS
//! client that fills the config is still to come.
//!
//! Must not depend on `hostmesh-registry`: it knows the mesh only through xDS.

pub mod config;

//! The Consul source: services and their healthy instances from Consul's HTTP API.
//!
//! - [`settings`]: the validated `consul:` settings (address, ACL token, TLS, datacenter,
//!   tag filter, domain suffix).
//! - [`api`]: the wire shapes of the two endpoints used, for serde.
//! - [`client`]: a thin HTTP client (hyper-util + hyper-rustls on aws-lc-rs): one blocking
//!   query of `/v1/catalog/services` or `/v1/health/service/<name>?passing=1`.
//! - [`index`]: the blocking-query index rules (reset when it goes backwards, never 0).
//! - [`convert`]: pure: one service's health entries → a model [`Service`](crate::model::Service)
//!   and the instances rejected, each with its reason.
//! - [`watch`]: the running source: one blocking loop on the catalog, one per service,
//!   publishing [`ConsulView`]s; on errors it keeps its last good view, reports itself
//!   unhealthy and retries with backoff.
//!
//! Owns: everything Consul-specific. Must not touch: the merge, xDS, other sources.

pub mod api;
pub mod client;
pub mod convert;
pub mod error;
pub mod index;
pub mod settings;
pub mod watch;

pub use client::{Answer, ConsulClient};
pub use error::ConsulError;
pub use settings::{ConsulSettings, TlsFiles};
pub use watch::{ConsulSource, ConsulView};

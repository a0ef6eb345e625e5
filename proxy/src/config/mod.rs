//! The runtime config: validated, immutable types that the data path reads, and the handle
//! that swaps a whole new config in atomically.
//!
//! The control plane's view arrives as a [`ConfigSpec`] (names, strings, numbers);
//! [`ProxyConfig::build`] checks every part of it and reports every problem at once, naming
//! where it is. The result holds references instead of names, so a route cannot point at a
//! missing cluster and a cluster cannot be empty. A request loads the current config once and
//! keeps it to the end, so a push never changes a request half-way.

mod build;
mod cluster;
pub mod hash_lb;
pub mod hash_policy;
mod inbound;
pub mod l4;
pub mod l7;
mod outbound;
pub mod policy;
pub mod rate_limit;
pub mod resilience;
pub(crate) mod route;
pub mod spec;

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use cluster::{Cluster, Endpoint, UpstreamTls};
pub use inbound::{InboundConfig, InboundPort};
pub use l4::L4Routes;
pub use outbound::{OutboundConfig, Service, ServiceTarget};
pub use policy::RoutePolicy;
pub use route::{
    HeaderMatch, PathMatch, RequestInfo, Route, RouteTable, VirtualHost, WeightedClusters,
};
pub use spec::ConfigSpec;

/// The application protocol of a service or port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
    Grpc,
    Tcp,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        !matches!(self, Self::Tcp)
    }

    /// HTTP/2 on the wire (HTTP/2 and gRPC).
    pub fn is_h2(self) -> bool {
        matches!(self, Self::Http2 | Self::Grpc)
    }
}

/// How a cluster spreads requests over its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Power of two random choices, weighing in-flight requests by endpoint weight.
    LeastRequest,
    Random,
    /// Envoy's ring hash: the request's hash picks an endpoint on a ring of at least
    /// `min_ring_size` points (weights give endpoints their share of points).
    RingHash {
        min_ring_size: u64,
    },
    /// Maglev: the request's hash picks a slot of a table of `table_size` (a prime).
    Maglev {
        table_size: u64,
    },
}

/// Inbound mutual TLS mode (Istio's `PeerAuthentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// Mutual TLS only.
    #[default]
    Strict,
    /// Mutual TLS or plaintext, told apart by the first byte.
    Permissive,
}

/// What the outbound listener does with a destination no service claims
/// (Istio's `outboundTrafficPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownDestination {
    /// Plain TCP to the original destination (`ALLOW_ANY`).
    #[default]
    Passthrough,
    /// Close the connection (`REGISTRY_ONLY`).
    Refuse,
}

/// A complete, validated runtime config.
#[derive(Debug, Default)]
pub struct ProxyConfig {
    version: String,
    outbound: OutboundConfig,
    inbound: InboundConfig,
}

impl ProxyConfig {
    /// Validates `spec`, reporting every problem found.
    pub fn build(spec: &ConfigSpec) -> Result<Self, ConfigErrors> {
        build::build(spec)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn outbound(&self) -> &OutboundConfig {
        &self.outbound
    }

    pub fn inbound(&self) -> &InboundConfig {
        &self.inbound
    }
}

/// One problem in a [`ConfigSpec`], with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `cluster "outbound|9999||bill" endpoint 2`.
    pub at: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// Every problem found in a [`ConfigSpec`]; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config rejected with {} problem(s)", self.0.len())?;
        for e in &self.0 {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// The current config, shared by every listener and replaced whole by a push.
#[derive(Debug, Clone)]
pub struct ConfigHandle(Arc<ArcSwap<ProxyConfig>>);

impl ConfigHandle {
    pub fn new(config: ProxyConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The config as it is now; hold it for the whole request.
    pub fn current(&self) -> Arc<ProxyConfig> {
        self.0.load_full()
    }

    /// Replaces the config for everything that starts from now on.
    pub fn replace(&self, config: ProxyConfig) {
        tracing::info!(version = %config.version, "runtime config replaced");
        self.0.store(Arc::new(config));
    }
}

impl Default for ConfigHandle {
    fn default() -> Self {
        Self::new(ProxyConfig::default())
    }
}

//! Outbound config: the services this host can call, keyed by the address it dials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Cluster, L4Routes, Protocol, RouteTable, UnknownDestination};

#[derive(Debug)]
pub enum ServiceTarget {
    Http(RouteTable),
    Tcp(Arc<Cluster>),
    /// Weighted TCP, or TLS routes by server name.
    L4(L4Routes),
}

/// A service reachable from this host. Its protocol and target agree (HTTP protocols have a
/// route table, TCP has a cluster).
#[derive(Debug)]
pub struct Service {
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) target: ServiceTarget,
}

impl Service {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn target(&self) -> &ServiceTarget {
        &self.target
    }
}

#[derive(Debug, Default)]
pub struct OutboundConfig {
    pub(crate) services: HashMap<SocketAddr, Arc<Service>>,
    pub(crate) unknown: UnknownDestination,
}

impl OutboundConfig {
    /// The service reached by dialling `destination` (a VIP or an endpoint's `ip:port`).
    pub fn service(&self, destination: SocketAddr) -> Option<&Arc<Service>> {
        self.services.get(&destination)
    }

    pub fn unknown_destination(&self) -> UnknownDestination {
        self.unknown
    }
}

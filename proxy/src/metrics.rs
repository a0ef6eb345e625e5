//! The proxy's counters, with typed labels, registered on a registry the caller owns (the
//! agent serves it on 15020). Istio's standard metrics with peer labels come later.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// What became of an accepted connection.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// Handed to a service or the application (over mTLS when inbound).
    Proxied,
    /// Inbound plaintext on a PERMISSIVE port.
    Plaintext,
    /// Outbound to a destination no service claims, copied as is.
    Passthrough,
    /// Closed: unknown destination or port, or a failed handshake.
    Refused,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub direction: Direction,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: Direction,
    pub response_code: u16,
}

/// Envoy's response flag of a locally generated answer (`UO`, `URX`, `FI`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlagLabels {
    pub response_flags: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    connections: Family<ConnectionLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    flags: Family<FlagLabels, Counter>,
}

impl Metrics {
    /// Adds these counters to `registry` (they stay shared with the proxy).
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("hostmesh_proxy");
        sub.register(
            "connections",
            "Connections accepted, by direction and what became of them",
            self.connections.clone(),
        );
        sub.register(
            "requests",
            "HTTP requests answered, by direction and response code",
            self.requests.clone(),
        );
        sub.register(
            "response_flags",
            "Outbound requests answered or delayed by the proxy itself, by Envoy response flag",
            self.flags.clone(),
        );
    }

    pub(crate) fn response_flag(&self, response_flags: &'static str) {
        self.flags
            .get_or_create(&FlagLabels { response_flags })
            .inc();
    }

    /// How many answers carried `flag` (for tests and the admin page).
    pub fn response_flags(&self, response_flags: &'static str) -> u64 {
        self.flags
            .get_or_create(&FlagLabels { response_flags })
            .get()
    }

    pub(crate) fn connection(&self, direction: Direction, outcome: Outcome) {
        self.connections
            .get_or_create(&ConnectionLabels { direction, outcome })
            .inc();
    }

    pub(crate) fn request(&self, direction: Direction, response_code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                direction,
                response_code,
            })
            .inc();
    }

    /// Current count for one label set (for tests and the admin page).
    pub fn connections(&self, direction: Direction, outcome: Outcome) -> u64 {
        self.connections
            .get_or_create(&ConnectionLabels { direction, outcome })
            .get()
    }

    pub fn requests(&self, direction: Direction, response_code: u16) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                direction,
                response_code,
            })
            .get()
    }
}

//! Inbound config: the workload ports this host serves and how each is protected.

use std::collections::HashMap;

use super::{MtlsMode, Protocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundPort {
    pub(crate) app_port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) mode: MtlsMode,
    pub(crate) max_requests_per_connection: Option<u32>,
}

impl InboundPort {
    /// The port the application listens on at 127.0.0.1.
    pub fn app_port(&self) -> u16 {
        self.app_port
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn mode(&self) -> MtlsMode {
        self.mode
    }

    /// Requests one connection to the application carries before it is retired.
    pub fn max_requests_per_connection(&self) -> Option<u32> {
        self.max_requests_per_connection
    }
}

#[derive(Debug, Default)]
pub struct InboundConfig {
    pub(crate) ports: HashMap<u16, InboundPort>,
}

impl InboundConfig {
    /// The workload port peers dialled; `None` for a port the host does not serve.
    pub fn port(&self, port: u16) -> Option<&InboundPort> {
        self.ports.get(&port)
    }
}

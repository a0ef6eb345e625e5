//! The application protocol of a service port and how it is chosen, following Istio's
//! explicit protocol selection: the `protocol` field of a `ServiceEntry` port, else
//! `appProtocol`, else the prefix of the port name (`<protocol>[-<suffix>]`).
//!
//! One difference from Istio: a port whose protocol cannot be determined is plain TCP here
//! (Istio would sniff it), because hostmesh does not sniff protocols.

use std::fmt;

/// The protocol a port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Https,
    Grpc,
    GrpcWeb,
    Tcp,
    Tls,
    Udp,
    Mongo,
    Redis,
    Mysql,
}

impl Protocol {
    /// Parses a protocol name as Istio does (case-insensitive). `None` for names Istio does
    /// not know.
    pub fn parse(name: &str) -> Option<Self> {
        let p = match name.to_ascii_lowercase().as_str() {
            "http" => Self::Http,
            "http2" | "h2" | "h2c" | "kubernetes.io/h2c" => Self::Http2,
            "https" => Self::Https,
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "tcp" => Self::Tcp,
            "tls" => Self::Tls,
            "udp" => Self::Udp,
            "mongo" => Self::Mongo,
            "redis" => Self::Redis,
            "mysql" => Self::Mysql,
            "kubernetes.io/ws" | "kubernetes.io/wss" => Self::Http,
            _ => return None,
        };
        Some(p)
    }

    /// The protocol named by a port name: `grpc-web[-…]` is gRPC-Web, otherwise the part
    /// before the first `-`; unknown names are TCP.
    pub fn from_port_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("grpc-web") {
            return Self::GrpcWeb;
        }
        let prefix = lower.split('-').next().unwrap_or_default();
        Self::parse(prefix).unwrap_or(Self::Tcp)
    }

    /// The protocol of a port from its explicit protocol, `appProtocol` and name, in Istio's
    /// order of precedence.
    pub fn select(explicit: Option<&str>, app_protocol: Option<&str>, port_name: &str) -> Self {
        if let Some(p) = explicit.and_then(Self::parse) {
            return p;
        }
        match app_protocol {
            Some(app) => Self::parse(app).unwrap_or_else(|| Self::from_port_name(app)),
            None => Self::from_port_name(port_name),
        }
    }

    /// Is the traffic HTTP that the proxy can route (HTTP/1.1, HTTP/2, gRPC)?
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Http2 | Self::Grpc | Self::GrpcWeb)
    }

    /// Istio's upper-case name (`HTTP`, `GRPC-WEB`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Http2 => "HTTP2",
            Self::Https => "HTTPS",
            Self::Grpc => "GRPC",
            Self::GrpcWeb => "GRPC-WEB",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Udp => "UDP",
            Self::Mongo => "MONGO",
            Self::Redis => "REDIS",
            Self::Mysql => "MYSQL",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

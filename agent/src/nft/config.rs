//! What the interception table must do, validated once.
//!
//! [`InterceptionSpec`] is the shape an operator writes (every field has a default);
//! [`InterceptionSpec::validate`] checks all of it, reports every problem at once, and returns an
//! [`InterceptionConfig`] that the rule builder can trust.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;

/// Port the embedded proxy captures outbound connections on.
pub const OUTBOUND_PORT: u16 = 15001;
/// Port the embedded proxy accepts redirected inbound connections on.
pub const INBOUND_PORT: u16 = 15006;
/// Port the DNS proxy listens on (127.0.0.1).
pub const DNS_PORT: u16 = 15053;
/// Socket mark the proxy's own upstream sockets carry by default (1337, as Istio's).
pub const DEFAULT_SKIP_MARK: u32 = 0x539;

/// Interception settings as written in the agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptionSpec {
    /// Traffic from sockets owned by this uid is never redirected (the agent's own user).
    pub skip_uid: Option<u32>,
    /// Traffic carrying this socket mark is never redirected (the proxy's upstream sockets).
    pub skip_mark: Option<u32>,
    /// Outbound destination ports that are never redirected.
    pub excluded_ports: Vec<u16>,
    /// Outbound destination networks that are never redirected.
    pub excluded_cidrs: Vec<IpNet>,
    /// The control server's addresses: the agent's xDS and certificate traffic goes direct.
    pub control_servers: Vec<SocketAddr>,
    /// Local ports of the workload whose inbound connections go through the proxy.
    pub inbound_ports: Vec<u16>,
    /// Redirect DNS (udp and tcp port 53) to the DNS proxy.
    pub dns_capture: bool,
    /// The DNS proxy also listens on `[::1]`, so IPv6 DNS is captured too.
    pub dns_ipv6: bool,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
}

impl Default for InterceptionSpec {
    fn default() -> Self {
        Self {
            skip_uid: None,
            skip_mark: Some(DEFAULT_SKIP_MARK),
            excluded_ports: vec![22],
            excluded_cidrs: Vec::new(),
            control_servers: Vec::new(),
            inbound_ports: Vec::new(),
            dns_capture: true,
            dns_ipv6: false,
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            dns_port: DNS_PORT,
        }
    }
}

/// One thing wrong with an [`InterceptionSpec`], named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "neither skip_uid nor skip_mark is set: the proxy's own connections would be redirected \
         back to itself"
    )]
    NoSkip,
    #[error("skip_mark must not be 0: every unmarked packet has mark 0 and would bypass the proxy")]
    ZeroMark,
    #[error("{key} must not be 0")]
    ZeroPort { key: &'static str },
    #[error("outbound_port, inbound_port and dns_port must differ (both {a} and {b} are {port})")]
    SamePort {
        a: &'static str,
        b: &'static str,
        port: u16,
    },
    #[error("inbound_ports contains {port}, a port of the proxy itself")]
    InboundIsProxyPort { port: u16 },
    #[error("control_servers contains {addr}, which is not a usable destination")]
    BadControlServer { addr: SocketAddr },
}

/// Every problem found in an [`InterceptionSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidInterception {
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidInterception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid interception settings:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Validated interception settings: sorted, deduplicated, networks truncated to their prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptionConfig {
    pub(super) skip_uid: Option<u32>,
    pub(super) skip_mark: Option<u32>,
    pub(super) excluded_ports: BTreeSet<u16>,
    pub(super) excluded_cidrs: BTreeSet<IpNet>,
    pub(super) control_servers: BTreeSet<SocketAddr>,
    pub(super) inbound_ports: BTreeSet<u16>,
    pub(super) dns_capture: bool,
    pub(super) dns_ipv6: bool,
    pub(super) outbound_port: u16,
    pub(super) inbound_port: u16,
    pub(super) dns_port: u16,
}

impl InterceptionConfig {
    pub fn outbound_port(&self) -> u16 {
        self.outbound_port
    }

    pub fn inbound_port(&self) -> u16 {
        self.inbound_port
    }

    pub fn dns_port(&self) -> u16 {
        self.dns_port
    }

    pub fn dns_capture(&self) -> bool {
        self.dns_capture
    }
}

impl InterceptionSpec {
    /// Checks every setting and reports all problems together.
    pub fn validate(self) -> Result<InterceptionConfig, InvalidInterception> {
        let mut problems = Vec::new();
        if self.skip_uid.is_none() && self.skip_mark.is_none() {
            problems.push(Problem::NoSkip);
        }
        if self.skip_mark == Some(0) {
            problems.push(Problem::ZeroMark);
        }
        let proxy_ports = [
            ("outbound_port", self.outbound_port),
            ("inbound_port", self.inbound_port),
            ("dns_port", self.dns_port),
        ];
        for (i, &(key, port)) in proxy_ports.iter().enumerate() {
            if port == 0 {
                problems.push(Problem::ZeroPort { key });
            }
            for &(other, other_port) in &proxy_ports[i + 1..] {
                if port != 0 && port == other_port {
                    problems.push(Problem::SamePort {
                        a: key,
                        b: other,
                        port,
                    });
                }
            }
        }
        if self.excluded_ports.contains(&0) {
            problems.push(Problem::ZeroPort {
                key: "excluded_ports",
            });
        }
        if self.inbound_ports.contains(&0) {
            problems.push(Problem::ZeroPort {
                key: "inbound_ports",
            });
        }
        for port in &self.inbound_ports {
            if proxy_ports.iter().any(|&(_, p)| p == *port) {
                problems.push(Problem::InboundIsProxyPort { port: *port });
            }
        }
        for addr in &self.control_servers {
            if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
                problems.push(Problem::BadControlServer { addr: *addr });
            }
        }
        if !problems.is_empty() {
            return Err(InvalidInterception { problems });
        }
        Ok(InterceptionConfig {
            skip_uid: self.skip_uid,
            skip_mark: self.skip_mark,
            excluded_ports: self.excluded_ports.into_iter().collect(),
            excluded_cidrs: self.excluded_cidrs.iter().map(IpNet::trunc).collect(),
            control_servers: self.control_servers.into_iter().collect(),
            inbound_ports: self.inbound_ports.into_iter().collect(),
            dns_capture: self.dns_capture,
            dns_ipv6: self.dns_ipv6,
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            dns_port: self.dns_port,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = InterceptionSpec::default().validate();
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let spec = InterceptionSpec {
            skip_uid: None,
            skip_mark: None,
            inbound_ports: vec![8080, 15001],
            dns_port: 15006,
            excluded_ports: vec![0],
            control_servers: vec!["0.0.0.0:15012".parse().unwrap()],
            ..InterceptionSpec::default()
        };
        let problems = spec.validate().unwrap_err().problems;
        assert_eq!(
            problems,
            vec![
                Problem::NoSkip,
                Problem::SamePort {
                    a: "inbound_port",
                    b: "dns_port",
                    port: 15006
                },
                Problem::ZeroPort {
                    key: "excluded_ports"
                },
                Problem::InboundIsProxyPort { port: 15001 },
                Problem::BadControlServer {
                    addr: "0.0.0.0:15012".parse().unwrap()
                },
            ]
        );
    }

    #[test]
    fn networks_are_truncated_and_sorted() {
        let spec = InterceptionSpec {
            excluded_cidrs: vec![
                "192.168.1.7/24".parse().unwrap(),
                "10.1.2.3/8".parse().unwrap(),
            ],
            ..InterceptionSpec::default()
        };
        let config = spec.validate().unwrap();
        let nets: Vec<String> = config
            .excluded_cidrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.0/24"]);
    }
}

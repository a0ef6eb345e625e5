//! The benchmark's fixed layout: host addresses, the services host B runs and the port each
//! path reaches them on. Host A (client side) is the lab's first host, 10.77.0.1, host B
//! (server side) its second, 10.77.0.2; the addresses live only inside the run's namespaces.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use hostmesh_tests::bench::clients::Protocol;
use hostmesh_tests::bench::servers;
use tokio::net::TcpListener;

pub const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The name the mesh knows host B's service by (the `Host` every request carries).
pub const SERVICE_HOST: &str = "bench-server.bench.svc.cluster.local";

/// What a server port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http(Protocol),
    Echo,
    Sink,
}

/// One service of host B and its ports on each path.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub kind: Kind,
    /// Declared in the mesh, intercepted on both hosts.
    pub mesh: u16,
    /// Reached without any proxy (never intercepted).
    pub direct: u16,
    /// HAProxy on host A, 127.0.0.1 (plain).
    pub haproxy_front: u16,
    /// HAProxy on host B (mTLS from host A's HAProxy).
    pub haproxy_back: u16,
}

impl Service {
    /// The mesh protocol name (registry `ports[].protocol`, agent `inboundPorts`).
    pub fn mesh_protocol(&self) -> &'static str {
        match self.kind {
            Kind::Http(Protocol::Http1) => "HTTP",
            Kind::Http(Protocol::Http2) => "HTTP2",
            Kind::Http(Protocol::Grpc) => "GRPC",
            Kind::Echo | Kind::Sink => "TCP",
        }
    }
}

pub const HTTP1: Service = Service {
    name: "http1",
    kind: Kind::Http(Protocol::Http1),
    mesh: 8080,
    direct: 9080,
    haproxy_front: 18080,
    haproxy_back: 19080,
};
pub const HTTP2: Service = Service {
    name: "http2",
    kind: Kind::Http(Protocol::Http2),
    mesh: 8082,
    direct: 9082,
    haproxy_front: 18082,
    haproxy_back: 19082,
};
pub const GRPC: Service = Service {
    name: "grpc",
    kind: Kind::Http(Protocol::Grpc),
    mesh: 8083,
    direct: 9083,
    haproxy_front: 18083,
    haproxy_back: 19083,
};
pub const ECHO: Service = Service {
    name: "echo",
    kind: Kind::Echo,
    mesh: 8084,
    direct: 9084,
    haproxy_front: 18084,
    haproxy_back: 19084,
};
pub const SINK: Service = Service {
    name: "sink",
    kind: Kind::Sink,
    mesh: 8085,
    direct: 9085,
    haproxy_front: 18085,
    haproxy_back: 19085,
};

pub const SERVICES: [Service; 5] = [HTTP1, HTTP2, GRPC, ECHO, SINK];

/// Ports host A's interception must leave alone: the direct path and HAProxy's own hop.
pub fn unintercepted_ports() -> Vec<u16> {
    let mut ports = vec![22];
    for s in SERVICES {
        ports.push(s.direct);
        ports.push(s.haproxy_back);
    }
    ports
}

/// The three paths measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Direct,
    Hostmesh,
    Haproxy,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Direct, Mode::Hostmesh, Mode::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Hostmesh => "hostmesh",
            Mode::Haproxy => "haproxy",
        }
    }

    /// Where host A's client connects for `service` on this path.
    pub fn address(self, service: Service) -> SocketAddr {
        match self {
            Mode::Direct => SocketAddr::from((HOST_B, service.direct)),
            Mode::Hostmesh => SocketAddr::from((HOST_B, service.mesh)),
            Mode::Haproxy => SocketAddr::from((Ipv4Addr::LOCALHOST, service.haproxy_front)),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mode {s:?} (direct, hostmesh, haproxy)"))
    }
}

/// Host B's servers: every service on its mesh port and its direct port (HAProxy's back end
/// uses the direct port over loopback).
pub async fn serve() -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for service in SERVICES {
        for port in [service.mesh, service.direct] {
            let listener = TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("binding port {port}"))?;
            match service.kind {
                Kind::Http(Protocol::Grpc) => {
                    tasks.spawn(async move {
                        servers::serve_grpc(listener)
                            .await
                            .map_err(anyhow::Error::from)
                    });
                }
                Kind::Http(_) => {
                    tasks.spawn(async move {
                        servers::serve_http(listener)
                            .await
                            .map_err(anyhow::Error::from)
                    });
                }
                Kind::Echo => {
                    tasks.spawn(async move {
                        servers::serve_echo(listener)
                            .await
                            .map_err(anyhow::Error::from)
                    });
                }
                Kind::Sink => {
                    tasks.spawn(async move {
                        servers::serve_sink(listener)
                            .await
                            .map_err(anyhow::Error::from)
                    });
                }
            }
        }
    }
    println!("serving");
    match tasks.join_next().await {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

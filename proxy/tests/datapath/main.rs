//! The data path in-process on 127.0.0.1: two proxies (a client host `front` and a server host
//! `bill-service`) with real sockets and real mutual TLS, and tiny applications behind them.
#![allow(clippy::unwrap_used, missing_debug_implementations)]

mod common;
mod drain;
mod hostile;
mod identity;
mod protocols;
mod routing;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use hostmesh_proxy::config::spec::RouteSpec;
use hostmesh_proxy::config::{MtlsMode, Protocol};
use hostmesh_proxy::{Proxy, Settings};

/// `front` calls `bill-service` through both proxies: the application at `app` sits behind
/// bill's inbound; front's outbound listens on `vip`.
pub struct Pair {
    pub mesh: Mesh,
    pub front: Arc<Proxy>,
    pub bill: Arc<Proxy>,
    pub vip: SocketAddr,
    pub inbound: SocketAddr,
}

impl Pair {
    pub async fn new(protocol: Protocol, app: SocketAddr) -> Self {
        Self::with(protocol, app, MtlsMode::Strict, Settings::default()).await
    }

    pub async fn with(
        protocol: Protocol,
        app: SocketAddr,
        mode: MtlsMode,
        settings: Settings,
    ) -> Self {
        let mesh = Mesh::new();
        let bill = mesh.proxy(mesh.slot(BILL), settings.clone());
        let inbound = mesh.inbound(&bill).await;
        install(&bill, &inbound_spec(&[(inbound, app, protocol, mode)]));
        let front = mesh.proxy(mesh.slot(FRONT), settings);
        let vip = mesh.outbound(&front).await;
        let pair = Self {
            mesh,
            front,
            bill,
            vip,
            inbound,
        };
        pair.route(protocol, vec![route_to(&[("bill", 1)])]);
        pair
    }

    /// Points front's service at bill's inbound with `routes` (ignored for TCP).
    pub fn route(&self, protocol: Protocol, routes: Vec<RouteSpec>) {
        let cluster = mtls_cluster("bill", &[self.inbound], &[BILL]);
        let service = match protocol {
            Protocol::Tcp => tcp_service(self.vip, "bill"),
            _ => http_service(self.vip, protocol, routes),
        };
        install(&self.front, &outbound_spec(vec![cluster], vec![service]));
    }
}

//! `hostmesh-proxy`: the data plane every agent embeds.
//!
//! Owns the validated runtime config ([`config`]), the outbound (15001) and inbound (15006)
//! listeners ([`outbound`], [`inbound`]), HTTP/1.1, HTTP/2, gRPC, WebSocket and TCP proxying,
//! Istio-compatible mutual TLS between hosts ([`tls`]), upstream connections and pools
//! ([`pool`]; load balancing lives with the clusters in [`config`]), counters ([`metrics`]) and
//! graceful shutdown ([`drain`]), and the ADS client that fills the config from the control
//! server's Envoy resources ([`xds`]).
//!
//! Must not depend on `hostmesh-registry`: it knows the mesh only through xDS.

pub mod config;
mod copy;
pub mod drain;
mod http_proxy;
pub mod inbound;
mod listener;
pub mod metrics;
pub mod outbound;
mod outbound_l4;
pub mod pool;
pub mod read_ahead;
mod route_exec;
mod route_l7;
pub mod sni;
mod stream_buf;
pub mod tls;
pub mod xds;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::{ConfigHandle, ProxyConfig};
pub use http_proxy::HttpSettings;
pub use inbound::Inbound;
pub use outbound::Outbound;
pub use pool::PoolSettings;

/// Settings fixed for the life of the process (not pushed by the control plane).
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub pool: PoolSettings,
    /// Connect timeout for passthrough and for the local application.
    pub connect_timeout: Duration,
    /// Where the applications listen (127.0.0.1).
    pub app_ip: IpAddr,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            pool: PoolSettings::default(),
            connect_timeout: Duration::from_secs(10),
            app_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// One proxy: the current config, this host's TLS identity, the upstream pools.
#[derive(Debug)]
pub struct Proxy {
    config: ConfigHandle,
    tls: Arc<tls::MeshTls>,
    pool: pool::Pool,
    settings: Settings,
    metrics: metrics::Metrics,
}

impl Proxy {
    pub fn new(config: ConfigHandle, tls: Arc<tls::MeshTls>, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            pool: pool::Pool::new(tls.clone(), settings.pool.clone()),
            config,
            tls,
            settings,
            metrics: metrics::Metrics::default(),
        })
    }

    pub fn config(&self) -> &ConfigHandle {
        &self.config
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// Binds the outbound listener (15001 in production).
    pub async fn outbound(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<Outbound> {
        Ok(Outbound::new(TcpListener::bind(addr).await?, self.clone()))
    }

    /// Binds the inbound listener (15006 in production).
    pub async fn inbound(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<Inbound> {
        Ok(Inbound::new(TcpListener::bind(addr).await?, self.clone()))
    }
}

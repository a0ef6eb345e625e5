//! The DNS proxy: answers mesh names, forwards the rest to the host's resolvers.
//!
//! It listens on 127.0.0.1:15053 over UDP and TCP. The interception table redirects every DNS
//! query of the host (port 53) there; because the proxy is bound to 127.0.0.1, the address the
//! redirect sends to, its replies leave from the address the client's connected socket expects
//! (host-lab pitfall 2). A proxy bound to 0.0.0.0 would answer from another address and glibc
//! would never see the reply.
//!
//! - [`table`]: the mesh names ([`NameTable`] in an `ArcSwap`, swapped without a restart);
//! - [`resolv`]: upstreams and search domains from `/etc/resolv.conf`;
//! - [`forward`]: the client's query relayed to an upstream, with the agent's socket mark;
//! - [`handler`]: the hickory `RequestHandler` that chooses between them.

pub mod forward;
pub mod handler;
pub mod resolv;
pub mod table;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use forward::{ForwardError, Forwarder};
pub use handler::MeshDnsHandler;
pub use resolv::{ResolvConf, ResolvConfError};
pub use table::{InvalidName, MeshAnswer, NameTable, SharedNameTable};

/// How long a TCP client may stay idle before the proxy closes its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Settings of the DNS proxy.
#[derive(Debug, Clone)]
pub struct DnsProxyConfig {
    /// Addresses to listen on, UDP and TCP each (127.0.0.1:15053 by default).
    pub listen: Vec<SocketAddr>,
    /// Where the upstream resolvers and search domains are read from.
    pub resolv_conf: PathBuf,
    /// Port of the upstream resolvers; 53 except in tests.
    pub upstream_port: u16,
    /// How long one upstream has to answer before the next is tried.
    pub upstream_timeout: Duration,
    /// Socket mark of forwarded queries, so the interception table lets them pass.
    pub mark: Option<u32>,
}

impl Default for DnsProxyConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                crate::nft::DNS_PORT,
            )],
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            upstream_port: 53,
            upstream_timeout: Duration::from_secs(2),
            mark: Some(crate::nft::DEFAULT_SKIP_MARK),
        }
    }
}

/// Why the DNS proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    ResolvConf(#[from] ResolvConfError),
    #[error("could not listen on {addr} ({protocol}); is another DNS proxy running?")]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running DNS proxy. Dropping it does not stop it; call [`DnsProxy::shutdown`].
pub struct DnsProxy {
    server: Server<MeshDnsHandler>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsProxy")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl DnsProxy {
    /// Reads the resolver configuration, binds every address and starts serving on the
    /// current tokio runtime.
    pub async fn start(config: &DnsProxyConfig, table: SharedNameTable) -> Result<Self, DnsError> {
        let resolv = ResolvConf::read(&config.resolv_conf)?;
        let upstreams = resolv
            .nameservers
            .iter()
            .map(|ip| SocketAddr::new(*ip, config.upstream_port))
            .collect();
        let forwarder = Forwarder::new(upstreams, config.upstream_timeout, config.mark);
        tracing::info!(
            listen = ?config.listen,
            upstreams = ?forwarder.upstreams(),
            search = ?resolv.search.iter().map(ToString::to_string).collect::<Vec<_>>(),
            mesh_names = table.load().len(),
            "starting the DNS proxy"
        );
        let handler = MeshDnsHandler::new(table, resolv.search, forwarder);
        let mut server = Server::new(handler);
        let (mut udp, mut tcp) = (Vec::new(), Vec::new());
        for &addr in &config.listen {
            let bind_error = |protocol| {
                move |source| DnsError::Bind {
                    addr,
                    protocol,
                    source,
                }
            };
            let socket = UdpSocket::bind(addr).await.map_err(bind_error("udp"))?;
            udp.push(socket.local_addr().map_err(bind_error("udp"))?);
            server.register_socket(socket);
            let listener = TcpListener::bind(addr).await.map_err(bind_error("tcp"))?;
            tcp.push(listener.local_addr().map_err(bind_error("tcp"))?);
            server.register_listener(listener, TCP_IDLE, 4096);
        }
        Ok(Self { server, udp, tcp })
    }

    /// The bound UDP addresses, in the order of the configuration.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// The bound TCP addresses, in the order of the configuration.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// Stops accepting queries and waits for the listeners to finish.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "the DNS proxy stopped with an error");
        }
    }
}

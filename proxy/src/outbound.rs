//! The outbound listener (15001): connections this host's applications open, intercepted.
//! Each is matched to a service by its original destination; HTTP services are routed per
//! request (virtual host, route, weighted cluster, endpoint), TCP services are copied to one
//! endpoint (L4 routes, weighted or by TLS server name, in [`crate::outbound_l4`]), and unknown
//! destinations pass through or are refused.

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Proxy;
use crate::config::{
    Cluster, ProxyConfig, RequestInfo, ServiceTarget, UnknownDestination, UpstreamTls,
};
use crate::drain::DrainWatcher;
use crate::http_proxy::{self as http, error_response};
use crate::listener::{accept_loop, original_dst};
use crate::metrics::{Direction, Outcome};
use crate::pool::{Body, UpstreamError, connect_tcp};
use crate::tls::Codec;

/// A bound outbound listener.
#[derive(Debug)]
pub struct Outbound {
    listener: TcpListener,
    proxy: Arc<Proxy>,
}

impl Outbound {
    pub(crate) fn new(listener: TcpListener, proxy: Arc<Proxy>) -> Self {
        Self { listener, proxy }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `drain` is signalled.
    pub async fn run(self, drain: DrainWatcher) {
        let listen = self.listener.local_addr().ok();
        let proxy = self.proxy;
        accept_loop("outbound", self.listener, drain, move |tcp, peer, drain| {
            let proxy = proxy.clone();
            async move { handle(proxy, tcp, peer, listen, drain).await }
        })
        .await;
    }
}

/// The downstream peer of an outbound request (in its extensions), for hashing on the source IP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownstreamAddr(pub SocketAddr);

async fn handle(
    proxy: Arc<Proxy>,
    tcp: TcpStream,
    peer: SocketAddr,
    listen: Option<SocketAddr>,
    drain: DrainWatcher,
) {
    let dst = match original_dst(&tcp) {
        Ok(d) => d,
        Err(error) => return tracing::debug!(%peer, %error, "no destination"),
    };
    let config = proxy.config.current();
    let Some(service) = config.outbound().service(dst).cloned() else {
        return unknown(&proxy, &config, tcp, peer, dst, listen).await;
    };
    // A long connection must not pin an old config: requests load the current one.
    drop(config);
    tracing::debug!(%peer, %dst, service = service.name(), "outbound connection");
    proxy
        .metrics
        .connection(Direction::Outbound, Outcome::Proxied);
    match service.target() {
        ServiceTarget::Tcp(cluster) => {
            if let Err(error) = tcp_to_cluster(&proxy, tcp, cluster, &[]).await {
                tracing::info!(%peer, %dst, service = service.name(), %error, "TCP proxy failed");
            }
        }
        ServiceTarget::L4(routes) => {
            crate::outbound_l4::serve(&proxy, tcp, peer, dst, listen, service.name(), routes).await;
        }
        ServiceTarget::Http(_) => {
            let p = proxy.clone();
            let handler = move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(DownstreamAddr(peer));
                route_request(p.clone(), dst, req)
            };
            http::serve(tcp, None, &proxy.settings.http, handler, drain).await;
        }
    }
}

async fn unknown(
    proxy: &Proxy,
    config: &ProxyConfig,
    tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    listen: Option<SocketAddr>,
) {
    passthrough_or_refuse(proxy, config, tcp, peer, dst, listen, &[]).await;
}

/// The unknown-destination rule for a connection of which `initial` was already read.
pub(crate) async fn passthrough_or_refuse(
    proxy: &Proxy,
    config: &ProxyConfig,
    tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    listen: Option<SocketAddr>,
    initial: &[u8],
) {
    let refused = |why| {
        proxy
            .metrics
            .connection(Direction::Outbound, Outcome::Refused);
        tracing::info!(%peer, %dst, "refused: {why}");
    };
    if config.outbound().unknown_destination() == UnknownDestination::Refuse {
        return refused("destination not in the registry");
    }
    if Some(dst) == listen || tcp.local_addr().ok() == Some(dst) {
        // Dialled the listener itself (not redirected; the listener may be bound to a
        // wildcard address): passing through would loop.
        return refused("connection to the outbound listener itself");
    }
    proxy
        .metrics
        .connection(Direction::Outbound, Outcome::Passthrough);
    let timeout = proxy.settings.connect_timeout;
    match connect_tcp(dst, proxy.settings.pool.mark, timeout).await {
        Ok(mut upstream) => {
            tracing::debug!(%peer, %dst, "passthrough");
            if upstream.write_all(initial).await.is_ok() {
                copy(tcp, upstream, peer, dst).await;
            }
        }
        Err(error) => tracing::info!(%peer, %dst, %error, "passthrough failed"),
    }
}

/// Copies `tcp` to an endpoint of `cluster`, sending `initial` (bytes already read from
/// `tcp`) first.
pub(crate) async fn tcp_to_cluster(
    proxy: &Proxy,
    tcp: TcpStream,
    cluster: &Cluster,
    initial: &[u8],
) -> Result<(), UpstreamError> {
    let peer = tcp.peer_addr().ok();
    let Some(picked) = cluster.pick() else {
        return Err(UpstreamError::NoEndpoint(cluster.name().to_owned()));
    };
    let addr = picked.endpoint().address();
    let mut upstream =
        connect_tcp(addr, proxy.settings.pool.mark, cluster.connect_timeout()).await?;
    match picked.endpoint().tls() {
        UpstreamTls::Plaintext => {
            let sent = upstream.write_all(initial).await;
            sent.map_err(|source| UpstreamError::Connect { addr, source })?;
            copy(tcp, upstream, peer, addr).await;
        }
        UpstreamTls::Mtls { expected } => {
            let (mut tls, _) = proxy
                .tls
                .connect(upstream, addr, expected, Codec::Opaque)
                .await?;
            let sent = tls.write_all(initial).await;
            sent.map_err(|source| UpstreamError::Connect { addr, source })?;
            copy(tcp, tls, peer, addr).await;
        }
    }
    Ok(())
}

/// Copies both ways until both sides are done ([`crate::copy`]).
pub(crate) async fn copy<A, B>(
    mut a: A,
    mut b: B,
    from: impl std::fmt::Debug,
    to: impl std::fmt::Display,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    match crate::copy::both_ways(&mut a, &mut b).await {
        Ok(c) => {
            tracing::debug!(?from, %to, sent = c.a_to_b, received = c.b_to_a, "TCP stream done")
        }
        Err(error) => tracing::debug!(?from, %to, %error, "TCP stream ended with an error"),
    }
}

/// Routes one request with the config current when it arrived.
async fn route_request(
    proxy: Arc<Proxy>,
    dst: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let config = proxy.config.current();
    let Some(service) = config.outbound().service(dst) else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "service no longer known");
    };
    let ServiceTarget::Http(table) = service.target() else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "service is no longer HTTP");
    };
    let authority = http::authority(&req).unwrap_or_else(|| dst.to_string());
    let info = RequestInfo {
        method: req.method(),
        authority: &authority,
        scheme: req.uri().scheme_str().unwrap_or("http"),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some(route) = table.find(&info) else {
        tracing::debug!(%dst, %authority, path = req.uri().path(), "no route");
        return error_response(StatusCode::NOT_FOUND, "no route");
    };
    let h2 = service.protocol().is_h2();
    crate::route_exec::serve(&proxy, dst, h2, route, req, authority).await
}

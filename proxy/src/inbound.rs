//! The inbound listener (15006): connections peers open to this host's workload ports.
//! Terminates mutual TLS (STRICT), or also accepts plaintext told apart by the first byte
//! (PERMISSIVE); speaks the codec the client's ALPN chose; forwards to the application on
//! 127.0.0.1, adding `X-Forwarded-Client-Cert` to HTTP requests that came over mTLS.

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::header::HeaderValue;
use ::http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::Proxy;
use crate::config::{InboundPort, MtlsMode, UpstreamTls};
use crate::drain::DrainWatcher;
use crate::http_proxy::{self as http, Upstream};
use crate::listener::{accept_loop, original_dst};
use crate::metrics::{Direction, Outcome};
use crate::outbound::copy;
use crate::pool::{Body, PoolKey, connect_tcp};
use crate::tls::{Codec, Peer};

const XFCC: &str = "x-forwarded-client-cert";
/// First byte of a TLS record carrying a handshake message (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// A bound inbound listener.
#[derive(Debug)]
pub struct Inbound {
    listener: TcpListener,
    proxy: Arc<Proxy>,
}

impl Inbound {
    pub(crate) fn new(listener: TcpListener, proxy: Arc<Proxy>) -> Self {
        Self { listener, proxy }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `drain` is signalled.
    pub async fn run(self, drain: DrainWatcher) {
        let proxy = self.proxy;
        accept_loop("inbound", self.listener, drain, move |tcp, peer, drain| {
            let proxy = proxy.clone();
            async move { handle(proxy, tcp, peer, drain).await }
        })
        .await;
    }
}

async fn handle(proxy: Arc<Proxy>, tcp: TcpStream, peer: SocketAddr, drain: DrainWatcher) {
    let dst = match original_dst(&tcp) {
        Ok(d) => d,
        Err(error) => return tracing::debug!(%peer, %error, "no destination"),
    };
    let config = proxy.config.current();
    let refused = || {
        proxy
            .metrics
            .connection(Direction::Inbound, Outcome::Refused)
    };
    let Some(port) = config.inbound().port(dst.port()).copied() else {
        refused();
        return tracing::info!(%peer, %dst, "refused: not a workload port of this host");
    };
    drop(config);
    let tls = match port.mode() {
        MtlsMode::Strict => true,
        MtlsMode::Permissive => {
            let mut first = [0u8; 1];
            let timeout = proxy.tls.handshake_timeout();
            match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
                Ok(Ok(1)) => first[0] == TLS_HANDSHAKE,
                _ => {
                    refused();
                    return tracing::debug!(%peer, %dst, "closed before sending anything");
                }
            }
        }
    };
    if !tls {
        tracing::debug!(%peer, %dst, "plaintext (permissive)");
        proxy
            .metrics
            .connection(Direction::Inbound, Outcome::Plaintext);
        let codec = (!port.protocol().is_http()).then_some(Codec::Opaque);
        return to_app(proxy, tcp, peer, port, codec, None, drain).await;
    }
    let (stream, client) = match proxy.tls.accept(tcp, peer).await {
        Ok(s) => s,
        Err(error) => {
            refused();
            return tracing::info!(%peer, %dst, %error, "inbound mTLS refused");
        }
    };
    proxy
        .metrics
        .connection(Direction::Inbound, Outcome::Proxied);
    tracing::debug!(%peer, %dst, identity = %client.id, codec = ?client.codec, "inbound mTLS");
    let codec = client
        .codec
        .or((!port.protocol().is_http()).then_some(Codec::Opaque));
    to_app(proxy, stream, peer, port, codec, Some(client), drain).await;
}

/// Carries a connection to the application: `codec` `None` detects HTTP/1.1 or HTTP/2.
async fn to_app<I>(
    proxy: Arc<Proxy>,
    io: I,
    peer: SocketAddr,
    port: InboundPort,
    codec: Option<Codec>,
    client: Option<Peer>,
    drain: DrainWatcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = SocketAddr::new(proxy.settings.app_ip, port.app_port());
    if codec == Some(Codec::Opaque) {
        let timeout = proxy.settings.connect_timeout;
        match connect_tcp(app, proxy.settings.pool.mark, timeout).await {
            Ok(upstream) => copy(io, upstream, peer, app).await,
            Err(error) => tracing::info!(%peer, %app, %error, "application unreachable"),
        }
        return;
    }
    let xfcc = client.and_then(|c| {
        let by = proxy.tls.own_identity()?;
        let value = format!("By={by};Hash={};URI={}", c.cert_sha256, c.id);
        HeaderValue::from_str(&value).ok()
    });
    let p = proxy.clone();
    let handler = move |req| app_request(p.clone(), app, port, xfcc.clone(), req);
    http::serve(io, codec, &proxy.settings.http, handler, drain).await;
}

async fn app_request(
    proxy: Arc<Proxy>,
    app: SocketAddr,
    port: InboundPort,
    xfcc: Option<HeaderValue>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    // Whatever the client claimed is replaced by what the handshake proved.
    req.headers_mut().remove(XFCC);
    if let Some(xfcc) = xfcc {
        req.headers_mut().insert(XFCC, xfcc);
    }
    let codec = match (port.protocol().is_http(), port.protocol().is_h2()) {
        (true, true) => Codec::Http2,
        (true, false) => Codec::Http1,
        (false, _) if req.version() == ::http::Version::HTTP_2 => Codec::Http2,
        (false, _) => Codec::Http1,
    };
    let authority = http::authority(&req).unwrap_or_else(|| app.to_string());
    let up = Upstream {
        pool: &proxy.pool,
        key: PoolKey {
            addr: app,
            tls: UpstreamTls::Plaintext,
            codec,
            max_requests: port.max_requests_per_connection(),
        },
        connect_timeout: proxy.settings.connect_timeout,
        timeout: None,
        metrics: (&proxy.metrics, Direction::Inbound),
    };
    http::forward(up, req, &authority).await
}

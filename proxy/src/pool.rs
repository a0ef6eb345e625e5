//! Upstream connections: TCP (marked so interception skips them), optional mutual TLS, and
//! HTTP connection pools per endpoint: idle HTTP/1.1 connections are reused, HTTP/2 ones are
//! shared by every request to the endpoint. With a per-connection request limit (Envoy's
//! `max_requests_per_connection`) a connection that has carried that many requests is
//! retired: an HTTP/1.1 one is closed after its last response instead of going back to the
//! idle list, an HTTP/2 one takes no new streams and closes when its open ones end.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::config::UpstreamTls;
use crate::tls::{Codec, HandshakeError, MeshTls};

/// Error type of every body the proxy sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streaming body, request or response.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Why a request could not be sent to an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] HandshakeError),
    #[error("HTTP exchange with {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{addr} agreed to opaque TCP where HTTP was asked for")]
    NotHttp { addr: SocketAddr },
    #[error("cluster {0:?} has no endpoints")]
    NoEndpoint(String),
}

/// Opens a TCP connection to `addr`, with `mark` set as SO_MARK when given (so the host's
/// interception rules let the proxy's own traffic through).
pub async fn connect_tcp(
    addr: SocketAddr,
    mark: Option<u32>,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let connect = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(mark) = mark {
            socket2::SockRef::from(&socket).set_mark(mark)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    };
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(UpstreamError::ConnectTimeout { addr, timeout }),
        Ok(Err(source)) => Err(UpstreamError::Connect { addr, source }),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Identifies one pool: an endpoint, how it is secured, and the codec asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub tls: UpstreamTls,
    /// [`Codec::Http1`] or [`Codec::Http2`].
    pub codec: Codec,
    /// Requests one connection carries before it is retired; unlimited when `None`.
    pub max_requests: Option<u32>,
}

/// Settings for upstream connections.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub mark: Option<u32>,
    /// Idle HTTP/1.1 connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// An idle HTTP/1.1 connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mark: None,
            max_idle_per_endpoint: 32,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A pooled connection's sender and how many requests it has carried.
struct Counted<S> {
    sender: S,
    used: u32,
}

#[derive(Default)]
struct Entry {
    h2: tokio::sync::Mutex<Option<Counted<http2::SendRequest<Body>>>>,
    idle: Mutex<Vec<(Instant, Counted<http1::SendRequest<Body>>)>>,
}

/// All upstream HTTP connection pools of one proxy.
pub struct Pool {
    tls: Arc<MeshTls>,
    settings: PoolSettings,
    entries: Mutex<HashMap<PoolKey, Arc<Entry>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("Pool").field("endpoints", &n).finish()
    }
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Pool {
    pub fn new(tls: Arc<MeshTls>, settings: PoolSettings) -> Self {
        Self {
            tls,
            settings,
            entries: Mutex::default(),
        }
    }

    pub fn tls(&self) -> &Arc<MeshTls> {
        &self.tls
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    fn entry(&self, key: &PoolKey) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(key.clone()).or_default().clone()
    }

    /// Sends `req` (URI already in the form the codec wants) on a pooled or new connection.
    pub async fn send(
        &self,
        key: &PoolKey,
        connect_timeout: Duration,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let entry = self.entry(key);
        let addr = key.addr;
        let http = |source| UpstreamError::Http { addr, source };
        if key.codec == Codec::Http2 {
            let mut sender = self.h2_sender(key, &entry, connect_timeout).await?;
            return sender.send_request(req).await.map_err(http);
        }
        let mut req = req;
        let mut reused = self.idle_h1(&entry);
        let (mut conn, response) = loop {
            if let Some(mut conn) = reused.take() {
                match conn.sender.try_send_request(req).await {
                    Ok(response) => break (conn, response),
                    // The idle connection was closed before the request went out: the request
                    // comes back untouched, so it is safe to send it on a new connection.
                    Err(mut e) => match e.take_message() {
                        Some(back) => {
                            tracing::debug!(%addr, error = %e.error(), "idle connection gone, reconnecting");
                            req = back;
                            continue;
                        }
                        None => return Err(http(e.into_error())),
                    },
                }
            }
            match self.connect(key, connect_timeout).await? {
                Sender::H1(mut s) => {
                    let response = s.send_request(req).await.map_err(http)?;
                    break (Counted { sender: s, used: 0 }, response);
                }
                // The server chose HTTP/2 although HTTP/1.1 was offered; go with it.
                Sender::H2(mut s) => return s.send_request(req).await.map_err(http),
            }
        };
        conn.used = conn.used.saturating_add(1);
        if key.max_requests.is_some_and(|max| conn.used >= max) {
            // Retired: dropped once the response is read, which closes the connection.
            tracing::debug!(%addr, requests = conn.used, "connection retired after its request limit");
            tokio::spawn(async move {
                let _ = conn.sender.ready().await;
            });
            return Ok(response);
        }
        // Back to the idle list once the response body is read (never after an upgrade).
        let max_idle = self.settings.max_idle_per_endpoint;
        tokio::spawn(async move {
            if conn.sender.ready().await.is_ok() && !conn.sender.is_closed() {
                let mut idle = entry.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < max_idle {
                    idle.push((Instant::now(), conn));
                }
            }
        });
        Ok(response)
    }

    fn idle_h1(&self, entry: &Entry) -> Option<Counted<http1::SendRequest<Body>>> {
        let mut idle = entry.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((since, conn)) = idle.pop() {
            if conn.sender.is_ready() && since.elapsed() < self.settings.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    async fn h2_sender(
        &self,
        key: &PoolKey,
        entry: &Entry,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<Body>, UpstreamError> {
        // Held across the connect so concurrent requests share one new connection.
        let mut shared = entry.h2.lock().await;
        if let Some(conn) = shared.as_mut().filter(|c| !c.sender.is_closed()) {
            let sender = conn.sender.clone();
            conn.used = conn.used.saturating_add(1);
            if key.max_requests.is_some_and(|max| conn.used >= max) {
                // No new streams on it; it closes when its last handle and stream are done.
                *shared = None;
            }
            return Ok(sender);
        }
        match self.connect(key, connect_timeout).await? {
            Sender::H2(s) => {
                let conn = Counted {
                    sender: s.clone(),
                    used: 1,
                };
                if key.max_requests.is_none_or(|max| max > 1) {
                    *shared = Some(conn);
                }
                Ok(s)
            }
            // The server refused HTTP/2 (it agreed to HTTP/1.1 only).
            Sender::H1(_) => Err(UpstreamError::NotHttp { addr: key.addr }),
        }
    }

    async fn connect(&self, key: &PoolKey, timeout: Duration) -> Result<Sender, UpstreamError> {
        let tcp = connect_tcp(key.addr, self.settings.mark, timeout).await?;
        match &key.tls {
            UpstreamTls::Plaintext => handshake(tcp, key.codec, key.addr).await,
            UpstreamTls::Mtls { expected } => {
                let (tls, agreed) = self.tls.connect(tcp, key.addr, expected, key.codec).await?;
                if agreed == Codec::Opaque {
                    return Err(UpstreamError::NotHttp { addr: key.addr });
                }
                handshake(tls, agreed, key.addr).await
            }
        }
    }
}

async fn handshake<I>(io: I, codec: Codec, addr: SocketAddr) -> Result<Sender, UpstreamError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let http = |source| UpstreamError::Http { addr, source };
    if codec == Codec::Http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%addr, %error, "upstream HTTP/2 connection ended");
            }
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(http)?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%addr, %error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(Sender::H1(sender))
    }
}

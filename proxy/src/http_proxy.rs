//! HTTP on both sides of the proxy: serving a downstream connection with bounded headers and a
//! header read timeout, and forwarding one request through the pool with hop-by-hop headers
//! removed, the URI in the form the upstream codec wants, a timeout, and WebSocket-style
//! upgrades turned into a byte copy after `101 Switching Protocols`.
//!
//! Request framing is hyper's: a malformed head, a bad or repeated-and-different
//! `Content-Length`, a `Transfer-Encoding` that does not end in `chunked` (or on HTTP/1.0) get
//! `400` and a close; too many or too large headers get `431`. With both `Content-Length` and
//! `Transfer-Encoding`, the chunked framing wins, `Content-Length` is dropped and the
//! connection is closed after the response (RFC 9112 §6.3), so nothing can be smuggled.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::drain::DrainWatcher;
use crate::metrics::{Direction, Metrics};
use crate::pool::{Body, BoxError, Pool, PoolKey, UpstreamError};
use crate::tls::Codec;

/// Limits on what a downstream client may send.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A client must finish sending a request's headers within this time (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// Most header fields in one HTTP/1.1 request.
    pub max_headers: usize,
    /// Most bytes of HTTP/1.1 request head (and read buffer); at least 8192.
    pub max_header_bytes: usize,
    /// Most bytes of an HTTP/2 header list.
    pub max_header_list_size: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_header_list_size: 64 * 1024,
        }
    }
}

/// Serves HTTP on `io`: `codec` fixes the version (from ALPN), `None` detects it from the
/// HTTP/2 preface. Ends when the client is done or, after a drain signal, gracefully.
pub(crate) async fn serve<I, F, Fut>(
    io: I,
    codec: Option<Codec>,
    settings: &HttpSettings,
    handler: F,
    mut drain: DrainWatcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match codec {
        Some(Codec::Http1) => builder.http1_only(),
        Some(Codec::Http2) => builder.http2_only(),
        _ => builder,
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_list_size);
    let service = hyper::service::service_fn(move |req| {
        let response = handler(req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "downstream HTTP connection ended with an error");
    }
}

/// A locally generated response.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// The request's authority: the URI's (HTTP/2, absolute form) or the `Host` header's.
pub(crate) fn authority(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), keeping `te: trailers` (gRPC needs it) and,
/// when `keep_upgrade`, `connection`/`upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && *n == header::UPGRADE))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection", "http2-settings"] {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::PROXY_AUTHENTICATE);
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(header::TE);
    }
}

/// Where and how to send one request.
#[derive(Debug)]
pub(crate) struct Upstream<'a> {
    pub pool: &'a Pool,
    pub key: PoolKey,
    pub connect_timeout: Duration,
    /// Until the response headers arrive.
    pub timeout: Option<Duration>,
    pub metrics: (&'a Metrics, Direction),
}

/// Sends `req` upstream and returns the response to give the client; every failure becomes a
/// response (400/503/504).
pub(crate) async fn forward(
    up: Upstream<'_>,
    req: Request<Incoming>,
    authority: &str,
) -> Response<Body> {
    let (metrics, direction) = up.metrics;
    let response = match exchange(&up, req, authority).await {
        Ok(r) => r,
        Err(f) => f.response(),
    };
    metrics.request(direction, response.status().as_u16());
    response
}

/// Why one exchange with an upstream produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The client's request (authority, path or body) was unusable: 400.
    BadRequest,
    /// No connection (TCP, TLS) could be made: 503.
    Connect,
    /// The connection broke before response headers: 503.
    Reset,
    /// The timeout passed before response headers: 504.
    Timeout,
}

impl Failure {
    pub(crate) fn response(self) -> Response<Body> {
        match self {
            Self::BadRequest => {
                let mut r = error_response(StatusCode::BAD_REQUEST, "malformed request");
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Self::Connect | Self::Reset => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, "upstream connect error")
            }
            Self::Timeout => {
                error_response(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
            }
        }
    }
}

/// One exchange: the request goes to `up` once; the response comes back with hop-by-hop
/// headers removed (or, after `101`, the connection is spliced).
pub(crate) async fn exchange<B>(
    up: &Upstream<'_>,
    mut req: Request<B>,
    authority: &str,
) -> Result<Response<Body>, Failure>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let upgrade = up.key.codec == Codec::Http1
        && req.version() == Version::HTTP_11
        && is_upgrade(req.headers());
    let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = match up.key.codec {
        Codec::Http2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query(path)
                .build()
        }
        _ => {
            parts.version = Version::HTTP_11;
            if let Ok(host) = HeaderValue::from_str(authority) {
                parts.headers.insert(header::HOST, host);
            }
            Uri::builder().path_and_query(path).build()
        }
    };
    parts.uri = match uri {
        Ok(uri) => uri,
        Err(_) => return Err(Failure::BadRequest),
    };
    // Tells a broken client body (400) from a broken upstream (503).
    let body_failed = Arc::new(AtomicBool::new(false));
    let flag = body_failed.clone();
    let body = body.map_err(move |e| {
        flag.store(true, Ordering::Relaxed);
        e.into()
    });
    let req = Request::from_parts(parts, body.boxed_unsync());
    let addr = up.key.addr;
    let send = up.pool.send(&up.key, up.connect_timeout, req);
    let result = match up.timeout {
        Some(t) => match tokio::time::timeout(t, send).await {
            Ok(r) => r,
            Err(_) => {
                tracing::info!(%addr, timeout = ?t, "upstream request timed out");
                return Err(Failure::Timeout);
            }
        },
        None => send.await,
    };
    let mut response = match result {
        Ok(r) => r,
        Err(error) if body_failed.load(Ordering::Relaxed) => {
            tracing::info!(%addr, %error, "malformed request body");
            return Err(Failure::BadRequest);
        }
        Err(error @ UpstreamError::Http { .. }) => {
            tracing::info!(%addr, %error, "upstream request failed");
            return Err(Failure::Reset);
        }
        Err(error) => {
            tracing::info!(%addr, %error, "upstream connection failed");
            return Err(Failure::Connect);
        }
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(downstream)) = (switching, downstream) {
        let upstream = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(downstream, upstream) {
                Ok((d, u)) => {
                    let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                    if let Err(error) = crate::copy::both_ways(&mut d, &mut u).await {
                        tracing::debug!(%addr, %error, "upgraded connection ended");
                    }
                }
                Err(error) => tracing::debug!(%addr, %error, "upgrade failed"),
            }
        });
    } else {
        strip_hop_by_hop(response.headers_mut(), false);
    }
    Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-end", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["te", "x-end"]);
    }

    #[test]
    fn upgrade_headers_stay_when_upgrading() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
    }
}

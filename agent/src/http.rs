//! A small HTTP/1.1 server for the admin and health ports: each request is answered by a
//! plain function from the request's method, path and query to a response, until the drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hostmesh_proxy::drain::DrainWatcher;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a handler sees of a request.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Request<'_> {
    /// The value of `key` in the query string.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

pub type Body = Full<Bytes>;

/// A response with a body and a content type.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

pub fn json(value: &serde_json::Value) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Serves `handler` on `listener` until `drain` is signalled.
pub async fn serve<H>(
    name: &'static str,
    listener: TcpListener,
    handler: Arc<H>,
    mut drain: DrainWatcher,
) where
    H: Fn(&Request<'_>) -> Response<Body> + Send + Sync + 'static,
{
    let local: Option<SocketAddr> = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = drain.signaled() => break,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(error) => {
                tracing::warn!(server = name, %error, "accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let request = Request {
                        method: req.method(),
                        path: req.uri().path(),
                        query: req.uri().query(),
                    };
                    Ok::<_, Infallible>(handler(&request))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
    tracing::debug!(server = name, ?local, "stopped");
}

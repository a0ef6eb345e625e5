//! The status table over plain HTTP, for operators and `hostmesh status`:
//! `GET /debug/connections` answers a JSON array of [`NodeStatus`](super::NodeStatus), one
//! per connected stream. Anything else is 404 (or 405 for another method).

use std::convert::Infallible;
use std::future::Future;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::AdsServer;

/// The path of the connection list.
pub const CONNECTIONS_PATH: &str = "/debug/connections";

fn answer(server: &AdsServer, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != CONNECTIONS_PATH {
        return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
    }
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"use GET\n".to_vec(),
        );
    }
    match serde_json::to_vec_pretty(&server.status()) {
        Ok(body) => reply(StatusCode::OK, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n").into_bytes(),
        ),
    }
}

/// Serves the status API on `listener` until `shutdown` completes.
pub async fn serve_status(
    listener: TcpListener,
    server: AdsServer,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "status API: accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&server, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await
            {
                debug!(%peer, error = %e, "status API connection ended");
            }
        });
    }
}

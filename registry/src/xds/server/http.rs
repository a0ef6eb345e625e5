//! The status API over plain HTTP, for operators, `hostmesh status` and `hostmesh describe`:
//!
//! - `GET /debug/connections`: a JSON array of [`NodeStatus`](super::NodeStatus), one per
//!   connected stream.
//! - `GET /debug/sources`: the [`RegistryReport`]: each source's health, the merge's
//!   conflicts and rejections.
//! - `GET /debug/services/<host>`: the merged services of that host with the provenance of
//!   every endpoint ([`ServiceDescription`](crate::sources::health::ServiceDescription)).
//!
//! - `GET /metrics`: the control server's metrics in Prometheus' text format
//!   ([`super::metrics`]).
//!
//! Anything else is 404 (or 405 for another method).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::AdsServer;
use crate::model::Snapshot;
use crate::sources::health::{RegistryReport, describe};

/// The path of the connection list.
pub const CONNECTIONS_PATH: &str = "/debug/connections";
/// The path of the registry report.
pub const SOURCES_PATH: &str = "/debug/sources";
/// The path of the metrics.
pub const METRICS_PATH: &str = "/metrics";
/// The prefix of a service's description.
pub const SERVICES_PATH: &str = "/debug/services/";

/// What the status API shows of the registry: the merge's report and the snapshot in force.
#[derive(Debug, Clone)]
pub struct RegistryPages {
    pub report: watch::Receiver<Arc<RegistryReport>>,
    pub snapshots: watch::Receiver<Snapshot>,
}

fn answer(
    server: &AdsServer,
    registry: Option<&RegistryPages>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    let path = request.uri().path();
    let known = path == CONNECTIONS_PATH
        || path == METRICS_PATH
        || (registry.is_some() && (path == SOURCES_PATH || path.starts_with(SERVICES_PATH)));
    if !known {
        return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
    }
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"use GET\n".to_vec(),
        );
    }
    if path == METRICS_PATH {
        let report = registry.map(|r| r.report.borrow().clone());
        let text = super::metrics::render(server, report.as_deref());
        return reply(
            StatusCode::OK,
            super::metrics::CONTENT_TYPE,
            text.into_bytes(),
        );
    }
    let body = match (registry, path.strip_prefix(SERVICES_PATH)) {
        (Some(r), _) if path == SOURCES_PATH => serde_json::to_vec_pretty(&**r.report.borrow()),
        (Some(r), Some(host)) => {
            let found = describe(&r.snapshots.borrow(), &r.report.borrow().conflicts, host);
            if found.is_empty() {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("no service {host}\n").into_bytes(),
                );
            }
            serde_json::to_vec_pretty(&found)
        }
        _ => serde_json::to_vec_pretty(&server.status()),
    };
    match body {
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
    registry: Option<RegistryPages>,
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
        let (server, registry) = (server.clone(), registry.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&server, registry.as_ref(), &request);
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

//! The admin port (127.0.0.1:15000) and the health and metrics port (15020).
//!
//! Admin: `GET /config_dump` (JSON: the running config's version, where it came from, and
//! every applied xDS resource with its version and the fields an operator looks for),
//! `GET /clusters` (one line per cluster and endpoint, Envoy's style), `GET /certs` (this
//! host's certificate and its expiry), `POST /logging?level=debug` (changes the log filter).
//! Health: `GET /healthz/ready` (200 only once everything is up, 503 before and while
//! stopping), `GET /stats/prometheus` (the proxy's and the agent's metrics).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use hostmesh_ca::workload::WorkloadCertificate;
use hostmesh_proxy::ConfigHandle;
use hostmesh_proxy::xds::{MeshNames, Resources};
use http::{Method, Response, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::http::{Body, Request, json, respond, text};
use crate::logging::LogControl;

/// What the admin and health pages read.
#[derive(Debug)]
pub struct AgentView {
    /// Everything is up (and the agent is not stopping).
    pub ready: Arc<AtomicBool>,
    pub config: ConfigHandle,
    pub applied: watch::Receiver<Arc<Resources>>,
    pub names: watch::Receiver<Arc<MeshNames>>,
    pub certificate: watch::Receiver<Arc<WorkloadCertificate>>,
    /// `control server` or `last good config`.
    pub source: watch::Receiver<&'static str>,
    pub log: LogControl,
    pub metrics: Registry,
}

/// The admin page's answer to `req`.
pub fn admin(view: &AgentView, req: &Request<'_>) -> Response<Body> {
    match (req.method, req.path) {
        (&Method::GET, "/config_dump") => json(&config_dump(view)),
        (&Method::GET, "/clusters") => text(StatusCode::OK, clusters(&view.applied.borrow())),
        (&Method::GET, "/certs") => json(&certs(&view.certificate.borrow())),
        (&Method::POST, "/logging") => match req.param("level") {
            Some(level) => match view.log.set(level) {
                Ok(()) => text(StatusCode::OK, format!("log filter set to {level}\n")),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            None => text(
                StatusCode::OK,
                format!(
                    "log filter: {}\nchange it with POST /logging?level=<filter>\n",
                    view.log.current()
                ),
            ),
        },
        (_, "/logging") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "/config_dump  /clusters  /certs  POST /logging?level=<filter>\n",
        ),
    }
}

/// The health page's answer to `req`.
pub fn health(view: &AgentView, req: &Request<'_>) -> Response<Body> {
    match req.path {
        "/healthz/ready" if view.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/healthz/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/stats/prometheus" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, &view.metrics) {
                Ok(()) => respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    out,
                ),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "/healthz/ready  /stats/prometheus\n"),
    }
}

fn config_dump(view: &AgentView) -> Value {
    let r = view.applied.borrow().clone();
    let clusters: Vec<Value> = r
        .clusters
        .iter()
        .map(|(name, c)| {
            json!({
                "name": name,
                "version": c.version,
                "type": format!("{:?}", c.body.cluster_discovery_type),
                "lbPolicy": c.body.lb_policy,
            })
        })
        .collect();
    let endpoints: Vec<Value> = r
        .endpoints
        .iter()
        .map(|(name, e)| {
            let addrs: Vec<String> = endpoint_addrs(&e.body)
                .iter()
                .map(ToString::to_string)
                .collect();
            json!({ "clusterName": name, "version": e.version, "endpoints": addrs })
        })
        .collect();
    let listeners: Vec<Value> = r
        .listeners
        .iter()
        .map(|(name, l)| {
            json!({
                "name": name,
                "version": l.version,
                "trafficDirection": l.body.traffic_direction,
                "filterChains": l.body.filter_chains.len(),
            })
        })
        .collect();
    let routes: Vec<Value> = r
        .routes
        .iter()
        .map(|(name, rc)| {
            let hosts: Vec<Value> = rc
                .body
                .virtual_hosts
                .iter()
                .map(
                    |vh| json!({"name": vh.name, "domains": vh.domains, "routes": vh.routes.len()}),
                )
                .collect();
            json!({ "name": name, "version": rc.version, "virtualHosts": hosts })
        })
        .collect();
    let names: serde_json::Map<String, Value> = view
        .names
        .borrow()
        .names
        .iter()
        .map(|(n, info)| (n.clone(), json!(info.ips)))
        .collect();
    json!({
        "version": view.config.current().version(),
        "source": *view.source.borrow(),
        "clusters": clusters,
        "endpoints": endpoints,
        "listeners": listeners,
        "routes": routes,
        "names": names,
    })
}

fn endpoint_addrs(cla: &ClusterLoadAssignment) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for e in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
        let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
            continue;
        };
        let Some(address::Address::SocketAddress(sa)) =
            ep.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            continue;
        };
        let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
            continue;
        };
        if let (Ok(ip), Ok(port)) = (sa.address.parse(), u16::try_from(port)) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

fn clusters(r: &Resources) -> String {
    let mut out = String::new();
    for (name, c) in &r.clusters {
        out.push_str(&format!("{name}::added_via_api::true\n"));
        let service = c
            .body
            .eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| name.clone());
        let assignment = r
            .endpoints
            .get(&service)
            .map(|e| e.body.clone())
            .or_else(|| c.body.load_assignment.clone().map(Arc::new));
        for addr in assignment.iter().flat_map(|a| endpoint_addrs(a)) {
            out.push_str(&format!("{name}::{addr}::health_flags::healthy\n"));
        }
    }
    out
}

fn certs(cert: &WorkloadCertificate) -> Value {
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    };
    let left = cert
        .not_after
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs())
        .unwrap_or_default();
    json!({
        "identity": cert.id.to_string(),
        "serial": cert.serial,
        "notBefore": humantime::format_rfc3339_seconds(cert.not_before).to_string(),
        "notAfter": humantime::format_rfc3339_seconds(cert.not_after).to_string(),
        "notAfterUnix": unix(cert.not_after),
        "secondsUntilExpiry": left,
    })
}

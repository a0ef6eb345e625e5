//! A mesh for traffic-management scenarios: the control server fed a `ServiceEntry` for
//! `shop` (two workloads, `v1` and `v2`, each behind its own proxy's inbound) plus the
//! test's own `DestinationRule`/`VirtualService` YAML; `front`'s outbound at the VIP; apps
//! that count what reaches them and answer as the test says.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::mesh::*;

pub const SHOP: &str = "shop.demo.svc.cluster.local";

/// An app delay of nothing.
pub const NO_WAIT: Duration = Duration::ZERO;

/// The `shop` VirtualService with these `http` routes (YAML, indented as list items).
pub fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: demo}}
spec:
  hosts: [{SHOP}]
  http:
{http}"
    )
}

/// What an app does with a request: the status to answer and how long to wait first.
pub type Behaviour = Arc<dyn Fn(&Request<Incoming>) -> (u16, Duration) + Send + Sync>;

/// A tiny HTTP/1.1 app: counts requests, answers by `behaviour`, and reports what it saw in
/// response headers (`x-app`, `x-path` with the query, `x-host`, `x-saw-<name>` for each
/// `x-` request header).
pub struct App {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl App {
    pub async fn start(name: &'static str, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (behaviour, hits) = (behaviour.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let (status, delay) = behaviour(&req);
                        async move {
                            tokio::time::sleep(delay).await;
                            let mut b = Response::builder()
                                .status(status)
                                .header("x-app", name)
                                .header("x-path", req.uri().path_and_query().unwrap().as_str())
                                .header(
                                    "x-host",
                                    req.headers()
                                        .get("host")
                                        .cloned()
                                        .unwrap_or("none".parse().unwrap()),
                                );
                            for (k, v) in req.headers() {
                                if let Some(rest) = k.as_str().strip_prefix("x-") {
                                    b = b.header(format!("x-saw-{rest}"), v);
                                }
                            }
                            b = b.header("server", "app");
                            Ok::<_, Infallible>(
                                b.body(Full::new(Bytes::from_static(b"ok"))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            connections,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Always `status`, after `delay`.
pub fn answer(status: u16, delay: Duration) -> Behaviour {
    Arc::new(move |_| (status, delay))
}

pub struct TrafficWorld {
    pub control: Control,
    pub front: Host,
    pub hosts: Vec<Host>,
    pub vip: SocketAddr,
    /// With [`Setup::second_front`]: another client and the service address it listens on.
    pub second: Option<(Host, SocketAddr)>,
}

/// What a scenario needs beyond the defaults: node labels and locality of the client, the
/// workloads' localities, a second client.
#[derive(Default)]
pub struct Setup {
    pub front_labels: Vec<(&'static str, &'static str)>,
    pub front_locality: Option<&'static str>,
    /// `locality` of the `v1` and `v2` workload entries.
    pub localities: [Option<&'static str>; 2],
    /// Labels of a second client (`front-b`), at its own address of the service.
    pub second_front: Option<Vec<(&'static str, &'static str)>>,
}

impl TrafficWorld {
    /// `policy` is YAML appended to the service's (DestinationRule, VirtualService).
    pub async fn start(apps: [&App; 2], policy: &str) -> Self {
        Self::start_with(apps, policy, Setup::default()).await
    }

    pub async fn start_with(apps: [&App; 2], policy: &str, setup: Setup) -> Self {
        let block = loopback_block();
        let control = Control::start_with(snapshot(1, ""), true).await;
        let labelled = |mut h: Host, labels: &[(&str, &str)]| {
            h.settings.node.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            h
        };
        let mut front = labelled(
            control.host(ip(block, 20), "front", "front"),
            &setup.front_labels,
        );
        front.settings.node.locality = setup.front_locality.map(str::to_owned);
        let vip = control
            .outbound(&front, SocketAddr::new(ip(block, 10), 0))
            .await;
        let mut second = None;
        if let Some(labels) = &setup.second_front {
            let host = labelled(control.host(ip(block, 30), "front-b", "front"), labels);
            let addr = control
                .outbound(&host, SocketAddr::new(ip(block, 11), vip.port()))
                .await;
            second = Some((host, addr));
        }
        let addresses = std::iter::once(vip)
            .chain(second.as_ref().map(|s| s.1))
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let locality =
            |i: usize| setup.localities[i].map_or(String::new(), |l| format!("\n  locality: {l}"));
        let mut hosts = Vec::new();
        let mut inbounds = Vec::new();
        for ((n, name), app) in [(21, "v1"), (22, "v2")].into_iter().zip(apps) {
            let host = control.host(ip(block, n), &format!("shop-{name}"), "shop");
            inbounds.push(
                control
                    .inbound(&host, SocketAddr::new(ip(block, n), app.addr.port()))
                    .await,
            );
            hosts.push(host);
        }
        let yaml = format!(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop, namespace: demo}}
spec:
  hosts: [{SHOP}]
  addresses: [{addresses}]
  location: MESH_INTERNAL
  ports: [{{number: {vip_port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: shop}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: shop-v1, namespace: demo}}
spec:
  address: {a}
  ports: {{http: {ap}}}
  labels: {{app: shop, version: v1}}
  serviceAccount: shop{l1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: shop-v2, namespace: demo}}
spec:
  address: {b}
  ports: {{http: {bp}}}
  labels: {{app: shop, version: v2}}
  serviceAccount: shop{l2}
---
{policy}"#,
            vip_port = vip.port(),
            l1 = locality(0),
            l2 = locality(1),
            a = inbounds[0].ip(),
            ap = inbounds[0].port(),
            b = inbounds[1].ip(),
            bp = inbounds[1].port(),
        );
        control.publish(snapshot(2, &yaml)).await;
        let mut world = Self {
            control,
            front,
            hosts,
            vip,
            second,
        };
        for h in &mut world.hosts {
            world.control.start_xds(h);
            h.ready().await;
        }
        world.control.start_xds(&mut world.front);
        world.front.ready().await;
        if let Some((h, _)) = &mut world.second {
            world.control.start_xds(h);
            h.ready().await;
        }
        world
    }

    /// One request on a new connection.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        send_to(self.vip, req).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(request("GET", path, &[])).await
    }
}

/// One request to `addr` on a new connection.
pub async fn send_to(addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    send_from(None, addr, req).await
}

/// One request to `addr` on a new connection from `source` (any loopback address).
pub async fn send_from(
    source: Option<std::net::IpAddr>,
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Answer {
    {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let tcp = socket.connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = tokio::time::timeout(BOUND, sender.send_request(req))
            .await
            .expect("an answer within the bound")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", SHOP);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
    }
}

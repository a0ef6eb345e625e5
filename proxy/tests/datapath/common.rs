//! The test mesh: a CA in a temp dir, host identities, proxies, and tiny applications
//! (an HTTP/1.1 + HTTP/2 echo with trailers and WebSocket-style upgrades, a TCP echo).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{CertificateSlot, TrustBundle, certified_key};
use hostmesh_ca::{CaPaths, CertificateAuthority};
use hostmesh_proxy::config::spec::*;
use hostmesh_proxy::config::{LbPolicy, MtlsMode, Protocol, UnknownDestination};
use hostmesh_proxy::drain::{self, DrainTrigger};
use hostmesh_proxy::pool::{Body, BoxError};
use hostmesh_proxy::tls::MeshTls;
use hostmesh_proxy::{ConfigHandle, Proxy, ProxyConfig, Settings};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const FRONT: &str = "spiffe://cluster.local/ns/demo/sa/front";
pub const BILL: &str = "spiffe://cluster.local/ns/demo/sa/bill-service";

/// A bound on every wait in these tests.
pub const BOUND: Duration = Duration::from_secs(10);

/// A CA and what hangs off it.
pub struct Mesh {
    _dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub bundle: TrustBundle,
    drains: std::sync::Mutex<Vec<DrainTrigger>>,
}

impl Mesh {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path().join("ca"));
        store::init(&paths, &InitOptions::default(), None).unwrap();
        let ca = CertificateAuthority::load(&paths, None).unwrap();
        let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
        Self {
            _dir: dir,
            ca,
            bundle,
            drains: Default::default(),
        }
    }

    /// A fresh certificate for `id` from this CA.
    pub fn certificate(&self, id: &str) -> rustls::sign::CertifiedKey {
        let issued = self
            .ca
            .issue_with_new_key(&id.parse().unwrap(), &[], Duration::from_secs(3600))
            .unwrap();
        certified_key(issued.chain.to_pem().as_bytes(), issued.key_pem.as_bytes()).unwrap()
    }

    pub fn slot(&self, id: &str) -> Arc<CertificateSlot> {
        CertificateSlot::new(self.certificate(id))
    }

    pub fn tls(&self, slot: Arc<CertificateSlot>) -> Arc<MeshTls> {
        Arc::new(MeshTls::new(slot, self.bundle.clone(), Duration::from_secs(5)).unwrap())
    }

    pub fn proxy(&self, slot: Arc<CertificateSlot>, settings: Settings) -> Arc<Proxy> {
        Proxy::new(ConfigHandle::default(), self.tls(slot), settings)
    }

    /// Runs `proxy`'s inbound listener on 127.0.0.1 (any port).
    pub async fn inbound(&self, proxy: &Arc<Proxy>) -> SocketAddr {
        let inbound = proxy.inbound("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = inbound.local_addr().unwrap();
        tokio::spawn(inbound.run(self.watcher()));
        addr
    }

    /// Runs `proxy`'s outbound listener on a VIP of its own (127.0.0.x, any port).
    pub async fn outbound(&self, proxy: &Arc<Proxy>) -> SocketAddr {
        let outbound = proxy.outbound(vip()).await.unwrap();
        let addr = outbound.local_addr().unwrap();
        tokio::spawn(outbound.run(self.watcher()));
        addr
    }

    fn watcher(&self) -> drain::DrainWatcher {
        let (trigger, watcher) = drain::channel();
        self.drains.lock().unwrap().push(trigger);
        watcher
    }
}

/// A distinct loopback address per call, so tests in parallel never share one.
pub fn vip() -> SocketAddr {
    static NEXT: AtomicU8 = AtomicU8::new(10);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    SocketAddr::from(([127, 0, 0, n], 0))
}

pub fn install(proxy: &Proxy, spec: &ConfigSpec) {
    proxy.config().replace(ProxyConfig::build(spec).unwrap());
}

// ---- config spec helpers -------------------------------------------------------------------

pub fn mtls_cluster(name: &str, endpoints: &[SocketAddr], expected: &[&str]) -> ClusterSpec {
    ClusterSpec {
        name: name.into(),
        endpoints: endpoints
            .iter()
            .map(|a| EndpointSpec {
                address: *a,
                weight: 1,
                labels: BTreeMap::new(),
                tls: None,
            })
            .collect(),
        lb: LbPolicy::RoundRobin,
        tls: UpstreamTlsSpec::Mtls {
            expected_identities: expected.iter().map(|s| s.to_string()).collect(),
        },
        connect_timeout: Some(Duration::from_secs(5)),
        http2: false,
        thresholds: Default::default(),
        outlier: None,
        fallback: None,
    }
}

pub fn route_to(clusters: &[(&str, u32)]) -> RouteSpec {
    RouteSpec {
        name: "default".into(),
        path: PathMatchSpec::Prefix("/".into()),
        headers: vec![],
        clusters: clusters
            .iter()
            .map(|(c, w)| WeightedClusterSpec {
                cluster: c.to_string(),
                weight: *w,
            })
            .collect(),
        timeout: None,
        policy: Default::default(),
    }
}

pub fn http_service(vip: SocketAddr, protocol: Protocol, routes: Vec<RouteSpec>) -> ServiceSpec {
    ServiceSpec {
        name: "bill-service.demo.svc.cluster.local".into(),
        addresses: vec![vip],
        endpoints_of: None,
        protocol,
        target: TargetSpec::Http(RouteTableSpec {
            name: "9999".into(),
            virtual_hosts: vec![VirtualHostSpec {
                name: "bill".into(),
                domains: vec!["*".into()],
                routes,
                rate_limit: None,
            }],
        }),
    }
}

pub fn tcp_service(vip: SocketAddr, cluster: &str) -> ServiceSpec {
    ServiceSpec {
        name: "bill-tcp".into(),
        addresses: vec![vip],
        endpoints_of: None,
        protocol: Protocol::Tcp,
        target: TargetSpec::Tcp {
            cluster: cluster.into(),
        },
    }
}

pub fn outbound_spec(clusters: Vec<ClusterSpec>, services: Vec<ServiceSpec>) -> ConfigSpec {
    ConfigSpec {
        version: "test".into(),
        clusters,
        outbound: OutboundSpec {
            services,
            unknown_destination: UnknownDestination::Refuse,
        },
        inbound: InboundSpec::default(),
    }
}

pub fn inbound_spec(ports: &[(SocketAddr, SocketAddr, Protocol, MtlsMode)]) -> ConfigSpec {
    ConfigSpec {
        version: "test".into(),
        inbound: InboundSpec {
            default_mode: MtlsMode::Strict,
            ports: ports
                .iter()
                .map(|(listen, app, protocol, mode)| InboundPortSpec {
                    port: listen.port(),
                    app_port: app.port(),
                    protocol: *protocol,
                    mode: Some(*mode),
                })
                .collect(),
        },
        ..Default::default()
    }
}

// ---- applications --------------------------------------------------------------------------

/// HTTP/1.1 and HTTP/2 (prior knowledge) echo on 127.0.0.1. Streams the request body back,
/// reports what it saw in `x-app`, `x-seen-*` headers, adds gRPC-style trailers on `/grpc`,
/// answers `Upgrade` with 101 and echoes the upgraded bytes, waits 5 s on `/slow`.
pub async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| echo(name, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn echo(name: &str, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = |h: &str| {
        req.headers()
            .get(h)
            .cloned()
            .unwrap_or(HeaderValue::from_static("none"))
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-app", HeaderValue::from_str(name).unwrap());
    headers.insert("x-seen-xfcc", seen("x-forwarded-client-cert"));
    headers.insert("x-seen-host", seen("host"));
    let version = format!("{:?}", req.version());
    headers.insert("x-seen-version", HeaderValue::from_str(&version).unwrap());
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if req.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("upgrade"));
        response
            .headers_mut()
            .insert("upgrade", HeaderValue::from_static("websocket"));
        return Ok(response);
    }
    let grpc = req.uri().path() == "/grpc";
    let data = req
        .into_body()
        .into_data_stream()
        .map(|d| d.map(Frame::data).map_err(BoxError::from));
    let body: Body = if grpc {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("x-trailer", HeaderValue::from_static("intact"));
        let end = futures::stream::once(async move { Ok(Frame::trailers(trailers)) });
        BodyExt::boxed_unsync(StreamBody::new(data.chain(end)))
    } else {
        BodyExt::boxed_unsync(StreamBody::new(data))
    };
    let mut response = Response::new(body);
    *response.headers_mut() = headers;
    Ok(response)
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Echoes every byte back on 127.0.0.1.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// ---- clients -------------------------------------------------------------------------------

/// An HTTP/1.1 client connection.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender
}

/// An HTTP/2 client connection (prior knowledge).
pub async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "bill-service.demo.svc.cluster.local:9999")
        .body(full(""))
        .unwrap()
}

/// Sends on an HTTP/1.1 connection and collects the response.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Body>,
    req: Request<Body>,
) -> (StatusCode, HeaderMap, Bytes) {
    let response = tokio::time::timeout(BOUND, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// Writes `request` on a fresh connection and reads until the server closes (bounded).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, tcp.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes that are not all alike, so a shifted or repeated chunk would be noticed.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Waits until `condition` holds, polling, for at most [`BOUND`].
pub async fn eventually(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

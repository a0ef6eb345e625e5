//! The test mesh: proxies with ADS clients, tiny HTTP apps.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::LbPolicy};
use envoy_types::util::pack_any;
use hostmesh_ca::server::control_identity;
use hostmesh_proxy::drain;
use hostmesh_proxy::tls::MeshTls;
use hostmesh_proxy::xds::{AdsClient, ClientSettings, NodeIdentity, XdsHandles};
use hostmesh_proxy::{ConfigHandle, Proxy, Settings};
use hostmesh_registry::model::validate::Context;
use hostmesh_registry::model::{Snapshot, TrustDomain};
use hostmesh_registry::sources::static_files::parse_file;
use hostmesh_registry::xds::{MeshTranslator, NodeInfo, Resource, ResourceSet, Translator};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

pub use crate::control::Control;

/// A bound on every wait.
pub const BOUND: Duration = Duration::from_secs(20);

/// The real translator, plus (when switched on) a cluster the proxy must refuse.
#[derive(Debug, Default)]
pub struct Injecting {
    pub(crate) inner: MeshTranslator,
    pub refused: AtomicBool,
}

pub const REFUSED_CLUSTER: &str = "outbound|1|refused|injected.demo.svc.cluster.local";

impl Translator for Injecting {
    fn shared(&self, snapshot: &Snapshot) -> ResourceSet {
        let mut set = self.inner.shared(snapshot);
        if self.refused.load(Ordering::SeqCst) {
            let c = Cluster {
                name: REFUSED_CLUSTER.into(),
                lb_policy: LbPolicy::ClusterProvided as i32,
                ..Default::default()
            };
            set.insert(Resource::new(REFUSED_CLUSTER, pack_any(c)));
        }
        set
    }

    fn for_node(&self, snapshot: &Snapshot, node: &NodeInfo) -> ResourceSet {
        self.inner.for_node(snapshot, node)
    }
}

/// A distinct block of loopback addresses per test (tests run in parallel).
pub fn loopback_block() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn ip(block: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, block, host))
}

/// Builds a snapshot from Istio YAML with the control server's own parser.
pub fn snapshot(version: u64, yaml: &str) -> Snapshot {
    let parsed = parse_file(Path::new("test.yaml"), yaml, &Context::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Snapshot::build(
        version,
        parsed.objects.into_iter().map(|o| o.object),
        &TrustDomain::default(),
    )
}

impl Control {
    /// A proxy for a host at `ip` named `name` in `demo`; [`Control::start_xds`] gives it its
    /// ADS client.
    pub fn host(&self, ip: IpAddr, name: &str, service_account: &str) -> Host {
        let slot = self.slot(&format!(
            "spiffe://cluster.local/ns/demo/sa/{service_account}"
        ));
        let tls = Arc::new(
            MeshTls::new(slot.clone(), self.bundle.clone(), Duration::from_secs(5)).unwrap(),
        );
        let proxy = Proxy::new(ConfigHandle::default(), tls, Settings::default());
        let node = NodeIdentity {
            ip,
            instance_ips: vec![ip],
            name: name.into(),
            namespace: "demo".into(),
            domain: "cluster.local".into(),
            labels: BTreeMap::new(),
            auto_register_group: None,
            locality: None,
        };
        let mut settings = ClientSettings::new(
            self.addr,
            control_identity(&self.ca).unwrap(),
            self.bundle.clone(),
            slot,
            node,
        );
        settings.backoff_initial = Duration::from_millis(50);
        settings.backoff_max = Duration::from_millis(500);
        Host {
            proxy,
            settings,
            xds: None,
        }
    }

    /// Starts `host`'s ADS client.
    pub fn start_xds(&self, host: &mut Host) {
        let xds = AdsClient::start(host.settings.clone(), host.proxy.config().clone());
        host.xds = Some(xds);
    }

    pub async fn outbound(&self, host: &Host, addr: SocketAddr) -> SocketAddr {
        let outbound = host.proxy.outbound(addr).await.unwrap();
        let bound = outbound.local_addr().unwrap();
        tokio::spawn(outbound.run(self.watcher()));
        bound
    }

    pub async fn inbound(&self, host: &Host, addr: SocketAddr) -> SocketAddr {
        let inbound = host.proxy.inbound(addr).await.unwrap();
        let bound = inbound.local_addr().unwrap();
        tokio::spawn(inbound.run(self.watcher()));
        bound
    }

    fn watcher(&self) -> drain::DrainWatcher {
        let (trigger, watcher) = drain::channel();
        self.drains.lock().unwrap().push(trigger);
        watcher
    }
}

/// One host: its proxy and its ADS client.
pub struct Host {
    pub proxy: Arc<Proxy>,
    pub settings: ClientSettings,
    pub xds: Option<XdsHandles>,
}

impl Host {
    pub async fn ready(&mut self) {
        let xds = self.xds.as_mut().expect("the ADS client was started");
        let ready = tokio::time::timeout(BOUND, xds.ready.wait_for(|r| *r)).await;
        assert!(matches!(ready, Ok(Ok(_))), "the proxy never became ready");
    }
}

/// An HTTP/1.1 app on 127.0.0.1 that answers with `x-app: NAME`.
pub async fn app(name: &'static str) -> SocketAddr {
    app_with(name, None).await
}

/// Holds the app's answers to `/slow`: each arrival is reported, the answer waits for
/// `release` to turn `true`.
#[derive(Clone)]
pub struct Hold {
    pub arrived: tokio::sync::mpsc::Sender<()>,
    pub release: tokio::sync::watch::Receiver<bool>,
}

/// [`app`], with `/slow` held by `hold`.
pub async fn app_with(name: &'static str, hold: Option<Hold>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let hold = hold.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let hold = hold.clone();
                    async move {
                        if let (Some(mut hold), "/slow") = (hold, req.uri().path()) {
                            hold.arrived.send(()).await.unwrap();
                            hold.release.wait_for(|r| *r).await.unwrap();
                        }
                        let xfcc = req.headers().contains_key("x-forwarded-client-cert");
                        let response = Response::builder()
                            .header("x-app", name)
                            .header("x-saw-xfcc", if xfcc { "yes" } else { "no" })
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A keep-alive HTTP/1.1 client.
pub struct Client(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self(sender)
    }

    /// GET / for bill-service; the status and the answering app.
    pub async fn get(&mut self) -> (StatusCode, String, String) {
        self.get_path("/").await
    }

    /// GET `path` for bill-service; the status, the answering app and whether it saw XFCC.
    pub async fn get_path(&mut self, path: &str) -> (StatusCode, String, String) {
        let req = Request::get(path)
            .header("host", "bill-service.demo.svc.cluster.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = tokio::time::timeout(BOUND, self.0.send_request(req))
            .await
            .expect("an answer within the bound")
            .unwrap();
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned()
        };
        let (app, xfcc) = (header("x-app"), header("x-saw-xfcc"));
        let status = response.status();
        let _ = response.into_body().collect().await.unwrap();
        (status, app, xfcc)
    }
}

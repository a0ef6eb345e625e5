//! A real CA, the ADS server over TLS on 127.0.0.1, agent-like clients, and a fake
//! translator (a `Cluster` and a `ClusterLoadAssignment` per service, an inbound `Listener`
//! per node).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    Address, Node, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Struct;
use envoy_types::pb::google::rpc;
use envoy_types::util::pack_any;
use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, control_identity, serving_certificate, tls_incoming};
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{
    CertificateSlot, ExpectedServer, SpiffeClientVerifier, SpiffeServerVerifier, TrustBundle,
    certified_key, client_config, server_config,
};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};
use hostmesh_registry::model::validate::Context;
use hostmesh_registry::model::{Snapshot, TrustDomain};
use hostmesh_registry::sources::static_files::parse_file;
use hostmesh_registry::xds::server::node::string_value;
use hostmesh_registry::xds::server::{AdsServer, NodeStatus};
use hostmesh_registry::xds::{NodeInfo, Resource, ResourceSet, Translator};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint as GrpcEndpoint, Uri};
use tonic::{Status, Streaming};

/// How long a test waits for something that should happen.
pub const BOUND: Duration = Duration::from_secs(1);

pub const NODE_ID: &str = "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local";

/// `Cluster` named after each service host, `ClusterLoadAssignment` with its endpoints;
/// an inbound listener per node.
#[derive(Debug)]
pub struct FakeTranslator;

impl Translator for FakeTranslator {
    fn shared(&self, snapshot: &Snapshot) -> ResourceSet {
        let mut set = ResourceSet::new();
        for svc in snapshot.services() {
            let name = svc.hostname.to_string();
            let cluster = Cluster {
                name: name.clone(),
                ..Default::default()
            };
            set.insert(Resource::new(&name, pack_any(cluster)));
            let lb_endpoints = svc
                .endpoints
                .iter()
                .map(|e| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(&e.address.to_string(), e.port.get().into())),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect();
            let cla = ClusterLoadAssignment {
                cluster_name: name.clone(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints,
                    ..Default::default()
                }],
                ..Default::default()
            };
            set.insert(Resource::new(&name, pack_any(cla)));
        }
        set
    }

    fn for_node(&self, _snapshot: &Snapshot, node: &NodeInfo) -> ResourceSet {
        let mut set = ResourceSet::new();
        let ip = node.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let listener = Listener {
            name: format!("inbound|{ip}"),
            address: Some(socket(&ip, 15006)),
            ..Default::default()
        };
        set.insert(Resource::new(listener.name.clone(), pack_any(listener)));
        set
    }
}

fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// The host name of a test service.
pub fn host(service: &str) -> String {
    format!("{service}.demo.svc.cluster.local")
}

/// A snapshot with one `ServiceEntry` per service, each with inline endpoints.
pub fn snapshot(version: u64, services: &[(&str, &[&str])]) -> Snapshot {
    let owned: Vec<(String, Vec<String>)> = services
        .iter()
        .map(|(n, ips)| (n.to_string(), ips.iter().map(|s| s.to_string()).collect()))
        .collect();
    snapshot_of(version, &owned)
}

/// [`snapshot`] with owned names.
pub fn snapshot_of(version: u64, services: &[(String, Vec<String>)]) -> Snapshot {
    let mut yaml = String::new();
    for (name, ips) in services {
        yaml.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  hosts: [{}]\n  location: MESH_INTERNAL\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n",
            host(name)
        ));
        for ip in ips {
            yaml.push_str(&format!("  - address: {ip}\n"));
        }
        yaml.push_str("---\n");
    }
    let parsed = parse_file(Path::new("test.yaml"), &yaml, &Context::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Snapshot::build(
        version,
        parsed.objects.into_iter().map(|o| o.object),
        &TrustDomain::default(),
    )
}

pub fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// A CA, an ADS server over TLS, and the snapshot feed.
pub struct Env {
    _dir: tempfile::TempDir,
    pub ca: Arc<CertificateAuthority>,
    pub addr: SocketAddr,
    pub ads: AdsServer,
    pub snapshots: watch::Sender<Snapshot>,
    stop: Option<oneshot::Sender<()>>,
}

impl Env {
    pub async fn start(first: Snapshot) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path().join("ca"));
        store::init(&paths, &InitOptions::default(), None).unwrap();
        let ca = Arc::new(CertificateAuthority::load(&paths, None).unwrap());
        let slot = serving_certificate(ca.clone(), vec![], Duration::from_secs(3600)).unwrap();
        let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
        let tls = server_config(slot, SpiffeClientVerifier::new(bundle, false), &[b"h2"]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tls_incoming(listener, Arc::new(tls).into(), HANDSHAKE_TIMEOUT);
        let (snapshots, rx) = watch::channel(first);
        let ads = AdsServer::start(Arc::new(FakeTranslator), rx);
        let service = ads.service();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            _dir: dir,
            ca,
            addr,
            ads,
            snapshots,
            stop: Some(stop),
        }
    }

    /// A client certificate for `identity`.
    pub fn certificate(&self, identity: &str) -> Arc<CertificateSlot> {
        certificate(&self.ca, identity)
    }

    /// A gRPC channel over TLS, presenting `certificate` if given.
    pub async fn channel(&self, certificate: Option<Arc<CertificateSlot>>) -> Channel {
        connect(&self.ca, self.addr, certificate).await
    }

    /// A channel presenting a fresh certificate for `spiffe://cluster.local/ns/demo/sa/bill`.
    pub async fn agent_channel(&self) -> Channel {
        let cert = self.certificate("spiffe://cluster.local/ns/demo/sa/bill");
        self.channel(Some(cert)).await
    }

    /// Waits (bounded) until the status table satisfies `check`.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&[NodeStatus]) -> bool) {
        self.wait_status_within(what, BOUND, check).await;
    }

    pub async fn wait_status_within(
        &self,
        what: &str,
        bound: Duration,
        check: impl Fn(&[NodeStatus]) -> bool,
    ) {
        let mut changes = self.ads.status_changes();
        let waited = tokio::time::timeout(bound, async {
            loop {
                changes.borrow_and_update();
                if check(&self.ads.status()) {
                    return;
                }
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(waited.is_ok(), "{what}: status is {:#?}", self.ads.status());
    }

    /// Publishes a snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshots.send_replace(snapshot);
    }

    pub fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

/// A client certificate for `identity`, from `ca`.
pub fn certificate(ca: &CertificateAuthority, identity: &str) -> Arc<CertificateSlot> {
    let issued = ca
        .issue_with_new_key(&id(identity), &[], Duration::from_secs(3600))
        .unwrap();
    let key = certified_key(issued.chain.to_pem().as_bytes(), issued.key_pem.as_bytes()).unwrap();
    CertificateSlot::new(key)
}

/// A gRPC channel over TLS to the control server at `addr`, presenting `certificate`.
pub async fn connect(
    ca: &CertificateAuthority,
    addr: SocketAddr,
    certificate: Option<Arc<CertificateSlot>>,
) -> Channel {
    let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
    let expected = ExpectedServer::Identity(control_identity(ca).unwrap());
    let verifier = SpiffeServerVerifier::new(bundle, expected);
    let config = client_config(certificate, verifier, &[b"h2"]).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    GrpcEndpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("hostmesh-control").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

pub fn node(id: &str, namespace: &str) -> Node {
    Node {
        id: id.to_owned(),
        metadata: Some(Struct {
            fields: [("NAMESPACE".to_owned(), string_value(namespace))].into(),
        }),
        ..Default::default()
    }
}

pub fn nack(message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: 3,
        message: message.to_owned(),
        details: vec![],
    })
}

/// A state-of-the-world stream as an agent drives it.
pub struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl SotwClient {
    pub async fn open(channel: Channel, first: DiscoveryRequest) -> Result<Self, Status> {
        let (tx, requests) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(Self { tx, rx })
    }

    pub async fn send(&self, request: DiscoveryRequest) {
        self.tx.send(request).await.unwrap();
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(BOUND, self.rx.message())
            .await
            .expect("no response within the bound")
            .unwrap()
            .expect("the stream ended")
    }

    /// The next item of the stream: a response, an error status, or the end.
    pub async fn next(&mut self) -> Result<Option<DiscoveryResponse>, Status> {
        tokio::time::timeout(BOUND, self.rx.message())
            .await
            .expect("nothing within the bound")
    }
}

/// A delta stream as an agent drives it.
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaClient {
    pub async fn open(channel: Channel, first: DeltaDiscoveryRequest) -> Result<Self, Status> {
        let (tx, requests) = mpsc::channel(16);
        tx.send(first).await.unwrap();
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .delta_aggregated_resources(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(Self { tx, rx })
    }

    pub async fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx.send(request).await.unwrap();
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        self.recv_within(BOUND).await
    }

    pub async fn recv_within(&mut self, bound: Duration) -> DeltaDiscoveryResponse {
        tokio::time::timeout(bound, self.rx.message())
            .await
            .expect("no response within the bound")
            .unwrap()
            .expect("the stream ended")
    }

    /// ACKs `response`.
    pub async fn ack(&self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }
}

/// Names of the resources in a delta response.
pub fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    response.resources.iter().map(|r| r.name.clone()).collect()
}

/// Names of the resources in a state-of-the-world response (Cluster, CLA or Listener).
pub fn sotw_names(response: &DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| {
            if let Ok(c) = Cluster::decode(any.value.as_slice())
                && any.type_url.ends_with("Cluster")
            {
                return c.name;
            }
            if let Ok(c) = ClusterLoadAssignment::decode(any.value.as_slice())
                && any.type_url.ends_with("ClusterLoadAssignment")
            {
                return c.cluster_name;
            }
            Listener::decode(any.value.as_slice()).unwrap().name
        })
        .collect()
}

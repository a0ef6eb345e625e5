//! Shared by the control server's end-to-end tests and the scale benchmark: a CA in a temp
//! dir, the real `hostmesh-control` process, and an agent-like delta ADS client over mTLS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{
    CertificateSlot, ExpectedServer, SpiffeServerVerifier, TrustBundle, certified_key,
    client_config,
};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};
use hostmesh_registry::xds::type_url;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// A CA under `dir/ca`, and TLS client configs for identities it issues.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let paths = CaPaths::new(dir.join("ca"));
        if !paths.root_cert().exists() {
            store::init(&paths, &InitOptions::default(), None).unwrap();
        }
        Self {
            dir: dir.to_owned(),
            ca: CertificateAuthority::load(&paths, None).unwrap(),
        }
    }

    /// A client config presenting a certificate for `id` (or none), trusting the control
    /// server's identity.
    pub fn client(&self, id: Option<&str>) -> Arc<rustls::ClientConfig> {
        let slot = id.map(|id| {
            let id: SpiffeId = id.parse().unwrap();
            let issued = self
                .ca
                .issue_with_new_key(&id, &[], Duration::from_secs(3600))
                .unwrap();
            CertificateSlot::new(
                certified_key(issued.chain.to_pem().as_bytes(), issued.key_pem.as_bytes()).unwrap(),
            )
        });
        let control: SpiffeId = "spiffe://cluster.local/ns/hostmesh-system/sa/hostmesh-control"
            .parse()
            .unwrap();
        let bundle = TrustBundle::new(self.ca.trust_domain().clone(), self.ca.roots()).unwrap();
        Arc::new(
            client_config(
                slot,
                SpiffeServerVerifier::new(bundle, ExpectedServer::Identity(control)),
                &[b"h2"],
            )
            .unwrap(),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `hostmesh-control run`, killed on drop.
pub struct Control {
    pub child: Child,
    pub address: String,
    pub status_address: String,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Control {
    /// Starts the server on free ports and waits until it accepts connections.
    pub fn start(bin: &str, dir: &Path, registry: &Path) -> Self {
        Self::start_with(bin, dir, registry, &[])
    }

    /// [`Control::start`] with more arguments (e.g. `--config FILE`).
    pub fn start_with(bin: &str, dir: &Path, registry: &Path, extra: &[&str]) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let status_address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args([
                "run",
                "--listen",
                &address,
                "--status-listen",
                &status_address,
            ])
            .arg("--ca-dir")
            .arg(dir.join("ca"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--registry-dir")
            .arg(registry)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hostmesh-control starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&address).is_err()
            || std::net::TcpStream::connect(&status_address).is_err()
        {
            assert!(Instant::now() < deadline, "hostmesh-control did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            address,
            status_address,
        }
    }
}

/// A TLS channel to the control server.
pub async fn connect(address: &str, tls: Arc<rustls::ClientConfig>) -> tonic::transport::Channel {
    let address = address.to_owned();
    tonic::transport::Endpoint::from_static("http://hostmesh-control")
        .connect_with_connector(tower::service_fn(move |_| {
            let (config, address) = (tls.clone(), address.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                let name = rustls_pki_types::ServerName::try_from("hostmesh-control")
                    .map_err(std::io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .expect("connects")
}

/// An Istio-style node: `sidecar~IP~NAME.NS~NS.svc.cluster.local` with `NAMESPACE` metadata.
pub fn node(ip: &str, name: &str, namespace: &str) -> Node {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "NAMESPACE".to_owned(),
        Value {
            kind: Some(Kind::StringValue(namespace.to_owned())),
        },
    );
    Node {
        id: format!("sidecar~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

/// The identity of the `front` workload the control tests connect as.
pub const FRONT: &str = "spiffe://cluster.local/ns/demo/sa/front";

/// A delta stream as the node `front-vm` (10.0.0.9, namespace `demo`) with front's
/// certificate, subscribed to every cluster, as an agent opens it.
pub async fn front_agent(control: &Control, pki: &Pki) -> DeltaClient {
    let channel = connect(&control.address, pki.client(Some(FRONT))).await;
    DeltaClient::open(
        channel,
        node("10.0.0.9", "front-vm", "demo"),
        type_url::CLUSTER,
        &["*"],
    )
    .await
    .unwrap()
}

/// An agent-like delta ADS stream.
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    stream: Streaming<DeltaDiscoveryResponse>,
    node: Option<Node>,
}

impl DeltaClient {
    /// Opens a stream whose first request subscribes `type_url` to `names` (`*` = wildcard).
    pub async fn open(
        channel: tonic::transport::Channel,
        node: Node,
        type_url: &str,
        names: &[&str],
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        // The first request goes out with the call: the server answers the call only once
        // it has read it.
        let first = DeltaDiscoveryRequest {
            node: Some(node),
            type_url: type_url.to_owned(),
            resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
            ..DeltaDiscoveryRequest::default()
        };
        let _ = tx.send(first).await;
        let stream = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self {
            tx,
            stream,
            node: None,
        })
    }

    pub async fn subscribe(&mut self, type_url: &str, names: &[&str]) {
        let request = DeltaDiscoveryRequest {
            node: self.node.take(),
            type_url: type_url.to_owned(),
            resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
            ..DeltaDiscoveryRequest::default()
        };
        let _ = self.tx.send(request).await;
    }

    /// The next response, or an error status, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<DeltaDiscoveryResponse, String> {
        match tokio::time::timeout(timeout, self.stream.message()).await {
            Ok(Ok(Some(response))) => Ok(response),
            Ok(Ok(None)) => Err("stream ended".into()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err("timed out".into()),
        }
    }

    pub async fn ack(&self, response: &DeltaDiscoveryResponse) {
        let _ = self.tx.send(reply(response, None)).await;
    }

    pub async fn nack(&self, response: &DeltaDiscoveryResponse, message: &str) {
        let _ = self.tx.send(reply(response, Some(message))).await;
    }
}

fn reply(response: &DeltaDiscoveryResponse, error: Option<&str>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        error_detail: error.map(|message| RpcStatus {
            code: 3,
            message: message.to_owned(),
            details: Vec::new(),
        }),
        ..DeltaDiscoveryRequest::default()
    }
}

/// The sorted endpoint addresses of the assignment `name` in a delta response.
pub fn addresses(response: &DeltaDiscoveryResponse, name: &str) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::address::Address;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    use prost::Message;
    let Some(resource) = response.resources.iter().find(|r| r.name == name) else {
        return Vec::new();
    };
    let cla = ClusterLoadAssignment::decode(resource.resource.as_ref().unwrap().value.as_slice())
        .unwrap();
    let mut out: Vec<String> = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => match ep.address.as_ref()?.address.as_ref()? {
                Address::SocketAddress(s) => Some(s.address.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// The next response of `type_url`, ACKing every other response on the way.
pub async fn next_of(
    client: &mut DeltaClient,
    type_url: &str,
    within: Duration,
) -> DeltaDiscoveryResponse {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = client
            .next(left)
            .await
            .unwrap_or_else(|e| panic!("waiting for {type_url}: {e}"));
        if response.type_url == type_url {
            return response;
        }
        client.ack(&response).await;
    }
}

/// Reads cluster pushes (ACKing each) until every name in `want` has been sent; sources
/// answer at their own pace, so the names may come over several pushes.
pub async fn wait_clusters(client: &mut DeltaClient, want: &[&str], within: Duration) {
    let mut names: Vec<String> = Vec::new();
    let deadline = Instant::now() + within;
    while !want.iter().all(|w| names.iter().any(|n| n == w)) {
        assert!(Instant::now() < deadline, "clusters so far: {names:?}");
        let left = deadline.saturating_duration_since(Instant::now());
        let clusters = next_of(client, hostmesh_registry::xds::type_url::CLUSTER, left).await;
        names.extend(clusters.resources.iter().map(|r| r.name.clone()));
        client.ack(&clusters).await;
    }
}

/// Runs the `hostmesh` CLI; its exit code and stdout + stderr.
pub fn hostmesh(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hostmesh"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

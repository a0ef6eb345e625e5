//! The ADS client: one gRPC stream to the control server over mutual TLS (this host's
//! certificate; the server must be `spiffe://<td>/ns/hostmesh-system/sa/hostmesh-control`).
//!
//! It speaks the incremental protocol (`DeltaAggregatedResources`) and falls back to state of
//! the world when the server answers `UNIMPLEMENTED`. Clusters, listeners and the name table
//! are wildcard subscriptions; assignments and route configurations are subscribed by the
//! names the clusters and listeners hold. Every response is applied through [`XdsState`] and
//! answered: ACK when applied (or accepted while incomplete), NACK with the reasons otherwise.
//!
//! When the stream breaks, the proxy keeps serving what it has; the client reconnects with
//! exponential backoff and jitter and, in delta mode, tells the server what it holds
//! (`initial_resource_versions`) so that only changes come back.
//!
//! [`AdsClient::restore`] starts from a stored set of resources (the agent's last good config):
//! the proxy serves it at once, and the first stream announces it in
//! `initial_resource_versions`, so that the server sends only what changed since.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc;
use hostmesh_ca::SpiffeId;
use hostmesh_ca::tls::{
    CertificateSlot, ExpectedServer, SpiffeServerVerifier, TlsError, TrustBundle, client_config,
};
use hyper_util::rt::TokioIo;
use rand::Rng;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Streaming};

use super::convert::Context;
use super::name_table::MeshNames;
use super::node::NodeIdentity;
use super::resources::{RawResource, ResourceType, Resources};
use super::state::{Applied, Update, XdsState};
use super::wire::Rejections;
use crate::ConfigHandle;

/// `google.rpc.Code.INVALID_ARGUMENT`, carried by NACKs.
const INVALID_ARGUMENT: i32 = 3;
/// Requests queued toward the server; the client waits when it is full.
const REQUEST_QUEUE: usize = 16;

/// Where and how to reach the control server.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub address: SocketAddr,
    /// The control server's identity.
    pub server_identity: SpiffeId,
    pub bundle: TrustBundle,
    /// This host's certificate (kept current by the identity keeper).
    pub certificate: Arc<CertificateSlot>,
    pub node: NodeIdentity,
    pub connect_timeout: Duration,
    /// First wait after a failure; doubles up to `backoff_max`, each with ±50 % jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl ClientSettings {
    pub fn new(
        address: SocketAddr,
        server_identity: SpiffeId,
        bundle: TrustBundle,
        certificate: Arc<CertificateSlot>,
        node: NodeIdentity,
    ) -> Self {
        Self {
            address,
            server_identity,
            bundle,
            certificate,
            node,
            connect_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS client config: {0}")]
    Tls(#[from] TlsError),
    #[error("connecting to the control server at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    #[error("the control server ended the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the control server closed the stream")]
    Closed,
    #[error("the request queue to the control server is gone")]
    QueueClosed,
}

/// What the rest of the agent watches.
#[derive(Debug)]
pub struct XdsHandles {
    /// `true` once a complete config has been applied.
    pub ready: watch::Receiver<bool>,
    /// The mesh's DNS names for the DNS proxy.
    pub names: watch::Receiver<Arc<MeshNames>>,
    /// The resources behind the running config, as received, after every swap.
    pub applied: watch::Receiver<Arc<Resources>>,
    /// The client task (runs until aborted).
    pub task: JoinHandle<()>,
}

/// The ADS client.
#[derive(Debug)]
pub struct AdsClient {
    settings: ClientSettings,
    state: XdsState,
    delta: bool,
}

impl AdsClient {
    /// Starts the client in a task; results go into `config`.
    pub fn start(settings: ClientSettings, config: ConfigHandle) -> XdsHandles {
        let state = Self::state(&settings, config);
        Self::spawn(settings, state)
    }

    /// Applies `saved` (a previous [`XdsHandles::applied`]) to `config`, then starts the client
    /// from it. Nothing starts when the saved set is refused.
    pub fn restore(
        settings: ClientSettings,
        config: ConfigHandle,
        saved: &[RawResource],
    ) -> Result<XdsHandles, Rejections> {
        let mut state = Self::state(&settings, config);
        let applied = state.restore(saved)?;
        tracing::info!(
            resources = saved.len(),
            ?applied,
            "restored the stored xDS resources"
        );
        Ok(Self::spawn(settings, state))
    }

    fn state(settings: &ClientSettings, config: ConfigHandle) -> XdsState {
        let ctx = Context {
            trust_domain: settings.bundle.trust_domain().as_str().to_owned(),
        };
        XdsState::new(ctx, config)
    }

    fn spawn(settings: ClientSettings, state: XdsState) -> XdsHandles {
        let ready = state.ready();
        let names = state.names();
        let applied = state.applied();
        let client = Self {
            settings,
            state,
            delta: true,
        };
        XdsHandles {
            ready,
            names,
            applied,
            task: tokio::spawn(client.run()),
        }
    }

    async fn run(mut self) {
        let mut backoff = self.settings.backoff_initial;
        loop {
            let mut progressed = false;
            let result = match self.connect().await {
                Ok(channel) if self.delta => self.delta_stream(channel, &mut progressed).await,
                Ok(channel) => self.sotw_stream(channel, &mut progressed).await,
                Err(e) => Err(e),
            };
            match result {
                Err(ClientError::Status(s)) if self.delta && s.code() == Code::Unimplemented => {
                    tracing::info!(server = %self.settings.address, "delta xDS not implemented by the server; using state of the world");
                    self.delta = false;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(server = %self.settings.address, %error, "xDS stream ended; serving the current config meanwhile")
                }
                Ok(()) => {}
            }
            if progressed {
                backoff = self.settings.backoff_initial;
            }
            let wait = jitter(backoff);
            tracing::debug!(?wait, "reconnecting to the control server");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.settings.backoff_max);
        }
    }

    async fn connect(&self) -> Result<Channel, ClientError> {
        let s = &self.settings;
        let verifier = SpiffeServerVerifier::new(
            s.bundle.clone(),
            ExpectedServer::Identity(s.server_identity.clone()),
        );
        let config = client_config(Some(s.certificate.clone()), verifier, &[b"h2"])?;
        let connector = TlsConnector::from(Arc::new(config));
        let addr = s.address;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| ClientError::Connect { addr, source })?
            .connect_timeout(s.connect_timeout);
        endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let name = ServerName::IpAddress(addr.ip().into());
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|source| ClientError::Connect { addr, source })
    }

    async fn delta_stream(
        &mut self,
        channel: Channel,
        progressed: &mut bool,
    ) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let mut node = Some(self.settings.node.node());
        let mut subscribed: BTreeMap<ResourceType, BTreeSet<String>> = BTreeMap::new();
        for ty in ResourceType::ALL {
            let names = if ty.wildcard() {
                BTreeSet::from(["*".to_owned()])
            } else {
                self.state.held().wanted(ty)
            };
            if names.is_empty() {
                continue;
            }
            let request = DeltaDiscoveryRequest {
                node: node.take(),
                type_url: ty.type_url().to_owned(),
                resource_names_subscribe: names.iter().cloned().collect(),
                initial_resource_versions: self.state.held().versions(ty),
                ..Default::default()
            };
            subscribed.insert(ty, names);
            send(&tx, request).await?;
        }
        let mut responses = AggregatedDiscoveryServiceClient::new(channel)
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(server = %self.settings.address, node = %self.settings.node.id(), "delta xDS stream open");
        while let Some(response) = next(&mut responses).await? {
            *progressed = true;
            let (ty, result) = self.apply_delta(&response);
            let error_detail = result.err().map(|r| nack(&r));
            send(
                &tx,
                DeltaDiscoveryRequest {
                    type_url: response.type_url.clone(),
                    response_nonce: response.nonce.clone(),
                    error_detail,
                    ..Default::default()
                },
            )
            .await?;
            if ty.is_some() {
                for request in self.delta_subscriptions(&mut subscribed) {
                    send(&tx, request).await?;
                }
            }
        }
        Err(ClientError::Closed)
    }

    fn apply_delta(
        &mut self,
        r: &DeltaDiscoveryResponse,
    ) -> (Option<ResourceType>, Result<Applied, Rejections>) {
        let Some(ty) = ResourceType::from_url(&r.type_url) else {
            return (None, Err(unknown_type(&r.type_url)));
        };
        let mut upserts = Vec::with_capacity(r.resources.len());
        for res in &r.resources {
            match &res.resource {
                Some(any) => upserts.push((res.name.clone(), res.version.clone(), any.clone())),
                None => {
                    return (
                        Some(ty),
                        Err(Rejections(vec![super::Rejection {
                            kind: "Resource",
                            name: res.name.clone(),
                            problem: "carries no resource".into(),
                        }])),
                    );
                }
            }
        }
        let update = Update::Delta {
            upserts,
            removals: r.removed_resources.clone(),
        };
        let result = self.state.apply(ty, update);
        log_result(ty, &r.system_version_info, &result);
        (Some(ty), result)
    }

    /// Requests that bring the EDS/RDS subscriptions in line with what is held.
    fn delta_subscriptions(
        &self,
        subscribed: &mut BTreeMap<ResourceType, BTreeSet<String>>,
    ) -> Vec<DeltaDiscoveryRequest> {
        let mut out = Vec::new();
        for ty in [ResourceType::Endpoint, ResourceType::Route] {
            let wanted = self.state.held().wanted(ty);
            let had = subscribed.entry(ty).or_default();
            if *had == wanted {
                continue;
            }
            out.push(DeltaDiscoveryRequest {
                type_url: ty.type_url().to_owned(),
                resource_names_subscribe: wanted.difference(had).cloned().collect(),
                resource_names_unsubscribe: had.difference(&wanted).cloned().collect(),
                ..Default::default()
            });
            *had = wanted;
        }
        out
    }

    async fn sotw_stream(
        &mut self,
        channel: Channel,
        progressed: &mut bool,
    ) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let mut node = Some(self.settings.node.node());
        let mut sotw = Sotw::default();
        for ty in ResourceType::ALL {
            let names = self.state.held().wanted(ty);
            if !ty.wildcard() && names.is_empty() {
                continue;
            }
            let mut request = sotw.request(ty, names);
            request.node = node.take();
            send(&tx, request).await?;
        }
        let mut responses = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(server = %self.settings.address, node = %self.settings.node.id(), "state-of-the-world xDS stream open");
        while let Some(r) = next(&mut responses).await? {
            *progressed = true;
            let Some(ty) = ResourceType::from_url(&r.type_url) else {
                send(
                    &tx,
                    DiscoveryRequest {
                        type_url: r.type_url.clone(),
                        response_nonce: r.nonce.clone(),
                        error_detail: Some(nack(&unknown_type(&r.type_url))),
                        ..Default::default()
                    },
                )
                .await?;
                continue;
            };
            let result = self.state.apply(
                ty,
                Update::Sotw {
                    version: r.version_info.clone(),
                    resources: r.resources.clone(),
                },
            );
            log_result(ty, &r.version_info, &result);
            send(&tx, sotw.answer(ty, &r, result.err().map(|e| nack(&e)))).await?;
            for t in [ResourceType::Endpoint, ResourceType::Route] {
                let wanted = self.state.held().wanted(t);
                if sotw.names.get(&t) != Some(&wanted) {
                    send(&tx, sotw.request(t, wanted)).await?;
                }
            }
        }
        Err(ClientError::Closed)
    }
}

/// State-of-the-world bookkeeping per type: accepted version, last nonce, names asked for.
#[derive(Debug, Default)]
struct Sotw {
    accepted: BTreeMap<ResourceType, String>,
    nonces: BTreeMap<ResourceType, String>,
    names: BTreeMap<ResourceType, BTreeSet<String>>,
}

impl Sotw {
    fn request(&mut self, ty: ResourceType, names: BTreeSet<String>) -> DiscoveryRequest {
        let request = DiscoveryRequest {
            type_url: ty.type_url().to_owned(),
            version_info: self.accepted.get(&ty).cloned().unwrap_or_default(),
            response_nonce: self.nonces.get(&ty).cloned().unwrap_or_default(),
            resource_names: names.iter().cloned().collect(),
            ..Default::default()
        };
        self.names.insert(ty, names);
        request
    }

    fn answer(
        &mut self,
        ty: ResourceType,
        r: &DiscoveryResponse,
        error: Option<rpc::Status>,
    ) -> DiscoveryRequest {
        self.nonces.insert(ty, r.nonce.clone());
        if error.is_none() {
            self.accepted.insert(ty, r.version_info.clone());
        }
        let names = self.names.get(&ty).cloned().unwrap_or_default();
        let mut request = self.request(ty, names);
        request.error_detail = error;
        request
    }
}

fn log_result(ty: ResourceType, version: &str, result: &Result<Applied, Rejections>) {
    match result {
        Ok(Applied::Swapped) => {
            tracing::info!(type_url = ty.type_url(), version, "xDS applied")
        }
        Ok(Applied::Pending(missing)) => {
            tracing::info!(
                type_url = ty.type_url(),
                version,
                ?missing,
                "xDS accepted; waiting for the rest"
            )
        }
        Err(reasons) => {
            tracing::warn!(type_url = ty.type_url(), version, %reasons, "xDS rejected; keeping the previous config")
        }
    }
}

fn nack(reasons: &Rejections) -> rpc::Status {
    rpc::Status {
        code: INVALID_ARGUMENT,
        message: reasons.to_string(),
        details: Vec::new(),
    }
}

fn unknown_type(url: &str) -> Rejections {
    Rejections(vec![super::Rejection {
        kind: "Resource",
        name: String::new(),
        problem: format!("type {url} is not supported"),
    }])
}

async fn send<T>(tx: &mpsc::Sender<T>, request: T) -> Result<(), ClientError> {
    tx.send(request).await.map_err(|_| ClientError::QueueClosed)
}

async fn next<T>(stream: &mut Streaming<T>) -> Result<Option<T>, ClientError> {
    Ok(stream.message().await?)
}

/// `base` ± 50 %.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(rand::rng().random_range(0.5..1.5))
}

//! The ADS server: `envoy.service.discovery.v3.AggregatedDiscoveryService`, both the
//! state-of-the-world (`StreamAggregatedResources`) and the incremental
//! (`DeltaAggregatedResources`) protocol, over the mTLS port.
//!
//! - [`node`]: the Envoy `Node` → [`NodeInfo`](crate::xds::NodeInfo), checked against the
//!   client certificate.
//! - `generation`: one translated snapshot, its shared resources indexed and diffed once.
//! - `session`: one stream — authentication, the node, the request/push loop.
//! - `sotw`, `delta`: the two protocols' per-stream state machines.
//! - [`status`]: what every connected node runs (ACKed versions, last NACK).
//! - [`http`]: the status table as JSON over HTTP (`GET /debug/connections`).
//! - [`events`]: streams accepted and ended, for the auto-registration source.
//!
//! Data flow: a `watch` of model snapshots feeds one task that asks the
//! [`Translator`] for the shared resources **once** per snapshot and publishes a
//! generation through another `watch` (bursts coalesce: a stream that is busy sees only the
//! latest). Each stream task adds its node's own resources (`for_node`) and sends what its
//! protocol says, through a bounded channel, holding no lock shared with other streams.
//!
//! Only clients with a mesh certificate are served (`UNAUTHENTICATED` otherwise); a node that
//! claims another namespace than its certificate's is refused with `PERMISSION_DENIED`, a
//! malformed node id or an unknown type URL with `INVALID_ARGUMENT`.

pub mod events;
pub mod http;
pub mod metrics;
pub mod node;
pub mod status;

mod delta;
mod generation;
mod session;
mod sotw;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};
use tracing::{error, info};

use crate::model::Snapshot;
use crate::xds::Translator;
use generation::Generation;
use session::ResponseStream;

pub use events::StreamEvent;
pub use node::NodeError;
pub use status::{Mode, Nack, NodeStatus, StatusTable, TypeStatus};

/// State shared by the server handle, the translation task and every stream.
struct Shared {
    translator: Arc<dyn Translator>,
    generations: watch::Sender<Arc<Generation>>,
    status: Arc<StatusTable>,
    next_connection: AtomicU64,
    events: Option<mpsc::UnboundedSender<StreamEvent>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.generations.borrow().number)
            .finish_non_exhaustive()
    }
}

/// The ADS server. Cheap to clone; every clone serves the same streams.
#[derive(Debug, Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
}

impl AdsServer {
    /// Translates the current snapshot, then follows `snapshots` in a background task (until
    /// their sender is dropped). Must be called inside a tokio runtime.
    pub fn start(translator: Arc<dyn Translator>, snapshots: watch::Receiver<Snapshot>) -> Self {
        Self::start_with_events(translator, snapshots, None)
    }

    /// [`AdsServer::start`], reporting every accepted and ended stream on `events`.
    pub fn start_with_events(
        translator: Arc<dyn Translator>,
        mut snapshots: watch::Receiver<Snapshot>,
        events: Option<mpsc::UnboundedSender<StreamEvent>>,
    ) -> Self {
        let snapshot = snapshots.borrow_and_update().clone();
        let first = Generation::first(snapshot.clone(), &translator.shared(&snapshot));
        info!(
            generation = 1,
            snapshot = snapshot.version(),
            "xDS generation ready"
        );
        let shared = Arc::new(Shared {
            translator,
            generations: watch::Sender::new(Arc::new(first)),
            status: Arc::default(),
            next_connection: AtomicU64::new(1),
            events,
        });
        tokio::spawn(follow(shared.clone(), snapshots));
        Self { shared }
    }

    /// The tonic service to add to a server.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService {
            shared: self.shared.clone(),
        })
    }

    /// Every connected node, by connection.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.shared.status.list()
    }

    /// Responses sent and NACKs received since the start, over every stream.
    pub fn totals(&self) -> (u64, u64) {
        self.shared.status.totals()
    }

    /// A counter bumped whenever [`AdsServer::status`] changes.
    pub fn status_changes(&self) -> watch::Receiver<u64> {
        self.shared.status.changes()
    }

    /// The number of the generation being served (1 for the first snapshot, +1 for each
    /// translated one).
    pub fn generation(&self) -> u64 {
        self.shared.generations.borrow().number
    }
}

/// Translates each new snapshot (the latest only, when several arrived meanwhile).
async fn follow(shared: Arc<Shared>, mut snapshots: watch::Receiver<Snapshot>) {
    while snapshots.changed().await.is_ok() {
        let snapshot = snapshots.borrow_and_update().clone();
        let previous = shared.generations.borrow().clone();
        let translator = shared.translator.clone();
        let version = snapshot.version();
        let started = std::time::Instant::now();
        let next = tokio::task::spawn_blocking(move || {
            let resources = translator.shared(&snapshot);
            Generation::next(&previous, snapshot, &resources)
        })
        .await;
        match next {
            Ok(generation) => {
                info!(
                    generation = generation.number,
                    snapshot = version,
                    took = ?started.elapsed(),
                    "xDS generation ready"
                );
                crate::drop_later::drop_later(
                    shared.generations.send_replace(Arc::new(generation)),
                );
            }
            Err(e) => {
                error!(snapshot = version, error = %e, "translation failed; still serving the previous generation")
            }
        }
    }
    info!("the snapshot source is gone; serving the last generation");
}

/// The tonic service ([`AdsServer::service`]).
#[derive(Debug, Clone)]
pub struct AdsService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        session::open::<sotw::Sotw>(self.shared.clone(), request).await
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        session::open::<delta::Delta>(self.shared.clone(), request).await
    }
}

//! One ADS stream, whichever protocol it speaks: authentication by client certificate, the
//! node check, and the loop that answers requests and pushes new generations.
//!
//! Each stream is one task that owns its state (no lock is shared between streams) and sends
//! through a bounded channel: a slow client only slows itself, and while it is slow the
//! generations it has not seen yet coalesce into the latest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use hostmesh_ca::SpiffeId;
use hostmesh_ca::tls::spiffe_id_of;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::Shared;
use super::events::ConnectedGuard;
use super::generation::{Generation, NodeView};
use super::node::node_info;
use super::status::{Mode, StatusEntry};
use crate::xds::{NodeInfo, type_url};

/// Responses waiting to be written to one stream.
const STREAM_BUFFER: usize = 8;

/// How long an authenticated client may take to send its first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The response stream of one ADS call.
pub type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

/// What a protocol knows of its stream.
#[derive(Debug)]
pub struct Context {
    pub connection: u64,
    pub node: NodeInfo,
    pub view: NodeView,
    pub status: StatusEntry,
    nonces: u64,
}

impl Context {
    /// A nonce unique in this process.
    pub fn nonce(&mut self) -> String {
        self.nonces += 1;
        format!("{}-{}", self.connection, self.nonces)
    }
}

/// State of the world or delta: the per-stream state machine.
pub trait Protocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const MODE: Mode;

    fn node(request: &Self::Request) -> Option<&Node>;

    /// Handles one request; an error ends the stream with that status.
    fn on_request(
        &mut self,
        ctx: &mut Context,
        request: Self::Request,
    ) -> Result<Vec<Self::Response>, Status>;

    /// The view moved to a newer generation: what to push.
    fn on_push(&mut self, ctx: &mut Context) -> Vec<Self::Response>;
}

/// The type URL of a request if this server serves it, else a clear refusal.
pub fn served_type(type_url: &str) -> Result<&'static str, Status> {
    type_url::ALL
        .into_iter()
        .find(|t| *t == type_url)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown type URL {type_url:?}; this server serves {}",
                type_url::ALL.join(", ")
            ))
        })
}

/// Types whose first request with no names means "everything".
pub fn is_wildcard_type(type_url: &str) -> bool {
    matches!(
        type_url,
        type_url::LISTENER | type_url::CLUSTER | type_url::NAME_TABLE
    )
}

fn authenticate<T>(request: &Request<T>) -> Result<SpiffeId, Status> {
    let certs = request.peer_certs().unwrap_or_default();
    let Some(leaf) = certs.first() else {
        return Err(Status::unauthenticated(
            "xDS needs a mesh client certificate; none was presented",
        ));
    };
    spiffe_id_of(leaf)
        .ok_or_else(|| Status::unauthenticated("the client certificate carries no SPIFFE ID"))
}

/// Checks the caller, reads its first request and starts the stream's task.
pub async fn open<P: Protocol>(
    shared: Arc<Shared>,
    request: Request<Streaming<P::Request>>,
) -> Result<Response<ResponseStream<P::Response>>, Status>
where
    P::Request: prost::Message + Default,
{
    let address = request.remote_addr();
    let identity = authenticate(&request).inspect_err(|e| {
        warn!(address = ?address, mode = ?P::MODE, reason = e.message(), "ADS stream refused");
    })?;
    let mut inbound = request.into_inner();
    let first = tokio::time::timeout(FIRST_REQUEST_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no request within {FIRST_REQUEST_TIMEOUT:?} of opening the stream"
            ))
        })??
        .ok_or_else(|| Status::invalid_argument("the stream ended before its first request"))?;
    let node = node_info(P::node(&first), &identity).map_err(|e| {
        warn!(address = ?address, %identity, reason = %e, "ADS stream refused");
        e.to_status()
    })?;
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let mut generations = shared.generations.subscribe();
    let generation = generations.borrow_and_update().clone();
    let own = shared.translator.for_node(&generation.snapshot, &node);
    let status = shared.status.register(
        connection,
        node.id.clone(),
        identity.to_string(),
        address,
        P::MODE,
    );
    info!(connection, node = %node.id, %identity, address = ?address, mode = ?P::MODE, "ADS stream connected");
    let guard = ConnectedGuard::new(shared.events.as_ref(), connection, &node);
    let ctx = Context {
        connection,
        node,
        view: NodeView::new(generation, &own),
        status,
        nonces: 0,
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(serve::<P>(
        shared,
        ctx,
        first,
        inbound,
        generations,
        tx,
        address,
        guard,
    ));
    Ok(Response::new(ReceiverStream::new(rx)))
}

async fn serve<P: Protocol>(
    shared: Arc<Shared>,
    mut ctx: Context,
    first: P::Request,
    mut inbound: Streaming<P::Request>,
    mut generations: watch::Receiver<Arc<Generation>>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
    address: Option<SocketAddr>,
    guard: ConnectedGuard,
) where
    P::Request: prost::Message + Default,
{
    let mut protocol = P::default();
    let mut next = Some(first);
    let reason = loop {
        let outcome = match next.take() {
            Some(request) => protocol.on_request(&mut ctx, request),
            None => tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(request)) => protocol.on_request(&mut ctx, request),
                    Ok(None) => break "the client closed the stream".to_owned(),
                    Err(status) => break format!("receive failed: {}", status.message()),
                },
                changed = generations.changed() => {
                    if changed.is_err() {
                        break "the server is stopping".to_owned();
                    }
                    let generation = generations.borrow_and_update().clone();
                    let own = shared.translator.for_node(&generation.snapshot, &ctx.node);
                    debug!(connection = ctx.connection, generation = generation.number, "push");
                    ctx.view.refresh(generation, &own);
                    Ok(protocol.on_push(&mut ctx))
                }
            },
        };
        match outcome {
            Ok(responses) => {
                let mut gone = false;
                for response in responses {
                    if tx.send(Ok(response)).await.is_err() {
                        gone = true;
                        break;
                    }
                }
                if gone {
                    break "the client went away".to_owned();
                }
            }
            Err(status) => {
                warn!(connection = ctx.connection, node = %ctx.node.id, code = ?status.code(), reason = status.message(), "ADS stream ended with an error");
                let reason = status.message().to_owned();
                let _ = tx.send(Err(status)).await;
                break reason;
            }
        }
    };
    info!(connection = ctx.connection, node = %ctx.node.id, identity = %ctx.node.identity, address = ?address, %reason, "ADS stream disconnected");
    drop(guard);
}

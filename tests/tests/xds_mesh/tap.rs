//! A wrapper around the registry's ADS service that the tests steer and read, working on the
//! gRPC frames: it can refuse the incremental protocol (`UNIMPLEMENTED`, as a server that
//! only speaks state of the world), counts every resource the server sends by type URL, and
//! can hold endpoint responses back.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use hostmesh_registry::xds::type_url;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::NamedService;

const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// What went through the tap, and the switch that holds endpoint responses back.
#[derive(Debug)]
pub struct TapLog {
    /// Resources sent, by type URL (both protocols).
    sent: Mutex<BTreeMap<String, usize>>,
    /// `DeltaAggregatedResources` calls answered `UNIMPLEMENTED`.
    pub delta_refused: AtomicUsize,
    /// While `false`, endpoint responses wait (the rest of their stream waits behind them).
    endpoints_open: watch::Sender<bool>,
}

impl Default for TapLog {
    fn default() -> Self {
        Self {
            sent: Mutex::default(),
            delta_refused: AtomicUsize::new(0),
            endpoints_open: watch::Sender::new(true),
        }
    }
}

impl TapLog {
    /// Resources sent so far, by type URL.
    pub fn sent(&self) -> BTreeMap<String, usize> {
        self.sent.lock().unwrap().clone()
    }

    pub fn hold_endpoints(&self, hold: bool) {
        self.endpoints_open.send_replace(!hold);
    }

    /// Counts one response and, for endpoints, waits while they are held.
    async fn pass(&self, type_url: &str, resources: usize) {
        if type_url == type_url::ENDPOINT {
            let mut open = self.endpoints_open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        *self
            .sent
            .lock()
            .unwrap()
            .entry(type_url.to_owned())
            .or_default() += resources;
    }
}

/// The tapped service: `S` is the registry's tonic service.
#[derive(Debug, Clone)]
pub struct Tap<S> {
    pub inner: S,
    /// `false`: answer `DeltaAggregatedResources` with `UNIMPLEMENTED`.
    pub delta: bool,
    pub log: Arc<TapLog>,
}

impl<S: NamedService> NamedService for Tap<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Tap<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let delta = request.uri().path() == DELTA_PATH;
        if delta && !self.delta {
            self.log.delta_refused.fetch_add(1, Ordering::SeqCst);
            let refused = Status::unimplemented("state of the world only").into_http();
            return Box::pin(async move { Ok(refused) });
        }
        let log = self.log.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = response.await?.into_parts();
            let body = relay(body, log, if delta { delta_info } else { sotw_info });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

type Describe = fn(&[u8]) -> Option<(String, usize)>;

fn delta_info(message: &[u8]) -> Option<(String, usize)> {
    let r = DeltaDiscoveryResponse::decode(message).ok()?;
    Some((r.type_url, r.resources.len()))
}

fn sotw_info(message: &[u8]) -> Option<(String, usize)> {
    let r = DiscoveryResponse::decode(message).ok()?;
    Some((r.type_url, r.resources.len()))
}

/// Forwards `body` message by message through a task that counts (and may hold) each one;
/// trailers follow unchanged.
fn relay(mut body: Body, log: Arc<TapLog>, describe: Describe) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Status>>(8);
    tokio::spawn(async move {
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    buffer.extend_from_slice(&data);
                    forward_messages(&mut buffer, &log, describe, &tx).await;
                    continue;
                }
                Err(frame) => frame,
            };
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
    });
    Body::new(StreamBody::new(ReceiverStream::new(rx)))
}

/// Sends every complete length-prefixed gRPC message in `buffer`.
async fn forward_messages(
    buffer: &mut BytesMut,
    log: &TapLog,
    describe: Describe,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Status>>,
) {
    while buffer.len() >= 5 {
        let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
        if buffer.len() < 5 + len {
            return;
        }
        let message = buffer.split_to(5 + len).freeze();
        if let Some((url, n)) = describe(&message.slice(5..)) {
            log.pass(&url, n).await;
        }
        let _ = tx.send(Ok(Frame::data(message))).await;
    }
}

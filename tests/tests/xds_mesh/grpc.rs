//! gRPC across the mesh: a tonic client → front's outbound → mTLS (`istio-h2`) → bill's
//! inbound → a tonic echo service, with bill-service declared as a `GRPC` port over xDS.

use std::net::SocketAddr;
use std::pin::Pin;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::world::{Protocol, Setup, World};

mod echo {
    #![allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
    tonic::include_proto!("hostmesh.tests.echo");
}

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{EchoReply, EchoRequest};

const FRONT: &str = "spiffe://cluster.local/ns/demo/sa/front";
/// Larger than any HTTP/2 window or frame on the way (64 KiB / 16 KiB by default).
const LARGE: usize = 1024 * 1024 + 7;

/// The echo service, answering as `name`.
#[derive(Debug)]
struct EchoApp {
    name: &'static str,
}

/// The caller's SPIFFE ID from the inbound proxy's `X-Forwarded-Client-Cert`.
fn peer(metadata: &MetadataMap) -> String {
    let xfcc = metadata
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    xfcc.split(';')
        .find_map(|part| part.strip_prefix("URI="))
        .unwrap_or("none")
        .to_owned()
}

impl EchoApp {
    fn reply(&self, request: EchoRequest, peer: &str) -> Result<EchoReply, Status> {
        if request.fail != 0 {
            let mut status = Status::new(
                Code::from(request.fail),
                format!("bill {} does not exist", request.seq),
            );
            status
                .metadata_mut()
                .insert("x-reason", MetadataValue::from_static("no-such-bill"));
            return Err(status);
        }
        Ok(EchoReply {
            seq: request.seq,
            payload: request.payload,
            app: self.name.into(),
            peer: peer.into(),
        })
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoApp {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let peer = peer(request.metadata());
        let mut response = Response::new(self.reply(request.into_inner(), &peer)?);
        response
            .metadata_mut()
            .insert("x-app", MetadataValue::from_static(self.name));
        Ok(response)
    }

    type ChatStream = Replies;

    /// Echoes each message; at the end, trailers carry `x-echoed: <count>` with `OK`.
    async fn chat(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let peer = peer(request.metadata());
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let app = EchoApp { name: self.name };
        tokio::spawn(async move {
            let mut echoed = 0u32;
            let end = loop {
                match requests.message().await {
                    Ok(Some(m)) => match app.reply(m, &peer) {
                        Ok(reply) => {
                            echoed += 1;
                            if tx.send(Ok(reply)).await.is_err() {
                                return;
                            }
                        }
                        Err(status) => break status,
                    },
                    Ok(None) => {
                        let mut ok = Status::new(Code::Ok, "");
                        ok.metadata_mut()
                            .insert("x-echoed", MetadataValue::from(echoed));
                        break ok;
                    }
                    Err(status) => break status,
                }
            };
            let _ = tx.send(Err(end)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A tonic echo server on 127.0.0.1 (HTTP/2 only, as tonic serves by default).
async fn echo_app(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = EchoServer::new(EchoApp { name })
        .max_decoding_message_size(4 * LARGE)
        .max_encoding_message_size(4 * LARGE);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// A world with bill-service as a gRPC port, v1 taking everything.
async fn grpc_world() -> World {
    let setup = Setup {
        weights: (100, 0),
        protocol: Protocol::Grpc,
        ..Setup::default()
    };
    World::start(setup, [echo_app("v1").await, echo_app("v2").await]).await
}

/// A tonic client for bill-service whose connections go to front's outbound at `vip`.
async fn client(vip: SocketAddr) -> EchoClient<Channel> {
    let uri = format!("http://bill-service.demo.svc.cluster.local:{}", vip.port());
    let channel = Endpoint::from_shared(uri)
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| async move {
            Ok::<_, std::io::Error>(TokioIo::new(TcpStream::connect(vip).await?))
        }))
        .await
        .unwrap();
    EchoClient::new(channel)
        .max_decoding_message_size(4 * LARGE)
        .max_encoding_message_size(4 * LARGE)
}

fn payload(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32 ^ seq) as u8).collect()
}

#[tokio::test]
async fn a_unary_call_crosses_the_mtls_hop_with_its_metadata() {
    let world = grpc_world().await;
    let mut client = client(world.vip).await;
    for (seq, len) in [(1, 5), (2, LARGE)] {
        let response = client
            .unary(EchoRequest {
                seq,
                payload: payload(seq, len),
                fail: 0,
            })
            .await
            .unwrap();
        assert_eq!(response.metadata().get("x-app").unwrap(), "v1");
        let reply = response.into_inner();
        assert_eq!(reply.seq, seq);
        assert!(reply.payload == payload(seq, len), "payload {seq} changed");
        assert_eq!(reply.app, "v1");
        assert_eq!(reply.peer, FRONT, "the app sees the caller's SPIFFE ID");
    }
}

#[tokio::test]
async fn a_server_error_status_arrives_unchanged() {
    let world = grpc_world().await;
    let mut client = client(world.vip).await;
    let status = client
        .unary(EchoRequest {
            seq: 7,
            payload: Vec::new(),
            fail: Code::NotFound as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "bill 7 does not exist");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "no-such-bill");
    // The channel still works after an error.
    let ok = client
        .unary(EchoRequest {
            seq: 8,
            ..Default::default()
        })
        .await;
    assert_eq!(ok.unwrap().into_inner().seq, 8);
}

#[tokio::test]
async fn a_bidirectional_stream_echoes_100_messages_in_turn_and_keeps_its_trailers() {
    let world = grpc_world().await;
    let mut client = client(world.vip).await;
    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .chat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for seq in 0..100u32 {
        let len = if seq == 50 { LARGE } else { 16 + seq as usize };
        let request = EchoRequest {
            seq,
            payload: payload(seq, len),
            fail: 0,
        };
        tx.send(request).await.unwrap();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("an echo before the next message");
        assert_eq!((reply.seq, reply.app.as_str()), (seq, "v1"));
        assert!(reply.payload == payload(seq, len), "payload {seq} changed");
        assert_eq!(reply.peer, FRONT);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none(), "grpc-status 0");
    let trailers = replies.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("x-echoed").unwrap(), "100");
}

#[tokio::test]
async fn a_stream_ended_by_an_error_delivers_the_messages_before_it_then_the_status() {
    let world = grpc_world().await;
    let mut client = client(world.vip).await;
    let requests = (0..3u32).map(|seq| EchoRequest {
        seq,
        payload: payload(seq, 100),
        fail: if seq == 2 {
            Code::FailedPrecondition as i32
        } else {
            0
        },
    });
    let mut replies = client
        .chat(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    for seq in 0..2 {
        let reply = replies.message().await.unwrap().expect("an echo");
        assert_eq!(reply.seq, seq);
    }
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "bill 2 does not exist");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "no-such-bill");
}

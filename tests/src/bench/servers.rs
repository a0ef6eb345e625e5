//! The servers behind every path: HTTP/1.1 + HTTP/2 (prior knowledge) answering 1 KB, the
//! gRPC echo service, a TCP echo and a TCP sink that answers the byte count at EOF.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::BODY_BYTES;
use super::echo::echo_server::{Echo, EchoServer};
use super::echo::{EchoReply, EchoRequest};

static ANSWER: [u8; BODY_BYTES] = [b'y'; BODY_BYTES];

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole request body, as a real application would.
    let _ = request.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from_static(&ANSWER))))
}

/// HTTP/1.1 and HTTP/2 (prior knowledge) on every accepted connection.
pub async fn serve_http(listener: TcpListener) -> io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service_fn(answer))
                .await;
        });
    }
}

#[derive(Debug)]
struct EchoApp;

#[tonic::async_trait]
impl Echo for EchoApp {
    async fn unary(
        &self,
        request: GrpcRequest<EchoRequest>,
    ) -> Result<GrpcResponse<EchoReply>, Status> {
        let request = request.into_inner();
        Ok(GrpcResponse::new(EchoReply {
            seq: request.seq,
            payload: request.payload,
            app: "bench".into(),
            peer: String::new(),
        }))
    }

    type ChatStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<EchoReply, Status>> + Send>>;

    async fn chat(
        &self,
        _request: GrpcRequest<tonic::Streaming<EchoRequest>>,
    ) -> Result<GrpcResponse<Self::ChatStream>, Status> {
        Err(Status::unimplemented("the benchmark uses unary calls only"))
    }
}

/// The gRPC echo service.
///
/// `Server::tcp_nodelay` applies only to listeners tonic binds itself, not to an incoming
/// stream, so the accepted sockets get `TCP_NODELAY` here. Without it the answer's last small
/// write (the trailers) waits for the client's delayed ACK, about 40 ms per call, which caps
/// a connection at ~25 calls/s.
pub async fn serve_grpc(listener: TcpListener) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(EchoServer::new(EchoApp))
        .serve_with_incoming(incoming)
        .await
}

async fn echo(mut tcp: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        tcp.write_all(&buf[..n]).await?;
    }
}

/// Writes back what it reads.
pub async fn serve_echo(listener: TcpListener) -> io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(echo(tcp));
    }
}

async fn sink(mut tcp: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    tcp.write_all(&total.to_be_bytes()).await?;
    tcp.shutdown().await
}

/// Reads until EOF, then answers the byte count (8 bytes, big endian).
pub async fn serve_sink(listener: TcpListener) -> io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(sink(tcp));
    }
}

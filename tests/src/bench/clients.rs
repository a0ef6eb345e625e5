//! The request clients the generator drives: HTTP/1.1 and HTTP/2 (hyper, 1 KB POST, 1 KB
//! answer, checked) and gRPC unary (tonic, the echo service with a 1 KB payload).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::BODY_BYTES;
use super::echo::EchoRequest;
use super::echo::echo_client::EchoClient;
use super::openloop::{CallError, Caller, Connector};

static BODY: [u8; BODY_BYTES] = [b'x'; BODY_BYTES];

/// The application protocol of a request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http1,
    Http2,
    Grpc,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
            Protocol::Grpc => "gRPC unary",
        }
    }
}

/// Where requests go: the address dialled and the authority (`Host`) sent, which the mesh
/// routes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub authority: String,
    pub protocol: Protocol,
}

/// One connection of an [`HttpTarget`].
#[derive(Debug)]
pub enum HttpCaller {
    Http1(http1::SendRequest<Full<Bytes>>, HttpTarget),
    Http2(http2::SendRequest<Full<Bytes>>, HttpTarget),
    Grpc(EchoClient<Channel>),
}

fn request_error(e: impl std::fmt::Display) -> CallError {
    CallError::Request(e.to_string())
}

async fn dial(addr: SocketAddr) -> Result<TokioIo<TcpStream>, CallError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| CallError::Connect(format!("{addr}: {e}")))?;
    tcp.set_nodelay(true)
        .map_err(|e| CallError::Connect(e.to_string()))?;
    Ok(TokioIo::new(tcp))
}

impl Connector for HttpTarget {
    type Caller = HttpCaller;

    async fn connect(&self) -> Result<HttpCaller, CallError> {
        match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(dial(self.addr).await?)
                    .await
                    .map_err(|e| CallError::Connect(e.to_string()))?;
                tokio::spawn(conn);
                Ok(HttpCaller::Http1(sender, self.clone()))
            }
            Protocol::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), dial(self.addr).await?)
                    .await
                    .map_err(|e| CallError::Connect(e.to_string()))?;
                tokio::spawn(conn);
                Ok(HttpCaller::Http2(sender, self.clone()))
            }
            Protocol::Grpc => {
                let origin: Uri = format!("http://{}", self.authority)
                    .parse()
                    .map_err(|e| CallError::Connect(format!("authority: {e}")))?;
                let channel = Endpoint::from_shared(format!("http://{}", self.addr))
                    .map_err(|e| CallError::Connect(e.to_string()))?
                    .origin(origin)
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| CallError::Connect(format!("{}: {e}", self.addr)))?;
                Ok(HttpCaller::Grpc(EchoClient::new(channel)))
            }
        }
    }
}

fn post(target: &HttpTarget, absolute: bool) -> Result<Request<Full<Bytes>>, CallError> {
    let uri = if absolute {
        format!("http://{}/", target.authority)
    } else {
        "/".to_owned()
    };
    Request::post(uri)
        .header(http::header::HOST, &target.authority)
        .body(Full::new(Bytes::from_static(&BODY)))
        .map_err(request_error)
}

async fn check(response: http::Response<hyper::body::Incoming>) -> Result<(), CallError> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(request_error)?
        .to_bytes();
    if status != StatusCode::OK || body.len() != BODY_BYTES {
        return Err(CallError::Answer(format!(
            "status {status}, {} body bytes",
            body.len()
        )));
    }
    Ok(())
}

impl Caller for HttpCaller {
    async fn call(&mut self) -> Result<(), CallError> {
        match self {
            HttpCaller::Http1(sender, target) => {
                sender.ready().await.map_err(request_error)?;
                let response = sender
                    .send_request(post(target, false)?)
                    .await
                    .map_err(request_error)?;
                check(response).await
            }
            HttpCaller::Http2(sender, target) => {
                sender.ready().await.map_err(request_error)?;
                let response = sender
                    .send_request(post(target, true)?)
                    .await
                    .map_err(request_error)?;
                check(response).await
            }
            HttpCaller::Grpc(client) => {
                let reply = client
                    .unary(EchoRequest {
                        seq: 1,
                        payload: BODY.to_vec(),
                        fail: 0,
                    })
                    .await
                    .map_err(request_error)?
                    .into_inner();
                if reply.payload.len() != BODY_BYTES {
                    return Err(CallError::Answer(format!(
                        "{} payload bytes",
                        reply.payload.len()
                    )));
                }
                Ok(())
            }
        }
    }
}

//! Forwards a query the mesh does not answer to the host's own resolvers.
//!
//! The client's query goes out as it came (same id, same EDNS options) over UDP, or over TCP
//! when the client used TCP or the UDP answer was truncated. Upstreams are tried in order,
//! each within a timeout. The sockets carry the agent's socket mark, so that the interception
//! table lets them through instead of redirecting them back to the proxy.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

/// The largest DNS message (and UDP payload) there is.
const MAX_MESSAGE: usize = 65_535;

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver is configured (no nameserver line in resolv.conf?)")]
    NoUpstream,
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        upstream: SocketAddr,
        timeout: Duration,
    },
    #[error("could not reach upstream {upstream}")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("upstream {upstream} answered with a message that does not parse: {reason}")]
    BadAnswer {
        upstream: SocketAddr,
        reason: String,
    },
    #[error("the query is too short to carry a DNS header")]
    ShortQuery,
}

/// The upstream resolvers and how to reach them.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    mark: Option<u32>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, mark: Option<u32>) -> Self {
        Self {
            upstreams,
            timeout,
            mark,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` (a whole DNS message) upstream and returns the first answer that parses.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Result<Message, ForwardError> {
        let id = query
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(ForwardError::ShortQuery)?;
        let mut last = ForwardError::NoUpstream;
        for &upstream in &self.upstreams {
            match self.one(upstream, query, id, tcp).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream resolver failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn one(
        &self,
        upstream: SocketAddr,
        query: &[u8],
        id: u16,
        tcp: bool,
    ) -> Result<Message, ForwardError> {
        let io_err = |source| ForwardError::Io { upstream, source };
        let timeout = ForwardError::Timeout {
            upstream,
            timeout: self.timeout,
        };
        if !tcp {
            let exchange = self.udp(upstream, query, id);
            let bytes = tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| timeout)?
                .map_err(io_err)?;
            let answer = decode(upstream, &bytes)?;
            if !answer.metadata.truncation {
                return Ok(answer);
            }
            tracing::debug!(%upstream, "truncated answer over UDP, asking again over TCP");
        }
        let exchange = self.tcp(upstream, query);
        let bytes = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ForwardError::Timeout {
                upstream,
                timeout: self.timeout,
            })?
            .map_err(io_err)?;
        decode(upstream, &bytes)
    }

    async fn udp(&self, upstream: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
        let socket = self.socket(upstream, Type::DGRAM, Protocol::UDP)?;
        socket.bind(&unspecified(upstream).into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        socket.connect(upstream).await?;
        socket.send(query).await?;
        let mut buf = vec![0; MAX_MESSAGE];
        loop {
            let n = socket.recv(&mut buf).await?;
            // A connected socket only hears from the upstream; skip stale answers by id.
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    async fn tcp(&self, upstream: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
        let len = u16::try_from(query.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query over 64 KiB"))?;
        let socket = self.socket(upstream, Type::STREAM, Protocol::TCP)?;
        let socket = TcpSocket::from_std_stream(socket.into());
        let mut stream = socket.connect(upstream).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let answer_len = stream.read_u16().await?;
        let mut buf = vec![0; usize::from(answer_len)];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    }

    fn socket(&self, upstream: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(upstream), ty, Some(proto))?;
        socket.set_nonblocking(true)?;
        if let Some(mark) = self.mark {
            socket.set_mark(mark)?;
        }
        Ok(socket)
    }
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

fn decode(upstream: SocketAddr, bytes: &[u8]) -> Result<Message, ForwardError> {
    Message::from_vec(bytes).map_err(|e| ForwardError::BadAnswer {
        upstream,
        reason: e.to_string(),
    })
}

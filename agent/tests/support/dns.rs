//! A DNS client and a fake upstream resolver for the tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_utf8(name).unwrap(), qtype));
    message
}

/// One query over a connected UDP socket (as glibc sends them), from `bind`.
pub async fn ask_udp(
    bind: SocketAddr,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> Message {
    let socket = UdpSocket::bind(bind).await.unwrap();
    socket.connect(server).await.unwrap();
    socket
        .send(&query(name, qtype).to_vec().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0; 65_535];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no DNS answer from {server} within {WAIT:?}"))
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// One query over TCP.
pub async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let bytes = query(name, qtype).to_vec().unwrap();
        stream.write_u16(bytes.len() as u16).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no DNS answer over TCP from {server} within {WAIT:?}"))
}

/// The addresses in the answer section, in order.
pub fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// A resolver that answers every A query with `answer` and records the names it was asked.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl FakeUpstream {
    pub async fn start(bind: SocketAddr, answer: Ipv4Addr) -> Self {
        Self::serve(UdpSocket::bind(bind).await.unwrap(), answer)
    }

    /// Serves on a socket bound elsewhere (in another network namespace, say).
    pub fn from_std(socket: std::net::UdpSocket, answer: Ipv4Addr) -> Self {
        socket.set_nonblocking(true).unwrap();
        Self::serve(UdpSocket::from_std(socket).unwrap(), answer)
    }

    fn serve(socket: UdpSocket, answer: Ipv4Addr) -> Self {
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 65_535];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut response =
                    Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
                response.metadata.recursion_available = true;
                response.add_queries(request.queries.clone());
                if let Some(q) = request.queries.first() {
                    log.lock().unwrap().push(q.name().to_string());
                    if q.query_type() == RecordType::A {
                        response.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A(answer)),
                        ));
                    }
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from).await;
            }
        });
        Self { addr, asked }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

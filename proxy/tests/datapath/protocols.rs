//! Each protocol crosses the mTLS hop byte-exact, bodies streamed.

use std::time::Duration;

use bytes::Bytes;
use hostmesh_proxy::config::Protocol;
use hostmesh_proxy::metrics::Direction;
use hostmesh_proxy::pool::BoxError;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Pair;
use crate::common::*;

#[tokio::test]
async fn http1_crosses_mtls_byte_exact_with_xfcc() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let mut client = h1(pair.vip).await;

    // A 4 MiB body with a known length, then a chunked one of unknown length, on one
    // keep-alive connection.
    let big = pattern(4 << 20);
    let req = Request::post("/upload")
        .header("host", "bill-service.demo.svc.cluster.local:9999")
        .header("x-forwarded-client-cert", "By=forged")
        .body(full(big.clone()))
        .unwrap();
    let (status, headers, body) = send(&mut client, req).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), big.len());
    assert!(body == big, "body changed on the way");
    assert_eq!(headers["x-seen-version"], "HTTP/1.1");
    assert_eq!(
        headers["x-seen-host"],
        "bill-service.demo.svc.cluster.local:9999"
    );

    let xfcc = headers["x-seen-xfcc"].to_str().unwrap().to_owned();
    let want_prefix = format!("By={BILL};Hash=");
    assert!(xfcc.starts_with(&want_prefix), "{xfcc}");
    assert!(xfcc.ends_with(&format!(";URI={FRONT}")), "{xfcc}");
    let hash = &xfcc[want_prefix.len()..xfcc.len() - format!(";URI={FRONT}").len()];
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));

    let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..64)
        .map(|i| Ok(Frame::data(Bytes::from(pattern(10_000 + i)))))
        .collect();
    let expected: Vec<u8> = (0..64).flat_map(|i| pattern(10_000 + i)).collect();
    let req = Request::post("/chunked")
        .header("host", "bill")
        .body(StreamBody::new(futures::stream::iter(chunks)).boxed_unsync())
        .unwrap();
    let (status, _, body) = send(&mut client, req).await;
    assert_eq!(status, 200);
    assert!(body == expected, "chunked body changed on the way");
    assert_eq!(pair.front.metrics().requests(Direction::Outbound, 200), 2);
    assert_eq!(pair.bill.metrics().requests(Direction::Inbound, 200), 2);
    // The Prometheus text carries them.
    let mut registry = prometheus_client::registry::Registry::default();
    pair.front.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            r#"hostmesh_proxy_requests_total{direction="Outbound",response_code="200"} 2"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn xfcc_hash_is_the_sha256_of_the_client_certificate() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let slot = pair.mesh.slot(FRONT);
    let leaf = slot.current().unwrap().cert[0].clone();
    // A third proxy with a known certificate, calling the same inbound.
    let front = pair.mesh.proxy(slot, hostmesh_proxy::Settings::default());
    let vip = pair.mesh.outbound(&front).await;
    let cluster = mtls_cluster("bill", &[pair.inbound], &[BILL]);
    let service = http_service(vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&front, &outbound_spec(vec![cluster], vec![service]));
    let (status, headers, _) = send(&mut h1(vip).await, get("/")).await;
    assert_eq!(status, 200);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        headers["x-seen-xfcc"].to_str().unwrap(),
        format!("By={BILL};Hash={hex};URI={FRONT}")
    );
}

#[tokio::test]
async fn grpc_bidirectional_stream_keeps_order_and_trailers() {
    let pair = Pair::new(Protocol::Grpc, echo_app("bill").await).await;
    let mut client = h2(pair.vip).await;
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let req = Request::post("http://bill-service.demo.svc.cluster.local:9999/grpc")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(rx).boxed_unsync())
        .unwrap();
    let response = tokio::time::timeout(BOUND, client.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-seen-version"], "HTTP/2.0");
    assert!(
        response.headers()["x-seen-xfcc"]
            .to_str()
            .unwrap()
            .contains(FRONT)
    );
    let mut body = response.into_body();
    let mut tx = tx;
    // Each message is answered before the next is sent: nothing is buffered on the way.
    for i in 0..5u8 {
        let message = Bytes::from(vec![i; 1000 + usize::from(i)]);
        futures::SinkExt::send(&mut tx, Ok(Frame::data(message.clone())))
            .await
            .unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < message.len() {
            let frame = tokio::time::timeout(BOUND, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            echoed.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(echoed, message);
    }
    drop(tx);
    let trailers = loop {
        let frame = tokio::time::timeout(BOUND, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(t) = frame.into_trailers() {
            break t;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailer"], "intact");
}

#[tokio::test]
async fn http2_large_body_and_many_concurrent_streams() {
    let pair = Pair::new(Protocol::Http2, echo_app("bill").await).await;
    let client = h2(pair.vip).await;
    let calls = (0..20).map(|i| {
        let mut client = client.clone();
        async move {
            let data = pattern(256 * 1024 + i);
            let req = Request::post("http://bill/echo")
                .body(full(data.clone()))
                .unwrap();
            let response = client.send_request(req).await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(body == data);
        }
    });
    tokio::time::timeout(BOUND, futures::future::join_all(calls))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_upgrade_becomes_a_byte_stream() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let mut tcp = TcpStream::connect(pair.vip).await.unwrap();
    tcp.write_all(
        b"GET /chat HTTP/1.1\r\nHost: bill\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(BOUND, tcp.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during the 101: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for round in 0..3 {
        let frame = pattern(70_000 + round);
        tcp.write_all(&frame).await.unwrap();
        let mut back = vec![0u8; frame.len()];
        tokio::time::timeout(BOUND, tcp.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert!(back == frame);
    }
}

#[tokio::test]
async fn tcp_crosses_mtls_byte_exact() {
    let pair = Pair::new(Protocol::Tcp, tcp_echo().await).await;
    let tcp = TcpStream::connect(pair.vip).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let data = pattern(3 << 20);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(BOUND, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
}

#[tokio::test]
async fn route_timeout_answers_504() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let mut route = route_to(&[("bill", 1)]);
    route.timeout = Some(Duration::from_millis(300));
    pair.route(Protocol::Http1, vec![route]);
    let mut client = h1(pair.vip).await;
    let (status, _, _) = send(&mut client, get("/slow")).await;
    assert_eq!(status, 504);
    let (status, _, _) = send(&mut h1(pair.vip).await, get("/fast")).await;
    assert_eq!(status, 200);
}

/// An application that answers one request per connection and then hangs up without saying
/// so: the pooled connection is dead when the next request comes, which must still succeed.
#[tokio::test]
async fn an_app_that_hangs_up_after_each_answer_is_still_reachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut b).await.unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let pair = Pair::new(Protocol::Http1, app).await;
    let mut client = h1(pair.vip).await;
    for _ in 0..5 {
        let (status, _, body) = send(&mut client, get("/")).await;
        assert_eq!(status, 200);
        assert_eq!(body, "ok");
    }
}

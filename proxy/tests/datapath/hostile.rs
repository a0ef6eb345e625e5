//! Hostile clients get their answer, and the proxy keeps serving.

use std::time::{Duration, Instant};

use hostmesh_proxy::config::{MtlsMode, Protocol};
use hostmesh_proxy::{HttpSettings, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Pair;
use crate::common::*;

fn settings() -> Settings {
    Settings {
        http: HttpSettings {
            header_read_timeout: Duration::from_millis(300),
            max_headers: 50,
            max_header_bytes: 16 * 1024,
            ..HttpSettings::default()
        },
        ..Settings::default()
    }
}

async fn pair() -> Pair {
    let app = echo_app("bill").await;
    Pair::with(Protocol::Http1, app, MtlsMode::Strict, settings()).await
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

async fn still_serving(pair: &Pair) {
    let (status, _, body) = send(
        &mut h1(pair.vip).await,
        http::Request::post("/")
            .header("host", "bill")
            .body(full("still here"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "still here");
}

#[tokio::test]
async fn malformed_requests_get_400_and_a_close() {
    let pair = pair().await;
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: bill\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: bill\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: bill\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST / HTTP/1.0\r\nHost: bill\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: bill\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ] {
        let answer = raw(pair.vip, request).await;
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 400"),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    still_serving(&pair).await;
}

/// Content-Length and Transfer-Encoding together: the chunked framing wins (RFC 9112 §6.3),
/// Content-Length never travels on, and the connection closes after the answer, so bytes
/// smuggled behind the chunked body are never read as a request.
#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let pair = pair().await;
    let answer = raw(
        pair.vip,
        b"POST / HTTP/1.1\r\nHost: bill\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: bill\r\n\r\n",
    )
    .await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 200"),
        "{answer:?}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert!(
        answer.contains("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{answer:?}"
    );
    still_serving(&pair).await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let pair = pair().await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: bill\r\n");
    for i in 0..60 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(pair.vip, many.as_bytes()).await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );

    let large = format!(
        "GET / HTTP/1.1\r\nHost: bill\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = raw(pair.vip, large.as_bytes()).await;
    assert!(
        status_line(&answer).starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    still_serving(&pair).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let pair = pair().await;
    let mut tcp = TcpStream::connect(pair.vip).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: bill\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, tcp.read_to_end(&mut out))
        .await
        .expect("the proxy closes a client that never finishes its headers")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&out);
    assert!(
        answer.is_empty() || status_line(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    still_serving(&pair).await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped() {
    let app = echo_app("bill").await;
    let mesh = Mesh::new();
    let tls = hostmesh_proxy::tls::MeshTls::new(
        mesh.slot(BILL),
        mesh.bundle.clone(),
        Duration::from_millis(300),
    )
    .unwrap();
    let bill = hostmesh_proxy::Proxy::new(
        hostmesh_proxy::ConfigHandle::default(),
        std::sync::Arc::new(tls),
        Settings::default(),
    );
    let inbound = mesh.inbound(&bill).await;
    install(
        &bill,
        &inbound_spec(&[(inbound, app, Protocol::Http1, MtlsMode::Strict)]),
    );
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(inbound).await.unwrap();
        // Half a ClientHello record header, then silence.
        tcp.write_all(&[0x16, 0x03]).await.unwrap();
        stalled.push(tcp);
    }
    for mut tcp in stalled {
        let mut out = Vec::new();
        let read = tokio::time::timeout(BOUND, tcp.read_to_end(&mut out))
            .await
            .expect("the proxy drops a stalled handshake");
        assert!(read.is_err() || out.is_empty() || out[0] == 0x15, "{out:?}");
    }
    // A real client still gets through.
    let front = mesh.proxy(mesh.slot(FRONT), Settings::default());
    let vip = mesh.outbound(&front).await;
    let cluster = mtls_cluster("bill", &[inbound], &[BILL]);
    let service = http_service(vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&front, &outbound_spec(vec![cluster], vec![service]));
    let (status, _, _) = send(&mut h1(vip).await, get("/")).await;
    assert_eq!(status, 200);
}

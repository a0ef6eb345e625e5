//! Who may talk to whom: roots, expected identities, STRICT and PERMISSIVE, Istio's ALPN
//! lists, certificate rotation.

use std::net::SocketAddr;
use std::sync::Arc;

use hostmesh_ca::tls::{
    CertificateSlot, ExpectedServer, SpiffeServerVerifier, TrustBundle, client_config,
};
use hostmesh_proxy::config::{MtlsMode, Protocol};
use hostmesh_proxy::metrics::Direction::Inbound;
use hostmesh_proxy::metrics::Outcome;
use hostmesh_proxy::tls::MeshTls;
use hostmesh_proxy::{ConfigHandle, Proxy, Settings};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::Pair;
use crate::common::*;

/// A TLS client to `addr` presenting `slot`, trusting `bundle`, expecting `BILL`, offering
/// `alpn`.
async fn connect(
    addr: SocketAddr,
    slot: Arc<CertificateSlot>,
    bundle: &TrustBundle,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let verifier = SpiffeServerVerifier::new(
        bundle.clone(),
        ExpectedServer::Identity(BILL.parse().unwrap()),
    );
    let config = client_config(Some(slot), verifier, alpn).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Sends a plain HTTP/1.1 request over `io` and reads until close.
async fn http1_over<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S) -> String {
    let req = b"GET /hello HTTP/1.1\r\nHost: bill\r\nX-Forwarded-Client-Cert: By=forged\r\nConnection: close\r\n\r\n";
    if io.write_all(req).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(BOUND, io.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

#[tokio::test]
async fn istio_alpn_lists_each_negotiate_and_carry_traffic() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let bundle = &pair.mesh.bundle;

    let tls = connect(
        pair.inbound,
        pair.mesh.slot(FRONT),
        bundle,
        &[b"istio-http/1.1", b"istio", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Both sides order AES-128-GCM first (SHA-256 key schedule, 10 AES rounds).
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    let answer = http1_over(tls).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("x-seen-xfcc: by={BILL};hash=")),
        "{answer}"
    );

    let tls = connect(
        pair.inbound,
        pair.mesh.slot(FRONT),
        bundle,
        &[b"istio-h2", b"istio", b"h2"],
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(Request::get("http://bill/h2").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["x-seen-xfcc"]
            .to_str()
            .unwrap()
            .ends_with(FRONT)
    );
    let _ = response.into_body().collect().await.unwrap();

    // `istio` alone: opaque TCP, so the HTTP bytes reach the application untouched.
    let tls = connect(pair.inbound, pair.mesh.slot(FRONT), bundle, &[b"istio"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"istio"[..]));
    let answer = http1_over(tls).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("x-seen-xfcc: by=forged"), "{answer}");
}

#[tokio::test]
async fn a_client_from_another_root_is_refused() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let other = Mesh::new();
    // Trusts bill's root, but its own certificate comes from another CA.
    let rogue = connect(
        pair.inbound,
        other.slot(FRONT),
        &pair.mesh.bundle,
        &[b"http/1.1"],
    )
    .await;
    if let Ok(tls) = rogue {
        let answer = http1_over(tls).await;
        assert!(answer.is_empty(), "a rogue client got an answer: {answer}");
    }
    // The same through a proxy: the outbound answers 503, the app never sees the request.
    let tls = MeshTls::new(
        other.slot(FRONT),
        pair.mesh.bundle.clone(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let rogue = Proxy::new(ConfigHandle::default(), Arc::new(tls), Settings::default());
    let vip = pair.mesh.outbound(&rogue).await;
    let cluster = mtls_cluster("bill", &[pair.inbound], &[BILL]);
    let service = http_service(vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&rogue, &outbound_spec(vec![cluster], vec![service]));
    let (status, _, _) = send(&mut h1(vip).await, get("/")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_server_with_an_unexpected_identity_is_refused() {
    let pair = Pair::new(Protocol::Http1, echo_app("bill").await).await;
    let (status, _, _) = send(&mut h1(pair.vip).await, get("/")).await;
    assert_eq!(status, 200);
    let cluster = mtls_cluster(
        "bill",
        &[pair.inbound],
        &["spiffe://cluster.local/ns/demo/sa/someone-else"],
    );
    let service = http_service(pair.vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&pair.front, &outbound_spec(vec![cluster], vec![service]));
    let (status, _, _) = send(&mut h1(pair.vip).await, get("/")).await;
    assert_eq!(status, 503);
    // One of several expected identities is enough.
    let cluster = mtls_cluster(
        "bill",
        &[pair.inbound],
        &["spiffe://cluster.local/ns/demo/sa/someone-else", BILL],
    );
    let service = http_service(pair.vip, Protocol::Http1, vec![route_to(&[("bill", 1)])]);
    install(&pair.front, &outbound_spec(vec![cluster], vec![service]));
    let (status, _, _) = send(&mut h1(pair.vip).await, get("/")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn strict_refuses_plaintext_and_permissive_accepts_it() {
    let app = echo_app("bill").await;
    let request = b"GET / HTTP/1.1\r\nHost: bill\r\nX-Forwarded-Client-Cert: By=forged\r\nConnection: close\r\n\r\n";

    // STRICT: no HTTP answer, at most a TLS alert record (content type 21), then a close.
    let strict = Pair::new(Protocol::Http1, app).await;
    let answer = raw(strict.inbound, request).await;
    assert!(
        answer.is_empty() || answer.starts_with('\u{15}'),
        "{answer:?}"
    );
    // Counted by the server task after it closes the socket: wait for it, within a bound.
    eventually(|| strict.bill.metrics().connections(Inbound, Outcome::Refused) == 1).await;

    let permissive = Pair::with(
        Protocol::Http1,
        app,
        MtlsMode::Permissive,
        Settings::default(),
    )
    .await;
    let answer = raw(permissive.inbound, request).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.contains("x-seen-xfcc: none"),
        "forged XFCC passed: {answer}"
    );
    assert_eq!(
        permissive
            .bill
            .metrics()
            .connections(Inbound, Outcome::Plaintext),
        1
    );
    // mTLS still works on the permissive port.
    let (status, headers, _) = send(&mut h1(permissive.vip).await, get("/")).await;
    assert_eq!(status, 200);
    assert!(headers["x-seen-xfcc"].to_str().unwrap().ends_with(FRONT));
}

#[tokio::test]
async fn a_rotated_certificate_is_used_by_the_next_handshake() {
    let mesh = Mesh::new();
    let slot = mesh.slot(BILL);
    let bill = mesh.proxy(slot.clone(), Settings::default());
    let inbound = mesh.inbound(&bill).await;
    let app = echo_app("bill").await;
    install(
        &bill,
        &inbound_spec(&[(inbound, app, Protocol::Http1, MtlsMode::Strict)]),
    );

    let leaf = |tls: &TlsStream<TcpStream>| tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let before = connect(inbound, mesh.slot(FRONT), &mesh.bundle, &[b"http/1.1"])
        .await
        .unwrap();
    let new = mesh.certificate(BILL);
    let new_leaf = new.cert[0].clone();
    slot.replace(new);
    let after = connect(inbound, mesh.slot(FRONT), &mesh.bundle, &[b"http/1.1"])
        .await
        .unwrap();
    assert_ne!(leaf(&before), leaf(&after));
    assert_eq!(leaf(&after), new_leaf);
    // The connection made before the rotation still works.
    let answer = http1_over(before).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
}

//! Weighted splits, config swaps, and destinations nobody claims.

use hostmesh_proxy::Settings;
use hostmesh_proxy::config::spec::{HeaderMatchSpec, HeaderValueSpec, PathMatchSpec};
use hostmesh_proxy::config::{MtlsMode, Protocol};

use crate::common::*;

/// front → two bill hosts (`a`, `b`), one cluster each, split by `weights`.
struct Split {
    mesh: Mesh,
    front: std::sync::Arc<hostmesh_proxy::Proxy>,
    vip: std::net::SocketAddr,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
}

impl Split {
    async fn new() -> Self {
        let mesh = Mesh::new();
        let mut inbounds = Vec::new();
        for name in ["a", "b"] {
            let bill = mesh.proxy(mesh.slot(BILL), Settings::default());
            let inbound = mesh.inbound(&bill).await;
            let app = echo_app(name).await;
            install(
                &bill,
                &inbound_spec(&[(inbound, app, Protocol::Http1, MtlsMode::Strict)]),
            );
            inbounds.push(inbound);
        }
        let front = mesh.proxy(mesh.slot(FRONT), Settings::default());
        let vip = mesh.outbound(&front).await;
        Self {
            mesh,
            front,
            vip,
            a: inbounds[0],
            b: inbounds[1],
        }
    }

    fn weights(&self, a: u32, b: u32) {
        let clusters = vec![
            mtls_cluster("a", &[self.a], &[BILL]),
            mtls_cluster("b", &[self.b], &[BILL]),
        ];
        let service = http_service(
            self.vip,
            Protocol::Http1,
            vec![route_to(&[("a", a), ("b", b)])],
        );
        install(&self.front, &outbound_spec(clusters, vec![service]));
    }

    /// Sends `n` requests on one keep-alive connection; counts answers from `a`.
    async fn count_a(&self, n: usize) -> usize {
        let mut client = h1(self.vip).await;
        let mut a = 0;
        for _ in 0..n {
            let (status, headers, _) = send(&mut client, get("/")).await;
            assert_eq!(status, 200);
            if headers["x-app"] == "a" {
                a += 1;
            }
        }
        a
    }
}

#[tokio::test]
async fn a_50_50_split_holds_over_1000_requests_and_a_swap_applies_to_new_requests() {
    let split = Split::new().await;
    split.weights(50, 50);
    let a = split.count_a(1000).await;
    // Binomial(1000, 0.5): σ ≈ 15.8; ±5σ.
    assert!((421..=579).contains(&a), "a got {a} of 1000");

    // A push moves everything to b; the next requests, even on a connection opened before
    // the push, follow it.
    let mut client = h1(split.vip).await;
    split.weights(0, 100);
    for _ in 0..50 {
        let (_, headers, _) = send(&mut client, get("/")).await;
        assert_eq!(headers["x-app"], "b");
    }
    split.weights(90, 10);
    let a = split.count_a(400).await;
    // Binomial(400, 0.9): mean 360, σ = 6.
    assert!((330..=390).contains(&a), "a got {a} of 400");
    drop(split.mesh);
}

#[tokio::test]
async fn routes_match_path_and_headers() {
    let split = Split::new().await;
    let mut canary = route_to(&[("b", 1)]);
    canary.name = "canary".into();
    canary.headers.push(HeaderMatchSpec {
        name: "x-canary".into(),
        value: HeaderValueSpec::Exact("yes".into()),
        invert: false,
    });
    let mut admin = route_to(&[("b", 1)]);
    admin.path = PathMatchSpec::Regex("/admin/[0-9]+".into());
    let clusters = vec![
        mtls_cluster("a", &[split.a], &[BILL]),
        mtls_cluster("b", &[split.b], &[BILL]),
    ];
    let service = http_service(
        split.vip,
        Protocol::Http1,
        vec![canary, admin, route_to(&[("a", 1)])],
    );
    install(&split.front, &outbound_spec(clusters, vec![service]));
    let mut client = h1(split.vip).await;
    let app = |h: &http::HeaderMap| h["x-app"].to_str().unwrap().to_owned();
    assert_eq!(app(&send(&mut client, get("/x")).await.1), "a");
    assert_eq!(app(&send(&mut client, get("/admin/12")).await.1), "b");
    assert_eq!(app(&send(&mut client, get("/admin/x")).await.1), "a");
    let mut req = get("/x");
    req.headers_mut().insert("x-canary", "yes".parse().unwrap());
    assert_eq!(app(&send(&mut client, req).await.1), "b");
}

#[tokio::test]
async fn registry_only_refuses_unknown_destinations() {
    let mesh = Mesh::new();
    let front = mesh.proxy(mesh.slot(FRONT), Settings::default());
    let vip = mesh.outbound(&front).await;
    install(&front, &outbound_spec(vec![], vec![]));
    assert_eq!(raw(vip, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await, "");
}

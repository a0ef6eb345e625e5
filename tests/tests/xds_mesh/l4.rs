//! `VirtualService` `tcp` and `tls` routes end to end: Istio YAML → control server →
//! `virtualOutbound` chains over ADS → front's proxy (weighted TCP, SNI read from the
//! `ClientHello`) → mTLS → the workload hosts' proxies → the apps, which count what arrived.

use std::net::SocketAddr;

use futures::StreamExt;

use crate::l4_world::*;

const ECHO: &str = "echo.demo.svc.cluster.local";
const BACKEND: &str = "tls-backend.demo.svc.cluster.local";

/// Workloads `APP-a` (label `version: a`) and `APP-b` (`version: b`) at the inbounds (port
/// `p`), and subsets `a` and `b` of `host`.
fn workloads(host: &str, app: &str, inbounds: [SocketAddr; 2]) -> String {
    let entry = |i: usize, version: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {app}-{version}, namespace: demo}}
spec:
  address: {ip}
  ports: {{p: {port}}}
  labels: {{app: {app}, version: {version}}}
  serviceAccount: workload
---
",
            ip = inbounds[i].ip(),
            port = inbounds[i].port(),
        )
    };
    format!(
        "{a}{b}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {app}, namespace: demo}}
spec:
  host: {host}
  subsets:
  - {{name: a, labels: {{version: a}}}}
  - {{name: b, labels: {{version: b}}}}
---
",
        a = entry(0, "a"),
        b = entry(1, "b"),
    )
}

#[tokio::test]
async fn a_tcp_route_splits_connections_80_20_and_every_byte_arrives() {
    let a = L4App::plain("a").await;
    let b = L4App::plain("b").await;
    let world = L4World::start([&a, &b], |vip, inbounds| {
        format!(
            "{}apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [{ECHO}]
  addresses: [{vip_ip}]
  location: MESH_INTERNAL
  ports: [{{number: {vip_port}, name: p, protocol: TCP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: echo}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: [{ECHO}]
  tcp:
  - match: [{{port: {vip_port}}}]
    route:
    - {{destination: {{host: {ECHO}, subset: a}}, weight: 80}}
    - {{destination: {{host: {ECHO}, subset: b}}, weight: 20}}
",
            workloads(ECHO, "echo", inbounds),
            vip_ip = vip.ip(),
            vip_port = vip.port(),
        )
    })
    .await;
    const CONNECTIONS: usize = 300;
    const PAYLOAD: usize = 1000;
    let answers: Vec<String> = futures::stream::iter(0..CONNECTIONS)
        .map(|i| {
            let world = &world;
            async move {
                world
                    .tcp(&vec![u8::try_from(i % 251).unwrap(); PAYLOAD])
                    .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let to_b = answers.iter().filter(|a| *a == "b").count();
    let to_a = answers.iter().filter(|a| *a == "a").count();
    assert_eq!(
        to_a + to_b,
        CONNECTIONS,
        "every connection answered: {answers:?}"
    );
    // 20 % of 300 is 60 (binomial standard deviation 6.9): 30..=90 is over 4 deviations.
    assert!(
        (30..=90).contains(&to_b),
        "{to_b} of {CONNECTIONS} went to b"
    );
    assert_eq!((a.connections(), b.connections()), (to_a, to_b));
    assert_eq!((a.bytes(), b.bytes()), (to_a * PAYLOAD, to_b * PAYLOAD));
}

/// `edge` (hosts `a.test`, `b.test`, resolution `NONE`) at the VIP on a TLS port; TLS routes
/// send `a.test` to the backend's subset `a` and `b.test` to subset `b`.
fn edge(vip: SocketAddr, inbounds: [SocketAddr; 2]) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-backend, namespace: demo}}
spec:
  hosts: [{BACKEND}]
  location: MESH_INTERNAL
  ports: [{{number: 8443, name: p, protocol: TLS}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: tls-backend}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: edge, namespace: demo}}
spec:
  hosts: [a.test, b.test]
  addresses: [{vip_ip}]
  location: MESH_EXTERNAL
  ports: [{{number: {vip_port}, name: tls, protocol: TLS}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: demo}}
spec:
  hosts: [a.test, b.test]
  tls:
  - match: [{{sniHosts: [a.test], port: {vip_port}}}]
    route: [{{destination: {{host: {BACKEND}, subset: a}}}}]
  - match: [{{sniHosts: [b.test]}}]
    route: [{{destination: {{host: {BACKEND}, subset: b}}}}]
",
        workloads(BACKEND, "tls-backend", inbounds),
        vip_ip = vip.ip(),
        vip_port = vip.port(),
    )
}

#[tokio::test]
async fn two_server_names_on_one_port_reach_two_backends_whose_tls_ends_at_the_backend() {
    let ca = TestCa::new();
    let a = L4App::tls("a", "a.test", &ca).await;
    let b = L4App::tls("b", "b.test", &ca).await;
    let world = L4World::start([&a, &b], edge).await;
    let connector = ca.connector();
    for round in 0..3 {
        for (name, app) in [("a.test", &a), ("b.test", &b)] {
            let (cert, answer) = world
                .tls(&connector, name, b"hello over the client's own TLS")
                .await
                .unwrap_or_else(|e| panic!("{name}, round {round}: {e}"));
            assert_eq!(answer, app.name, "{name} answered by the wrong backend");
            assert_eq!(
                Some(&cert),
                app.cert.as_ref(),
                "{name}: not the backend's certificate"
            );
        }
    }
    assert_eq!((a.connections(), b.connections()), (3, 3));
    let payload = b"hello over the client's own TLS".len();
    assert_eq!((a.bytes(), b.bytes()), (3 * payload, 3 * payload));

    // A name no route takes goes to the edge service itself (resolution NONE: to the address
    // dialled, here front's listener, which refuses a connection to itself): closed, and no
    // backend sees it.
    let refused = world.tls(&connector, "c.test", b"x").await;
    assert!(refused.is_err(), "c.test was answered: {refused:?}");
    assert_eq!((a.connections(), b.connections()), (3, 3));
}

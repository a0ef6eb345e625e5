//! Load balancing end to end (Istio YAML → control server → Envoy resources → proxies → apps):
//! consistent hashing on a header, a generated cookie and the source IP; locality failover;
//! `maxRequestsPerConnection` counted on the wire; `sourceLabels` routing two clients
//! differently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hostmesh_proxy::metrics::{Direction, Outcome};

use crate::traffic_world::*;

fn rule(traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop, namespace: demo}}
spec:
  host: {SHOP}
  trafficPolicy:
{traffic_policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
"
    )
}

async fn apps() -> (App, App) {
    (
        App::start("v1", answer(200, NO_WAIT)).await,
        App::start("v2", answer(200, NO_WAIT)).await,
    )
}

#[tokio::test]
async fn consistent_hash_on_a_header_keeps_each_user_on_one_endpoint_and_spreads_users() {
    let (v1, v2) = apps().await;
    let policy = rule(
        "    loadBalancer:\n      consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}",
    );
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let mut owners = std::collections::BTreeMap::new();
    for user in 0..24 {
        let name = format!("user-{user}");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let a = world.send(request("GET", "/", &[("x-user", &name)])).await;
            assert_eq!(a.status, 200);
            seen.insert(a.header("x-app").to_owned());
        }
        assert_eq!(seen.len(), 1, "{name} went to {seen:?}");
        owners.insert(name, seen.into_iter().next().unwrap());
    }
    let on_v1 = owners.values().filter(|a| *a == "v1").count();
    assert!(
        (3..=21).contains(&on_v1),
        "24 users spread over both endpoints, {on_v1} on v1"
    );
    assert_eq!(v1.hits() + v2.hits(), 120);
}

#[tokio::test]
async fn maglev_with_a_generated_cookie_sticks_a_client_to_its_endpoint() {
    let (v1, v2) = apps().await;
    let policy = rule(
        "    loadBalancer:\n      consistentHash:\n        maglev: {tableSize: 1021}\n        httpCookie: {name: shop-affinity, path: /, ttl: 3600s}",
    );
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let mut by_app = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..12 {
        // A new client: no cookie, so the proxy makes one and says so.
        let first = world.get("/").await;
        let set = first.header("set-cookie").to_owned();
        assert!(
            set.starts_with("shop-affinity=\"")
                && set.ends_with("; Max-Age=3600; Path=/; HttpOnly"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let app = first.header("x-app").to_owned();
        for _ in 0..5 {
            let a = world
                .send(request("GET", "/", &[("cookie", &cookie)]))
                .await;
            assert_eq!(
                a.header("x-app"),
                app,
                "the cookie keeps the client on {app}"
            );
            assert_eq!(
                a.header("set-cookie"),
                "none",
                "no new cookie once it has one"
            );
        }
        *by_app.entry(app).or_default() += 1;
    }
    assert_eq!(by_app.values().sum::<usize>(), 12);
    assert_eq!(
        by_app.len(),
        2,
        "new clients land on both endpoints: {by_app:?}"
    );
}

#[tokio::test]
async fn consistent_hash_on_the_source_ip() {
    let (v1, v2) = apps().await;
    let policy = rule("    loadBalancer:\n      consistentHash: {useSourceIp: true}");
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let mut by_app = std::collections::BTreeMap::<String, usize>::new();
    for n in 1..=16u8 {
        // Clients on 16 addresses, each sending 4 requests on new connections.
        let source = std::net::IpAddr::from([127, 3, 0, n]);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let a = send_from(Some(source), world.vip, request("GET", "/", &[])).await;
            seen.insert(a.header("x-app").to_owned());
        }
        assert_eq!(seen.len(), 1, "{source} went to {seen:?}");
        *by_app.entry(seen.into_iter().next().unwrap()).or_default() += 1;
    }
    assert_eq!(
        by_app.len(),
        2,
        "sources spread over both endpoints: {by_app:?}"
    );
}

#[tokio::test]
async fn locality_failover_prefers_the_clients_zone_until_its_endpoint_is_ejected() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let near = App::start(
        "v1",
        Arc::new(move |_| {
            (
                if flag.load(Ordering::SeqCst) {
                    503
                } else {
                    200
                },
                NO_WAIT,
            )
        }),
    )
    .await;
    let far = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = rule(
        "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover: [{from: eu-west, to: us-east}]",
    );
    let setup = Setup {
        front_locality: Some("eu-west/zone-a"),
        localities: [Some("eu-west/zone-a"), Some("us-east/zone-a")],
        ..Setup::default()
    };
    let world = TrafficWorld::start_with([&near, &far], &policy, setup).await;
    for _ in 0..30 {
        assert_eq!(world.get("/").await.header("x-app"), "v1");
    }
    assert_eq!(
        (near.hits(), far.hits()),
        (30, 0),
        "priority 0: the client's own zone"
    );
    failing.store(true, Ordering::SeqCst);
    // The first failure ejects v1 (the route without a VirtualService has no retries).
    let a = world.get("/").await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (503, "v1"));
    let near_before = near.hits();
    for _ in 0..30 {
        assert_eq!(world.get("/").await.header("x-app"), "v2");
    }
    assert_eq!(
        near.hits(),
        near_before,
        "the ejected endpoint gets nothing"
    );
}

#[tokio::test]
async fn without_outlier_detection_locality_is_ignored_as_in_istio() {
    let (v1, v2) = apps().await;
    let policy = rule(
        "    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting: {enabled: true}",
    );
    let setup = Setup {
        front_locality: Some("eu-west/zone-a"),
        localities: [Some("eu-west/zone-a"), Some("us-east/zone-a")],
        ..Setup::default()
    };
    let world = TrafficWorld::start_with([&v1, &v2], &policy, setup).await;
    for _ in 0..20 {
        world.get("/").await;
    }
    assert_eq!(
        (v1.hits(), v2.hits()),
        (10, 10),
        "round robin over both localities"
    );
}

#[tokio::test]
async fn max_requests_per_connection_retires_upstream_connections() {
    let (v1, v2) = apps().await;
    let vs = vs(&format!(
        "  - route:\n    - destination: {{host: {SHOP}, subset: v1}}\n"
    ));
    let policy = rule("    connectionPool:\n      http: {maxRequestsPerConnection: 3}") + &vs;
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let inbound = |w: &TrafficWorld| {
        w.hosts[0]
            .proxy
            .metrics()
            .connections(Direction::Inbound, Outcome::Proxied)
    };
    let before = inbound(&world);
    for _ in 0..12 {
        assert_eq!(world.get("/").await.status, 200);
    }
    assert_eq!(v1.hits(), 12);
    assert_eq!(
        inbound(&world) - before,
        4,
        "12 requests at 3 per connection reach v1's proxy over 4 mTLS connections"
    );
    assert_eq!(
        v1.connections.load(Ordering::SeqCst),
        4,
        "and the app over 4 connections from its own proxy (the rule applies server side too)"
    );
}

#[tokio::test]
async fn source_labels_route_two_clients_differently() {
    let (v1, v2) = apps().await;
    let vs = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: demo}}
spec:
  hosts: [{SHOP}]
  http:
  - match: [{{sourceLabels: {{role: tester}}}}]
    route:
    - destination: {{host: {SHOP}, subset: v2}}
  - route:
    - destination: {{host: {SHOP}, subset: v1}}
"
    );
    let policy = rule("    loadBalancer: {simple: ROUND_ROBIN}") + &vs;
    let setup = Setup {
        front_labels: vec![("app", "front"), ("role", "tester")],
        second_front: Some(vec![("app", "front")]),
        ..Setup::default()
    };
    let world = TrafficWorld::start_with([&v1, &v2], &policy, setup).await;
    let (_, second) = world.second.as_ref().unwrap();
    for _ in 0..10 {
        assert_eq!(
            world.get("/").await.header("x-app"),
            "v2",
            "the tester goes to v2"
        );
        let a = send_to(*second, request("GET", "/", &[])).await;
        assert_eq!(a.header("x-app"), "v1", "everyone else to v1");
    }
    assert_eq!((v1.hits(), v2.hits()), (10, 10));
}

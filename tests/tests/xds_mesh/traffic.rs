//! Traffic management end to end: Istio `VirtualService`/`DestinationRule` YAML → control
//! server → Envoy resources over ADS → front's proxy → mTLS → the shop hosts' proxies → apps.
//! Each scenario asserts what arrived at the apps or on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mesh::BOUND;
use crate::traffic_world::*;

fn subsets(traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop, namespace: demo}}
spec:
  host: {SHOP}
{traffic_policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
"
    )
}

#[tokio::test]
async fn a_3s_timeout_in_front_of_a_5s_service_answers_504_after_3s() {
    let slow = App::start("v1", answer(200, Duration::from_secs(5))).await;
    let other = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("")
        + &vs(&format!(
            "  - timeout: 3s\n    route:\n    - destination: {{host: {SHOP}, subset: v1}}\n"
        ));
    let world = TrafficWorld::start([&slow, &other], &policy).await;
    let started = Instant::now();
    let a = world.get("/").await;
    let took = started.elapsed();
    assert_eq!(a.status, 504);
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4900),
        "answered after {took:?}"
    );
    assert_eq!(world.front.proxy.metrics().response_flags("UT"), 1);
}

#[tokio::test]
async fn three_retries_to_a_failing_service_make_exactly_four_attempts() {
    let failing = App::start("v1", answer(503, NO_WAIT)).await;
    let other = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("")
        + &vs(&format!(
            "  - retries: {{attempts: 3, perTryTimeout: 2s, retryOn: 5xx}}\n    route:\n    - destination: {{host: {SHOP}, subset: v1}}\n"
        ));
    let world = TrafficWorld::start([&failing, &other], &policy).await;
    let a = world.get("/").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("x-app"), "v1", "the app's last answer comes back");
    assert_eq!(failing.hits(), 4, "1 attempt + 3 retries");
    assert_eq!(other.hits(), 0);
}

#[tokio::test]
async fn an_injected_abort_is_retried_never_and_a_delay_slows_the_request() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    let v2 = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("")
        + &vs(&format!(
            "  - match: [{{uri: {{prefix: /abort}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
  - match: [{{uri: {{prefix: /delay}}}}]
    fault: {{delay: {{fixedDelay: 1s, percentage: {{value: 100}}}}}}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
"
        ));
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let a = world.get("/abort").await;
    assert_eq!(a.status, 418);
    assert_eq!(&a.body[..], b"fault filter abort\n");
    assert_eq!(v1.hits(), 0, "an aborted request never reaches the app");
    let started = Instant::now();
    let a = world.get("/delay").await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v1.hits(), 1);
}

#[tokio::test]
async fn a_circuit_breaker_of_one_connection_and_one_pending_sheds_a_burst_with_503() {
    let held = App::start("v1", answer(200, Duration::from_millis(1500))).await;
    let other = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets(
        "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}",
    ) + &vs(&format!(
        "  - route:\n    - destination: {{host: {SHOP}, subset: v1}}\n"
    ));
    let world = Arc::new(TrafficWorld::start([&held, &other], &policy).await);
    // The app answers after 1.5 s: the first request holds the one connection, the second
    // waits as the one pending request, every other is shed at once.
    let slow_world = world.clone();
    let mut burst = Vec::new();
    for _ in 0..10 {
        let w = slow_world.clone();
        burst.push(tokio::spawn(async move { w.get("/slow").await }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for b in burst {
        let a = b.await.unwrap();
        match a.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(a.header("x-envoy-overloaded"), "true");
                shed += 1;
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(ok + shed, 10);
    assert!(
        ok >= 2 && shed >= 6,
        "one in flight, one pending, the rest shed: {ok} ok, {shed} shed"
    );
    assert_eq!(
        world.front.proxy.metrics().response_flags("UO"),
        shed as u64,
        "each shed request carries UO"
    );
    assert_eq!(held.hits(), ok, "shed requests never reached the app");
}

#[tokio::test]
async fn an_endpoint_answering_5xx_is_ejected_and_comes_back_after_the_ejection_time() {
    let bad = App::start("v1", answer(500, NO_WAIT)).await;
    let good = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop, namespace: demo}}
spec:
  host: {SHOP}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 100}}
---
"
    ) + &vs(&format!(
        "  - retries: {{attempts: 0}}\n    route:\n    - destination: {{host: {SHOP}}}\n"
    ));
    let world = TrafficWorld::start([&bad, &good], &policy).await;
    // Round robin: v1 fails twice within the first few requests and is ejected.
    for _ in 0..6 {
        world.get("/").await;
    }
    let ejected_at = Instant::now();
    for i in 0..20 {
        let a = world.get("/").await;
        if ejected_at.elapsed() < Duration::from_millis(2500) {
            assert_eq!(
                (a.status.as_u16(), a.header("x-app")),
                (200, "v2"),
                "request {i}"
            );
        }
    }
    assert_eq!(bad.hits(), 2, "ejected after two consecutive 5xx");
    // After the ejection time v1 is tried again.
    let deadline = Instant::now() + BOUND;
    while bad.hits() == 2 {
        assert!(Instant::now() < deadline, "v1 never came back");
        world.get("/").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ejected_at.elapsed() >= Duration::from_millis(2900));
}

#[tokio::test]
async fn a_90_10_canary_and_a_header_ab_split_hold_over_1000_requests() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    let v2 = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("")
        + &vs(&format!(
            "  - match: [{{headers: {{x-group: {{exact: b}}}}}}]
    route:
    - destination: {{host: {SHOP}, subset: v2}}
  - route:
    - destination: {{host: {SHOP}, subset: v1}}
      weight: 90
    - destination: {{host: {SHOP}, subset: v2}}
      weight: 10
"
        ));
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let (mut a1, mut a2, mut b2) = (0, 0, 0);
    for i in 0..1000 {
        let group = if i % 2 == 0 { "a" } else { "b" };
        let a = world.send(request("GET", "/", &[("x-group", group)])).await;
        assert_eq!(a.status, 200);
        match (group, a.header("x-app")) {
            ("a", "v1") => a1 += 1,
            ("a", "v2") => a2 += 1,
            ("b", "v2") => b2 += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b2, 500, "group b always goes to v2");
    // Binomial(500, 0.1): σ ≈ 6.7; ±5σ.
    assert!(
        (17..=83).contains(&a2),
        "v2 got {a2} of group a's 500 ({a1} to v1)"
    );
}

#[tokio::test]
async fn redirect_rewrite_method_query_and_header_edits_on_the_wire() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    let v2 = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("") + &vs(&format!(
        "  - match: [{{uri: {{prefix: /old/}}}}]
    redirect: {{uri: /new, authority: shop.example.com, scheme: https, redirectCode: 302}}
  - match: [{{uri: {{prefix: /api/}}, method: {{exact: POST}}, queryParams: {{debug: {{exact: \"1\"}}}}}}]
    rewrite: {{uri: /v2/, authority: shop-internal}}
    headers:
      request: {{set: {{x-route: api}}, remove: [x-secret]}}
      response: {{set: {{cache-control: no-store}}, remove: [server]}}
    route:
    - destination: {{host: {SHOP}, subset: v2}}
  - route:
    - destination: {{host: {SHOP}, subset: v1}}
"
    ));
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let a = world.get("/old/page?x=1").await;
    assert_eq!(a.status, 302);
    assert_eq!(a.header("location"), "https://shop.example.com/new?x=1");
    assert_eq!(v1.hits() + v2.hits(), 0);

    let req = request(
        "POST",
        "/api/items?debug=1",
        &[("x-secret", "s"), ("x-keep", "k")],
    );
    let a = world.send(req).await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v2"));
    assert_eq!(a.header("x-path"), "/v2/items?debug=1");
    assert_eq!(a.header("x-host"), "shop-internal");
    assert_eq!(a.header("x-saw-route"), "api");
    assert_eq!(a.header("x-saw-secret"), "none");
    assert_eq!(a.header("x-saw-keep"), "k");
    assert_eq!(a.header("cache-control"), "no-store");
    assert_eq!(a.header("server"), "none");

    // A GET, or a POST without the query parameter, takes the default route.
    let a = world.get("/api/items?debug=1").await;
    assert_eq!(
        (a.header("x-app"), a.header("x-path")),
        ("v1", "/api/items?debug=1")
    );
    let a = world.send(request("POST", "/api/items", &[])).await;
    assert_eq!(a.header("x-app"), "v1");
}

#[tokio::test]
async fn a_local_rate_limit_answers_429_with_retry_after_beyond_its_rate() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    let v2 = App::start("v2", answer(200, NO_WAIT)).await;
    let policy = subsets("")
        + &vs(&format!(
            "  - route:\n    - destination: {{host: {SHOP}, subset: v1}}\n"
        ))
        .replace(
            "metadata: {name: shop, namespace: demo}\nspec:\n  hosts",
            "metadata:\n  name: shop\n  namespace: demo\n  annotations: {traffic.hostmesh.io/local-rate-limit: \"3/1h\"}\nspec:\n  hosts",
        );
    let world = TrafficWorld::start([&v1, &v2], &policy).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = world.get("/").await;
        if a.status == 429 {
            assert_eq!(a.header("retry-after"), "3600");
            assert_eq!(&a.body[..], b"local_rate_limited\n");
        }
        statuses.push(a.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(v1.hits(), 3, "refused requests never reach the app");
    assert_eq!(world.front.proxy.metrics().response_flags("RL"), 2);
}

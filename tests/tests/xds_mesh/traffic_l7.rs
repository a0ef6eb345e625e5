//! CORS, mirroring and service degradation end to end: Istio YAML → control server → Envoy
//! resources over ADS → front's proxy → mTLS → the shop hosts' proxies → apps. Each test
//! asserts the headers and bodies on the wire and what the apps did or did not see.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mesh::BOUND;
use crate::traffic_world::*;

fn subsets(annotations: &str, traffic_policy: &str, extra_subsets: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
  namespace: demo
  annotations: {{{annotations}}}
spec:
  host: {SHOP}
{traffic_policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
{extra_subsets}
---
"
    )
}

/// An app that records the `Host` and path of every request it sees.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn recording(
    status: u16,
    delay: impl Fn(&str) -> Duration + Send + Sync + 'static,
) -> (Behaviour, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let behaviour: Behaviour = Arc::new(move |req| {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let path = req.uri().path().to_owned();
        let wait = delay(&path);
        log.lock().unwrap().push((host, path));
        (status, wait)
    });
    (behaviour, seen)
}

fn preflight(path: &str, origin: &str) -> http::Request<http_body_util::Full<hyper::body::Bytes>> {
    request(
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-token"),
        ],
    )
}

#[tokio::test]
async fn a_cors_preflight_is_answered_by_the_proxy_and_allowed_origins_get_their_headers() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    let v2 = App::start("v2", answer(200, NO_WAIT)).await;
    let cors = "allowOrigins: [{exact: \"https://shop.example\"}, {prefix: \"https://dev.\"}, {regex: \"https://[a-z]+\\\\.test\"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token, content-type]
      exposeHeaders: [x-trace]
      maxAge: 10m
      allowCredentials: true";
    let policy = subsets("", "", "")
        + &vs(&format!(
            "  - match: [{{uri: {{prefix: /strict}}}}]
    corsPolicy:
      {cors}
      unmatchedPreflights: IGNORE
    route:
    - destination: {{host: {SHOP}, subset: v2}}
  - corsPolicy:
      {cors}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
"
        ));
    let world = TrafficWorld::start([&v1, &v2], &policy).await;

    // Allowed origins (exact, prefix, regex): the proxy answers the preflight itself.
    for origin in [
        "https://shop.example",
        "https://dev.shop",
        "https://qa.test",
    ] {
        let a = world.send(preflight("/items", origin)).await;
        assert_eq!(a.status, 200, "{origin}");
        assert_eq!(a.header("access-control-allow-origin"), origin);
        assert_eq!(a.header("access-control-allow-methods"), "GET,POST");
        assert_eq!(
            a.header("access-control-allow-headers"),
            "x-token,content-type"
        );
        assert_eq!(a.header("access-control-max-age"), "600");
        assert_eq!(a.header("access-control-allow-credentials"), "true");
        assert_eq!(a.header("x-app"), "none", "answered by the proxy");
        assert!(a.body.is_empty());
    }
    assert_eq!(v1.hits(), 0, "no preflight reached the app");

    // A disallowed origin's preflight is forwarded (unmatchedPreflights unset: FORWARD) and
    // gets no CORS headers.
    let a = world
        .send(preflight("/items", "https://evil.example"))
        .await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
    assert_eq!(a.header("access-control-allow-origin"), "none");
    assert_eq!(a.header("access-control-allow-methods"), "none");
    assert_eq!(v1.hits(), 1);
    // With IGNORE it is answered by the proxy, without CORS headers.
    let a = world
        .send(preflight("/strict", "https://evil.example"))
        .await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "none"));
    assert_eq!(a.header("access-control-allow-origin"), "none");
    assert_eq!(v2.hits(), 0);

    // Actual requests: an allowed origin's answer carries the origin, exposed headers and
    // credentials; a disallowed one's carries nothing.
    let a = world
        .send(request(
            "GET",
            "/items",
            &[("origin", "https://shop.example")],
        ))
        .await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
    assert_eq!(
        a.header("access-control-allow-origin"),
        "https://shop.example"
    );
    assert_eq!(a.header("access-control-expose-headers"), "x-trace");
    assert_eq!(a.header("access-control-allow-credentials"), "true");
    assert_eq!(
        a.header("access-control-allow-methods"),
        "none",
        "preflight only"
    );
    let a = world
        .send(request(
            "GET",
            "/items",
            &[("origin", "https://shop.example.evil")],
        ))
        .await;
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
    assert_eq!(a.header("access-control-allow-origin"), "none");
    assert_eq!(a.header("access-control-expose-headers"), "none");
    assert_eq!(v1.hits(), 3);
}

/// Polls until `count()` has not changed for 300 ms (mirrors are fire and forget).
async fn settled(count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + BOUND;
    let mut last = count();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn mirrors_are_fire_and_forget_with_a_shadow_host_and_honour_their_percentage() {
    let v1 = App::start("v1", answer(200, NO_WAIT)).await;
    // The mirror target sleeps 5 s on /slow.
    let (behaviour, seen) = recording(200, |path| {
        if path == "/slow" {
            Duration::from_secs(5)
        } else {
            NO_WAIT
        }
    });
    let v2 = App::start("v2", behaviour).await;
    // A mirror that is down: its only endpoint's port is closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let policy = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: down, namespace: demo}}
spec:
  hosts: [down.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]
---
"
    ) + &subsets("", "", "")
        + &vs(&format!(
            "  - match: [{{uri: {{exact: /slow}}}}]
    mirror: {{host: {SHOP}, subset: v2}}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
  - match: [{{uri: {{exact: /down}}}}]
    mirror: {{host: down.demo.svc.cluster.local, port: {{number: 80}}}}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
  - match: [{{uri: {{exact: /pct}}}}]
    mirror: {{host: {SHOP}, subset: v2}}
    mirrorPercentage: {{value: 25}}
    route:
    - destination: {{host: {SHOP}, subset: v1}}
"
        ));
    let world = TrafficWorld::start([&v1, &v2], &policy).await;

    // The original is answered at once although the mirror takes 5 s; the client sees the
    // original's answer, the mirror saw the request with its Host suffixed `-shadow`.
    let started = Instant::now();
    let a = world.get("/slow").await;
    let took = started.elapsed();
    assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
    assert!(
        took < Duration::from_millis(2500),
        "answered after {took:?}"
    );
    let deadline = Instant::now() + BOUND;
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the mirror never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.lock().unwrap().clone(),
        [(format!("{SHOP}-shadow"), "/slow".to_owned())]
    );

    // A mirror that is down changes nothing for the original.
    for _ in 0..3 {
        let started = Instant::now();
        let a = world.get("/down").await;
        assert_eq!((a.status.as_u16(), a.header("x-app")), (200, "v1"));
        assert!(started.elapsed() < Duration::from_millis(2500));
    }

    // 25 % over 400 requests: Binomial(400, 0.25), σ ≈ 8.7; ±5σ.
    for _ in 0..400 {
        assert_eq!(world.get("/pct").await.status, 200);
    }
    let mirrored = settled(|| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p == "/pct")
            .count()
    })
    .await;
    assert!((57..=143).contains(&mirrored), "{mirrored} of 400 mirrored");
    assert_eq!(v1.hits(), 1 + 3 + 400, "every original reached v1 once");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(h, _)| h == &format!("{SHOP}-shadow")),
        "every mirror carried the shadow host"
    );
}

#[tokio::test]
async fn a_degraded_destination_answers_with_its_fallback_for_uo_and_uh() {
    let held = App::start("v1", answer(200, Duration::from_millis(1500))).await;
    let other = App::start("v2", answer(200, NO_WAIT)).await;
    let fallback = r#"traffic.hostmesh.io/fallback: '{"status": 200, "headers": {"content-type": "application/json", "x-degraded": "true"}, "body": "{\"items\":[]}"}'"#;
    let policy = subsets(
        fallback,
        "  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}",
        "  - {name: gone, labels: {version: v3}}",
    ) + &vs(&format!(
        "  - match: [{{uri: {{prefix: /gone}}}}]
    route:
    - destination: {{host: {SHOP}, subset: gone}}
  - route:
    - destination: {{host: {SHOP}, subset: v1}}
"
    ));
    let world = Arc::new(TrafficWorld::start([&held, &other], &policy).await);
    let flags = |f| world.front.proxy.metrics().response_flags(f);

    // No endpoint in the subset (UH): the fallback instead of "no healthy upstream".
    let a = world.get("/gone").await;
    assert_eq!(a.status, 200);
    assert_eq!(&a.body[..], br#"{"items":[]}"#);
    assert_eq!(a.header("content-type"), "application/json");
    assert_eq!(a.header("x-degraded"), "true");
    assert_eq!(flags("UH"), 1, "the response flag is still counted");

    // The circuit breaker open (UO): the shed requests get the fallback.
    let mut burst = Vec::new();
    for _ in 0..10 {
        let w = world.clone();
        burst.push(tokio::spawn(async move { w.get("/slow").await }));
    }
    let (mut ok, mut degraded) = (0, 0);
    for b in burst {
        let a = b.await.unwrap();
        assert_eq!(a.status, 200);
        match (a.header("x-app"), a.header("x-degraded")) {
            ("v1", "none") => ok += 1,
            ("none", "true") => {
                assert_eq!(&a.body[..], br#"{"items":[]}"#);
                assert_eq!(a.header("x-envoy-overloaded"), "none");
                degraded += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        ok >= 2 && degraded >= 6,
        "one in flight, one pending, the rest degraded: {ok} ok, {degraded} degraded"
    );
    assert_eq!(flags("UO"), degraded as u64, "each fallback counted as UO");
    assert_eq!(held.hits(), ok, "degraded requests never reached the app");
    assert_eq!(other.hits(), 0);
}

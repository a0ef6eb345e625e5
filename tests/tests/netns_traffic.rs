//! Traffic management on network-namespace hosts (root; fails, never skips, without root, `ip`,
//! `nft` or `curl`): the real `hostmesh-control` with Istio `VirtualService`/`DestinationRule`
//! YAML in its registry folder and the real `hostmesh-agent` on three hosts (build them first:
//! `cargo build --bins`). An unmodified `curl` on `front` calls services by name (the agent's
//! DNS, nftables interception); front's proxy applies the policy and reaches the `shop` hosts
//! `v1` and `v2` over mutual TLS, where a [`HttpApp`] counts what arrived and misbehaves as each
//! request's query asks (`status=`, `sleep_ms=`, `only=`).
//!
//! One lab serves every scenario (each start of the control server and three agents costs
//! seconds): every scenario has its own service name, so its own cluster, routes and counters.
//! The policies are in `netns_traffic.yaml`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hostmesh_lab::{Agent, AgentSpec, Binaries, Control, Host, HttpApp, Lab};

const PORT: u16 = 8080;
const FRONT_ID: &str = "spiffe://cluster.local/ns/demo/sa/front";
const RESOLV_CONF: &str =
    "nameserver 10.77.0.254\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\n";
/// One service per scenario, all served by the two `shop` hosts.
const SERVICES: [&str; 11] = [
    "slow", "flaky", "breaker", "outlier", "canary", "faulty", "limited", "edits", "cors",
    "mirrored", "degraded",
];

/// ServiceEntries for [`SERVICES`], the two hosts' WorkloadEntries, and each scenario's policy.
fn registry() -> String {
    let mut yaml = String::new();
    for name in SERVICES {
        yaml += &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: demo}}
spec:
  hosts: [{name}.demo.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {PORT}, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: shop}}}}
---
"
        );
    }
    for (version, ip) in [("v1", "10.77.0.2"), ("v2", "10.77.0.3")] {
        yaml += &format!(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: shop-{version}, namespace: demo}}
spec: {{address: {ip}, serviceAccount: shop, labels: {{app: shop, version: {version}}}}}
---
"
        );
    }
    yaml + POLICIES
}

/// Each scenario's `VirtualService`/`DestinationRule`.
const POLICIES: &str = include_str!("netns_traffic.yaml");

/// What `curl -w` printed for one transfer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// The answering app (`x-app`), empty when the proxy answered itself.
    app: String,
    /// The response headers asked for in [`Mesh::requests`], in order (empty when absent).
    headers: Vec<String>,
    took: Duration,
}

struct Mesh {
    front: Host,
    v1: HttpApp,
    v2: HttpApp,
    _agents: Vec<Agent>,
    _control: Control,
    lab: Lab,
}

impl Mesh {
    fn start() -> Self {
        let found = std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "`curl` is missing: run scripts/setup");
        let bins = Binaries::locate().expect("the hostmesh binaries (cargo build --bins)");
        let mut lab = Lab::new("traffic").expect("a lab (needs root, ip and nft)");
        let front = lab.add_host("front").unwrap();
        let shop1 = lab.add_host("shop-v1").unwrap();
        let shop2 = lab.add_host("shop-v2").unwrap();
        for host in [&front, &shop1, &shop2] {
            host.netns().set_resolv_conf(RESOLV_CONF).unwrap();
        }
        let control = Control::start(&lab, &bins, &registry()).unwrap();
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], PORT));
        let v1 = HttpApp::start(shop1.netns(), any, "v1").unwrap();
        let v2 = HttpApp::start(shop2.netns(), any, "v2").unwrap();
        let mut agents = Vec::new();
        for (host, version) in [(&shop1, "v1"), (&shop2, "v2")] {
            let spec = AgentSpec {
                namespace: "demo".into(),
                service_account: "shop".into(),
                labels: vec![
                    ("app".into(), "shop".into()),
                    ("version".into(), version.into()),
                ],
                inbound_ports: vec![(PORT, "http".into())],
                ..AgentSpec::default()
            };
            agents.push(Agent::start(&lab, &bins, &control, host, &spec).unwrap());
        }
        let spec = AgentSpec {
            namespace: "demo".into(),
            service_account: "front".into(),
            ..AgentSpec::default()
        };
        agents.push(Agent::start(&lab, &bins, &control, &front, &spec).unwrap());
        Self {
            front,
            v1,
            v2,
            _agents: agents,
            _control: control,
            lab,
        }
    }

    /// `curl` on `front` with `args`; its standard output.
    fn curl(&self, args: &[&str]) -> String {
        let mut all = vec!["-sS", "--max-time", "30"];
        all.extend_from_slice(args);
        self.front.netns().output("curl", &all).unwrap()
    }

    /// One `curl` run on `front` fetching `urls` (curl's `[1-n]` globs allowed) with `extra`
    /// arguments; per transfer, its status, `x-app`, the response `headers` and the time.
    fn requests(&self, urls: &[&str], extra: &[&str], headers: &[&str]) -> Vec<Answer> {
        let asked: String = headers.iter().map(|h| format!("|%header{{{h}}}")).collect();
        let format = format!("\\n@@|%{{http_code}}|%{{time_total}}|%header{{x-app}}{asked}\\n");
        let mut args = vec!["-w", &format];
        args.extend_from_slice(extra);
        for url in urls {
            args.extend(["-o", "/dev/null", url]);
        }
        let out = self.curl(&args);
        out.lines()
            .filter_map(|l| l.strip_prefix("@@|"))
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                assert_eq!(f.len(), 3 + headers.len(), "curl wrote {l:?}");
                Answer {
                    status: f[0].parse().unwrap(),
                    took: Duration::from_secs_f64(f[1].parse().unwrap()),
                    app: f[2].to_owned(),
                    headers: f[3..].iter().map(|h| (*h).to_owned()).collect(),
                }
            })
            .collect()
    }

    fn get(&self, url: &str) -> Answer {
        self.get_with(url, &[], &[])
    }

    /// One request with `extra` curl arguments, asking for response `headers`.
    fn get_with(&self, url: &str, extra: &[&str], headers: &[&str]) -> Answer {
        let mut answers = self.requests(&[url], extra, headers);
        assert_eq!(answers.len(), 1, "{answers:?}");
        answers.remove(0)
    }

    /// Both apps' arrivals for `path`.
    fn hits(&self, path: &str) -> (u64, u64) {
        (self.v1.hits(path), self.v2.hits(path))
    }

    /// `hostmesh_proxy_response_flags_total` for `flag` in front's agent metrics.
    fn front_flags(&self, flag: &str) -> u64 {
        let page = self.curl(&["http://127.0.0.1:15020/stats/prometheus"]);
        let series = format!("hostmesh_proxy_response_flags_total{{response_flags=\"{flag}\"}} ");
        page.lines()
            .filter_map(|l| l.strip_prefix(&series))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum()
    }
}

type Scenario = (&'static str, fn(&Mesh));

/// Runs `scenarios` one after the other; each one's name and duration.
fn run(mesh: &Mesh, scenarios: &[Scenario]) -> Vec<String> {
    scenarios
        .iter()
        .map(|(name, scenario)| {
            let t = Instant::now();
            scenario(mesh);
            format!("{name} {:.1?}", t.elapsed())
        })
        .collect()
}

#[test]
fn istio_traffic_policies_hold_between_namespace_hosts_with_real_agents() {
    let started = Instant::now();
    let mut mesh = Mesh::start();
    let ready = started.elapsed();
    // Scenarios that mostly wait (a timeout, a delay) run beside the others; each one's
    // service, counters and response flags are its own.
    let waiting: [Scenario; 3] = [
        ("timeout", timeout_answers_504_before_the_slow_service),
        ("fault", fault_abort_and_delay),
        ("mirror", mirror_is_fire_and_forget),
    ];
    let rest: [Scenario; 9] = [
        ("by name over mTLS", by_name_over_mutual_tls),
        ("retries", three_retries_make_four_attempts),
        ("circuit breaker", circuit_breaker_sheds_a_burst),
        ("outlier detection", outlier_ejected_and_readmitted),
        ("canary and A/B", canary_and_header_split_over_1000_requests),
        ("rate limit", rate_limit_answers_429),
        (
            "redirect, rewrite, header edits",
            redirect_rewrite_and_header_edits,
        ),
        ("CORS", cors_preflight_answered_by_the_proxy),
        ("degradation", degraded_service_answers_with_its_fallback),
    ];
    let times = std::thread::scope(|s| {
        let beside = s.spawn(|| run(&mesh, &waiting));
        let mut times = run(&mesh, &rest);
        match beside.join() {
            Ok(more) => times.extend(more),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        times
    });
    eprintln!(
        "netns_traffic: lab ready in {ready:.1?}; {}; total {:.1?}",
        times.join(", "),
        started.elapsed()
    );
    mesh.lab.teardown();
}

/// DNS by name, interception, both proxies and mutual TLS: the app sees its own proxy and
/// front's verified identity.
fn by_name_over_mutual_tls(mesh: &Mesh) {
    let body = mesh.curl(&["http://canary:8080/hello"]);
    assert!(body.contains("peer=127.0.0.1"), "{body}");
    assert!(body.contains(&format!("URI={FRONT_ID}")), "{body}");
}

fn timeout_answers_504_before_the_slow_service(mesh: &Mesh) {
    let ut_before = mesh.front_flags("UT");
    let a = mesh.get("http://slow:8080/sleep?sleep_ms=5000");
    assert_eq!(a.status, 504, "{a:?}");
    assert!(
        a.took >= Duration::from_millis(2900) && a.took < Duration::from_millis(4900),
        "answered after {:?}, not after the 3 s timeout",
        a.took
    );
    let (h1, h2) = mesh.hits("/sleep");
    assert_eq!(h1 + h2, 1, "one attempt, not retried after the timeout");
    assert_eq!(mesh.front_flags("UT") - ut_before, 1, "counted with UT");
}

fn three_retries_make_four_attempts(mesh: &Mesh) {
    let urx_before = mesh.front_flags("URX");
    let a = mesh.get("http://flaky:8080/retry?status=503");
    assert_eq!(a.status, 503, "{a:?}");
    assert!(!a.app.is_empty(), "the app's last answer comes back: {a:?}");
    let (h1, h2) = mesh.hits("/retry");
    assert_eq!(h1 + h2, 4, "1 attempt + 3 retries (v1 {h1}, v2 {h2})");
    assert_eq!(
        mesh.front_flags("URX") - urx_before,
        1,
        "retries exhausted: URX"
    );
}

fn circuit_breaker_sheds_a_burst(mesh: &Mesh) {
    let uo_before = mesh.front_flags("UO");
    // The app answers after 1.5 s: the first request holds the one connection, the second
    // waits as the one pending request, every other is shed at once.
    let answers = mesh.requests(
        &["http://breaker:8080/burst?n=[1-10]&sleep_ms=1500"],
        &["--parallel", "--parallel-immediate", "--parallel-max", "10"],
        &["x-envoy-overloaded"],
    );
    assert_eq!(answers.len(), 10, "{answers:?}");
    let ok = answers.iter().filter(|a| a.status == 200).count() as u64;
    let shed: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(ok + shed.len() as u64, 10, "only 200 or 503: {answers:?}");
    assert!(
        ok >= 2 && shed.len() >= 6,
        "one in flight, one pending, the rest shed: {answers:?}"
    );
    for a in &shed {
        assert_eq!(
            a.headers,
            ["true"],
            "x-envoy-overloaded on a shed request: {a:?}"
        );
        assert!(a.took < Duration::from_millis(1400), "shed at once: {a:?}");
    }
    assert_eq!(
        mesh.front_flags("UO") - uo_before,
        shed.len() as u64,
        "each shed request counted with UO"
    );
    assert_eq!(
        mesh.hits("/burst"),
        (ok, 0),
        "shed requests never reach the app; only v1 is routed to"
    );
}

fn outlier_ejected_and_readmitted(mesh: &Mesh) {
    // v1 answers 500, v2 200. Round robin: v1 fails twice within the first six requests and
    // is ejected (consecutive5xxErrors 2) for baseEjectionTime 3 s.
    let url = "http://outlier:8080/eject?n=[1-6]&status=500&only=v1";
    let first = Instant::now();
    let answers = mesh.requests(&[url], &[], &[]);
    assert_eq!(answers.len(), 6);
    assert_eq!(
        mesh.hits("/eject").0,
        2,
        "ejected after two 5xx: {answers:?}"
    );
    let answers = mesh.requests(&[&url.replace("[1-6]", "[1-20]")], &[], &[]);
    if first.elapsed() < Duration::from_millis(2900) {
        assert!(
            answers
                .iter()
                .all(|a| (a.status, a.app.as_str()) == (200, "v2")),
            "while v1 is ejected only v2 answers: {answers:?}"
        );
        assert_eq!(mesh.hits("/eject").0, 2);
    }
    // After the ejection time v1 is tried again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mesh.hits("/eject").0 == 2 {
        assert!(Instant::now() < deadline, "v1 never came back");
        mesh.get("http://outlier:8080/eject?status=500&only=v1");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        first.elapsed() >= Duration::from_millis(2900),
        "v1 came back {:?} after it was ejected, before baseEjectionTime",
        first.elapsed()
    );
}

fn canary_and_header_split_over_1000_requests(mesh: &Mesh) {
    let url = "http://canary:8080/split?n=[1-500]";
    let group_b = mesh.requests(&[url], &["-H", "x-group: b"], &[]);
    let group_a = mesh.requests(&[url], &["-H", "x-group: a"], &[]);
    assert_eq!((group_a.len(), group_b.len()), (500, 500));
    assert!(
        group_a.iter().chain(&group_b).all(|a| a.status == 200),
        "every request answered"
    );
    let b_v2 = group_b.iter().filter(|a| a.app == "v2").count();
    assert_eq!(b_v2, 500, "group b always goes to v2");
    let a_v2 = group_a.iter().filter(|a| a.app == "v2").count();
    let a_v1 = group_a.iter().filter(|a| a.app == "v1").count();
    assert_eq!(a_v1 + a_v2, 500);
    // Binomial(500, 0.1): σ ≈ 6.7; ±5σ.
    assert!((17..=83).contains(&a_v2), "v2 got {a_v2} of group a's 500");
    assert_eq!(mesh.hits("/split"), (a_v1 as u64, 500 + a_v2 as u64));
}

fn fault_abort_and_delay(mesh: &Mesh) {
    let (fi_before, di_before) = (mesh.front_flags("FI"), mesh.front_flags("DI"));
    let a = mesh.get("http://faulty:8080/abort");
    assert_eq!((a.status, a.app.as_str()), (418, ""), "{a:?}");
    assert_eq!(
        mesh.hits("/abort"),
        (0, 0),
        "an aborted request never reaches an app"
    );
    let a = mesh.get("http://faulty:8080/delay");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.took >= Duration::from_millis(990),
        "delayed by {:?}",
        a.took
    );
    let (h1, h2) = mesh.hits("/delay");
    assert_eq!(h1 + h2, 1);
    assert_eq!(
        (
            mesh.front_flags("FI") - fi_before,
            mesh.front_flags("DI") - di_before
        ),
        (1, 1),
        "the abort counted with FI, the delay with DI"
    );
}

fn rate_limit_answers_429(mesh: &Mesh) {
    let rl_before = mesh.front_flags("RL");
    let answers = mesh.requests(&["http://limited:8080/rl?n=[1-5]"], &[], &["retry-after"]);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    for a in &answers[3..] {
        assert_eq!(
            (a.headers[0].as_str(), a.app.as_str()),
            ("3600", ""),
            "{a:?}"
        );
    }
    let (h1, h2) = mesh.hits("/rl");
    assert_eq!(h1 + h2, 3, "refused requests never reach an app");
    assert_eq!(mesh.front_flags("RL") - rl_before, 2);
}

fn redirect_rewrite_and_header_edits(mesh: &Mesh) {
    let a = mesh.get_with("http://edits:8080/old/page?x=1", &[], &["location"]);
    assert_eq!(a.status, 302, "{a:?}");
    assert_eq!(a.headers, ["https://shop.example.com/new?x=1"]);
    assert_eq!(
        mesh.hits("/old/page"),
        (0, 0),
        "a redirect never reaches an app"
    );

    let asked = [
        "x-app-target",
        "x-app-host",
        "x-echo-test-route",
        "x-echo-test-secret",
        "x-echo-test-keep",
        "cache-control",
        "content-type",
    ];
    let extra = ["-H", "x-test-secret: s", "-H", "x-test-keep: k"];
    let a = mesh.get_with("http://edits:8080/api/items?debug=1", &extra, &asked);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.headers,
        [
            "/v2/items?debug=1",
            "shop-internal",
            "api",
            "",
            "k",
            "no-store",
            ""
        ],
        "the app saw the rewritten path and authority, the set header and not the removed \
         one; the caller got the set response header and not the removed one"
    );
    let a = mesh.get_with("http://edits:8080/other", &extra, &asked);
    assert_eq!(
        a.headers,
        ["/other", "edits:8080", "", "s", "k", "", "text/plain"],
        "the default route edits nothing"
    );
}

fn cors_preflight_answered_by_the_proxy(mesh: &Mesh) {
    let asked = [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
    ];
    let preflight = |origin: &str, path: &str| {
        let origin = format!("Origin: {origin}");
        let extra = [
            "-X",
            "OPTIONS",
            "-H",
            origin.as_str(),
            "-H",
            "Access-Control-Request-Method: POST",
        ];
        mesh.get_with(&format!("http://cors:8080{path}"), &extra, &asked)
    };
    // An allowed origin: the proxy answers the preflight itself.
    let a = preflight("https://shop.example", "/preflight");
    assert_eq!((a.status, a.app.as_str()), (200, ""), "{a:?}");
    assert_eq!(a.headers[0], "https://shop.example", "{a:?}");
    assert!(a.headers[1].contains("POST"), "{a:?}");
    assert_eq!(a.headers[2], "x-token", "{a:?}");
    assert_eq!(a.headers[3], "600", "{a:?}");
    assert_eq!(mesh.hits("/preflight"), (0, 0), "the app never sees it");
    // Another origin: no CORS headers; the preflight goes on to the app.
    let a = preflight("https://evil.example", "/other-origin");
    assert!(a.headers.iter().all(String::is_empty), "{a:?}");
    assert!(!a.app.is_empty(), "forwarded to an app: {a:?}");
    // An actual request from the allowed origin gets the allow-origin header.
    let a = mesh.get_with(
        "http://cors:8080/items",
        &["-H", "Origin: https://shop.example"],
        &asked[..1],
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.headers, ["https://shop.example"], "{a:?}");
    assert!(!a.app.is_empty(), "{a:?}");
}

fn mirror_is_fire_and_forget(mesh: &Mesh) {
    // The mirror (v2) sleeps 3 s; the original (v1) answers at once and is not held up.
    let answers = mesh.requests(
        &["http://mirrored:8080/mirror?n=[1-5]&sleep_ms=3000&only=v2"],
        &[],
        &[],
    );
    assert_eq!(answers.len(), 5, "{answers:?}");
    for a in &answers {
        assert_eq!((a.status, a.app.as_str()), (200, "v1"), "{a:?}");
        assert!(a.took < Duration::from_millis(2000), "not held up: {a:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while mesh.hits("/mirror") != (5, 5) {
        assert!(
            Instant::now() < deadline,
            "every request mirrored to v2: {:?}",
            mesh.hits("/mirror")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn degraded_service_answers_with_its_fallback(mesh: &Mesh) {
    let uh_before = mesh.front_flags("UH");
    let a = mesh.get_with("http://degraded:8080/items", &[], &["x-degraded"]);
    assert_eq!((a.status, a.app.as_str()), (200, ""), "{a:?}");
    assert_eq!(a.headers, ["true"], "{a:?}");
    let body = mesh.curl(&["http://degraded:8080/items"]);
    assert_eq!(body, r#"{"items":[]}"#);
    assert_eq!(
        mesh.front_flags("UH") - uh_before,
        2,
        "each fallback counted with UH"
    );
}

//! `hostmesh-control run` with a static folder, the Consul emulator and the Kubernetes API
//! emulator: a service from each source reaches an agent-like delta client, an update in
//! each source arrives, a Kubernetes/static conflict names both sources, `hostmesh describe`
//! shows `kubernetes` provenance, and `/metrics` on the status port shows each source's
//! health (a Kubernetes outage flips the gauge), conflicts, streams and pushes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Control, DeltaClient, Pki, addresses, front_agent, hostmesh, next_of, wait_clusters};
use hostmesh_emulators::consul::{ConsulEmulator, Instance};
use hostmesh_emulators::kube::{KubeEmulator, Res, service, slice};
use hostmesh_registry::xds::type_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BILL: &str = "outbound|9999||bill-service.demo.svc.cluster.local";
const WEB: &str = "outbound|8080||web.service.consul";
const SHOP: &str = "outbound|80||shop.retail.svc.cluster.local";

const STATIC: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bill-service, namespace: demo}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9999, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.0.0.5}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: clash-override, namespace: retail}
spec:
  hosts: [clash.retail.svc.cluster.local]
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  endpoints:
  - {address: 10.0.0.77}
";

/// `GET path` on the status port; the body.
async fn get(address: &str, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of one sample (`name{labels}`) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_metric(address: &str, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(address, "/metrics").await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "{series} never {want}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads endpoint pushes until every named cluster has the wanted addresses (sources
/// answer at their own pace, so an early push may have fewer).
async fn wait_assignments(agent: &mut DeltaClient, want: &[(&str, &[&str])]) {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want
        .iter()
        .all(|(name, ips)| seen.get(*name).is_some_and(|s| s == ips))
    {
        assert!(
            Instant::now() < deadline,
            "assignments so far: {seen:?}, want {want:?}"
        );
        let eds = next_of(agent, type_url::ENDPOINT, Duration::from_secs(20)).await;
        for r in &eds.resources {
            seen.insert(r.name.clone(), addresses(&eds, &r.name));
        }
        agent.ack(&eds).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_consul_and_kubernetes_services_reach_an_agent() {
    let consul = ConsulEmulator::start(None).await;
    consul.register("web", Instance::new("web-1", "10.0.0.21", 8080));
    let kube = KubeEmulator::start(false).await;
    kube.apply(
        Res::Services,
        service("retail", "shop", "10.96.0.20", &[("http", 80)]),
    );
    kube.apply(
        Res::EndpointSlices,
        slice("retail", "shop-1", "shop", &["10.1.0.1"], &[("http", 8080)]),
    );
    kube.apply(
        Res::Services,
        service("retail", "clash", "10.96.0.21", &[("http", 80)]),
    );
    kube.apply(
        Res::EndpointSlices,
        slice(
            "retail",
            "clash-1",
            "clash",
            &["10.1.0.50"],
            &[("http", 8080)],
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.d");
    std::fs::create_dir(&registry).unwrap();
    std::fs::write(registry.join("static.yaml"), STATIC).unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path());
    let config = dir.path().join("control.yaml");
    std::fs::write(
        &config,
        format!(
            "consul:\n  address: {}\n  wait: 30s\nkubernetes:\n  kubeconfig: {}\n  namespaces: [retail]\n",
            consul.url(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    let pki = Pki::new(dir.path());
    let control = Control::start_with(
        env!("CARGO_BIN_EXE_hostmesh-control"),
        dir.path(),
        &registry,
        &["--config", config.to_str().unwrap()],
    );

    // A cluster from each source.
    let mut agent = front_agent(&control, &pki).await;
    wait_clusters(&mut agent, &[BILL, WEB, SHOP], Duration::from_secs(20)).await;
    agent
        .subscribe(type_url::ENDPOINT, &[WEB, BILL, SHOP])
        .await;
    wait_assignments(
        &mut agent,
        &[
            (WEB, &["10.0.0.21"]),
            (BILL, &["10.0.0.5"]),
            (SHOP, &["10.1.0.1"]),
        ],
    )
    .await;

    // An update in each source arrives.
    kube.apply(
        Res::EndpointSlices,
        slice(
            "retail",
            "shop-1",
            "shop",
            &["10.1.0.1", "10.1.0.2"],
            &[("http", 8080)],
        ),
    );
    wait_assignments(&mut agent, &[(SHOP, &["10.1.0.1", "10.1.0.2"])]).await;
    consul.register("web", Instance::new("web-2", "10.0.0.22", 8080));
    wait_assignments(&mut agent, &[(WEB, &["10.0.0.21", "10.0.0.22"])]).await;
    std::fs::write(
        registry.join("static.yaml"),
        STATIC.replace(
            "- {address: 10.0.0.5}",
            "- {address: 10.0.0.5}\n  - {address: 10.0.0.6}",
        ),
    )
    .unwrap();
    wait_assignments(&mut agent, &[(BILL, &["10.0.0.5", "10.0.0.6"])]).await;

    // `hostmesh describe` shows Kubernetes provenance.
    let (code, out) = hostmesh(&[
        "describe",
        "service",
        "shop.retail.svc.cluster.local",
        "--address",
        &control.status_address,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("From:      kubernetes: Service retail/shop"),
        "{out}"
    );
    for ip in ["10.1.0.1", "10.1.0.2"] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{ip}:8080")))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("kubernetes"), "{line}");
        assert!(line.contains("EndpointSlice retail/shop-1"), "{line}");
    }
    // The static registry owns clash.retail…: the conflict names both sources.
    let (code, out) = hostmesh(&[
        "describe",
        "service",
        "clash.retail.svc.cluster.local",
        "--address",
        &control.status_address,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("From:      static: ServiceEntry retail/clash-override"),
        "{out}"
    );
    assert!(out.contains("10.0.0.77:80"), "{out}");
    assert!(!out.contains("10.1.0.50"), "{out}");
    assert!(
        out.contains("Host clash.retail.svc.cluster.local: static (ServiceEntry retail/clash-override) kept over kubernetes (Service retail/clash)"),
        "{out}"
    );

    // Metrics: every source healthy, the conflict, the stream, the pushes.
    let text = wait_metric(
        &control.status_address,
        "hostmesh_control_source_healthy{source=\"kubernetes\"}",
        1.0,
    )
    .await;
    for source in ["static", "consul"] {
        let series = format!("hostmesh_control_source_healthy{{source=\"{source}\"}}");
        assert_eq!(sample(&text, &series), Some(1.0), "{text}");
    }
    assert_eq!(
        sample(
            &text,
            "hostmesh_control_source_services{source=\"kubernetes\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "hostmesh_control_source_endpoints{source=\"kubernetes\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hostmesh_control_registry_conflicts"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hostmesh_control_ads_streams{mode=\"delta\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "hostmesh_control_xds_pushes_total").unwrap() >= 5.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "hostmesh_control_source_last_update_timestamp_seconds{source=\"kubernetes\"}"
        )
        .unwrap()
            > 1.7e9,
        "{text}"
    );
    assert!(
        text.contains("# TYPE hostmesh_control_source_healthy gauge"),
        "{text}"
    );

    // The API server goes away: the gauge flips, nothing is withdrawn; it comes back.
    kube.stop();
    wait_metric(
        &control.status_address,
        "hostmesh_control_source_healthy{source=\"kubernetes\"}",
        0.0,
    )
    .await;
    match agent.next(Duration::from_millis(500)).await {
        Err(e) => assert_eq!(e, "timed out", "nothing is withdrawn"),
        Ok(r) => panic!(
            "pushed {:?} during the outage",
            r.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
        ),
    }
    let (_, out) = hostmesh(&["status", "--address", &control.status_address]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("kubernetes ") && l.contains(" NO ")),
        "{out}"
    );
    kube.resume().await;
    wait_metric(
        &control.status_address,
        "hostmesh_control_source_healthy{source=\"kubernetes\"}",
        1.0,
    )
    .await;
}

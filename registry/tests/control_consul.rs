//! `hostmesh-control run` with a static folder and the Consul emulator: an agent-like delta
//! client gets clusters of both, a Consul change reaches it, and `hostmesh describe` shows
//! where every endpoint came from and the conflict between the two sources.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Control, Pki, addresses, front_agent, hostmesh, next_of, wait_clusters};
use hostmesh_emulators::consul::{ConsulEmulator, Instance};
use hostmesh_registry::xds::type_url;

const BILL: &str = "outbound|9999||bill-service.demo.svc.cluster.local";
const WEB: &str = "outbound|8080||web.service.consul";

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
metadata: {name: db-override, namespace: demo}
spec:
  hosts: [db.service.consul]
  resolution: STATIC
  ports:
  - {number: 5432, name: tcp, protocol: TCP}
  endpoints:
  - {address: 10.0.0.99}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_and_consul_services_reach_an_agent_with_provenance() {
    let consul = ConsulEmulator::start(Some("mesh-token")).await;
    consul.register("web", Instance::new("web-1", "10.0.0.21", 8080));
    consul.register("web", Instance::new("web-2", "10.0.0.22", 8080));
    consul.register("db", Instance::new("db-1", "10.0.0.31", 5432));
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.d");
    std::fs::create_dir(&registry).unwrap();
    std::fs::write(registry.join("static.yaml"), STATIC).unwrap();
    let config = dir.path().join("control.yaml");
    std::fs::write(
        &config,
        format!(
            "consul:\n  address: {}\n  token: mesh-token\n  datacenter: dc1\n  wait: 30s\n",
            consul.url()
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

    // Clusters of both sources; Consul may answer after the first push.
    let mut agent = front_agent(&control, &pki).await;
    wait_clusters(&mut agent, &[BILL, WEB], Duration::from_secs(10)).await;
    agent.subscribe(type_url::ENDPOINT, &[WEB, BILL]).await;
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let eds = next_of(&mut agent, type_url::ENDPOINT, Duration::from_secs(5)).await;
        for r in &eds.resources {
            seen.insert(r.name.clone(), addresses(&eds, &r.name));
        }
        agent.ack(&eds).await;
    }
    assert_eq!(seen[WEB], ["10.0.0.21", "10.0.0.22"]);
    assert_eq!(seen[BILL], ["10.0.0.5"]);

    // A Consul change reaches the agent: only the changed assignment.
    let changed = Instant::now();
    consul.register("web", Instance::new("web-3", "10.0.0.23", 8080));
    let update = next_of(&mut agent, type_url::ENDPOINT, Duration::from_secs(3)).await;
    let names: Vec<&str> = update.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [WEB]);
    assert_eq!(
        addresses(&update, WEB),
        ["10.0.0.21", "10.0.0.22", "10.0.0.23"]
    );
    assert!(changed.elapsed() < Duration::from_secs(3));
    agent.ack(&update).await;

    // `hostmesh describe` shows each endpoint's provenance.
    let (code, out) = hostmesh(&[
        "describe",
        "service",
        "web.service.consul",
        "--address",
        &control.status_address,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("From:      consul: consul service web"),
        "{out}"
    );
    for (id, ip) in [
        ("web-1", "10.0.0.21"),
        ("web-2", "10.0.0.22"),
        ("web-3", "10.0.0.23"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{ip}:8080")))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("consul"), "{line}");
        assert!(
            line.contains(&format!(
                "consul service web, instance {id} on node node-{id}"
            )),
            "{line}"
        );
    }
    // The static registry owns db.service.consul: the conflict names both sources.
    let (code, out) = hostmesh(&[
        "describe",
        "service",
        "db.service.consul",
        "--address",
        &control.status_address,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("From:      static: ServiceEntry demo/db-override"),
        "{out}"
    );
    assert!(out.contains("10.0.0.99:5432"), "{out}");
    assert!(!out.contains("10.0.0.31"), "{out}");
    assert!(
        out.contains("Host db.service.consul: static (ServiceEntry demo/db-override) kept over consul (consul service db)"),
        "{out}"
    );
    // `hostmesh status` shows both sources healthy.
    let (code, out) = hostmesh(&["status", "--address", &control.status_address]);
    assert_eq!(code, Some(0), "{out}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    assert!(row("static ").contains("yes"), "{out}");
    let consul_row = row("consul ");
    assert!(consul_row.contains("yes"), "{out}");
    assert!(
        consul_row.split_whitespace().nth(3) == Some("4"),
        "4 Consul endpoints: {out}"
    );

    // Consul goes away: the agent keeps its endpoints, status says the source is unhealthy.
    consul.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (_, out) = hostmesh(&["status", "--address", &control.status_address]);
        if out
            .lines()
            .any(|l| l.starts_with("consul ") && l.contains(" NO "))
            || Instant::now() > deadline
        {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(out.contains("consul last error at"), "{out}");
    assert!(out.contains("cannot reach Consul"), "{out}");
    match agent.next(Duration::from_millis(500)).await {
        Err(e) => assert_eq!(e, "timed out", "nothing is withdrawn"),
        Ok(r) => panic!(
            "pushed {:?} during the outage",
            r.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
        ),
    }
}

//! `hostmesh-control run` end to end: a real process, a registry folder, and an agent-like
//! delta ADS client over mutual TLS on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Control, DeltaClient, Pki, addresses, connect, front_agent, hostmesh, next_of, node};
use hostmesh_registry::xds::type_url;

const BILL: &str = "outbound|9999||bill-service.demo.svc.cluster.local";

fn bill_yaml(v1_address: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bill-service, namespace: demo}}
spec:
  hosts: [bill-service.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 9999, name: http, protocol: HTTP}}
  workloadSelector:
    labels: {{app: bill-service}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-vm-1, namespace: demo}}
spec:
  address: {v1_address}
  labels: {{app: bill-service, version: v1}}
  serviceAccount: bill
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: bill-vm-2, namespace: demo}}
spec:
  address: 10.0.0.6
  labels: {{app: bill-service, version: v2}}
  serviceAccount: bill
"
    )
}

/// Replaces a registry file the way editors and Ansible do: write aside, then rename.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.swp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A registry folder (`registry.d`, the bill service with v1 at 10.0.0.5) under `dir`, the
/// mesh's PKI, and the real server following that folder.
fn start_control(dir: &Path) -> (PathBuf, Pki, Control) {
    let registry = dir.join("registry.d");
    std::fs::create_dir(&registry).unwrap();
    replace(&registry, "bill.yaml", &bill_yaml("10.0.0.5"));
    let pki = Pki::new(dir);
    let control = Control::start(env!("CARGO_BIN_EXE_hostmesh-control"), dir, &registry);
    (registry, pki, control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_registry_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, pki, control) = start_control(dir.path());

    // An agent-like client gets the clusters, then the endpoints it asks for.
    let mut agent = front_agent(&control, &pki).await;
    let clusters = next_of(&mut agent, type_url::CLUSTER, Duration::from_secs(5)).await;
    let names: Vec<&str> = clusters.resources.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&BILL), "{names:?}");
    agent.ack(&clusters).await;
    agent.subscribe(type_url::ENDPOINT, &[BILL]).await;
    let endpoints = next_of(&mut agent, type_url::ENDPOINT, Duration::from_secs(5)).await;
    assert_eq!(addresses(&endpoints, BILL), ["10.0.0.5", "10.0.0.6"]);
    agent.ack(&endpoints).await;

    // Editing the file pushes the change within a second, and only the changed assignment.
    let edited = Instant::now();
    replace(&registry, "bill.yaml", &bill_yaml("10.0.0.7"));
    let update = next_of(&mut agent, type_url::ENDPOINT, Duration::from_secs(1)).await;
    assert!(edited.elapsed() < Duration::from_secs(1));
    let names: Vec<&str> = update.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [BILL], "only the changed resource is sent");
    assert_eq!(addresses(&update, BILL), ["10.0.0.6", "10.0.0.7"]);
    agent.ack(&update).await;

    // A broken edit keeps the last good config: nothing is pushed, and `hostmesh validate`
    // points at the file and line.
    replace(&registry, "bill.yaml", &bill_yaml("not-an-address!"));
    match agent.next(Duration::from_millis(800)).await {
        Err(e) => assert_eq!(e, "timed out"),
        Ok(r) => panic!(
            "a broken file pushed {:?} {:?}",
            r.type_url,
            r.resources.iter().map(|r| &r.name).collect::<Vec<_>>()
        ),
    }
    let (code, out) = hostmesh(&["validate", &registry.join("bill.yaml").to_string_lossy()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("bill.yaml:17: WorkloadEntry demo/bill-vm-1: spec.address:"),
        "{out}"
    );
    assert!(out.contains("WorkloadEntry demo/bill-vm-1"), "{out}");

    // A NACK shows in `hostmesh status` with its message.
    replace(&registry, "bill.yaml", &bill_yaml("10.0.0.8"));
    let update = next_of(&mut agent, type_url::ENDPOINT, Duration::from_secs(2)).await;
    assert_eq!(addresses(&update, BILL), ["10.0.0.6", "10.0.0.8"]);
    agent
        .nack(&update, "endpoint 10.0.0.8 unreachable from this host")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let (code, out) = hostmesh(&["status", "--address", &control.status_address]);
        assert_eq!(code, Some(0), "{out}");
        if out.contains("NACKED") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let row = out
        .lines()
        .find(|l| l.starts_with("sidecar~10.0.0.9~front-vm.demo"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("spiffe://cluster.local/ns/demo/sa/front"),
        "{row}"
    );
    assert!(row.contains("delta"), "{row}");
    assert!(row.contains("NACKED"), "{row}");
    assert!(out.contains("EDS version"), "{out}");
    assert!(
        out.contains("endpoint 10.0.0.8 unreachable from this host"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, pki, control) = start_control(dir.path());
    let channel = connect(&control.address, pki.client(None)).await;
    let outcome = match DeltaClient::open(
        channel,
        node("10.0.0.9", "front-vm", "demo"),
        type_url::CLUSTER,
        &["*"],
    )
    .await
    {
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
        Ok(mut client) => match client.next(Duration::from_secs(5)).await {
            Ok(r) => panic!("got {} resources without a certificate", r.resources.len()),
            Err(e) => e,
        },
    };
    assert!(outcome.starts_with("Unauthenticated"), "{outcome}");
    // And the status shows no agent.
    let (code, out) = hostmesh(&["status", "--address", &control.status_address]);
    assert_eq!(code, Some(0));
    assert!(out.contains("(no agents connected)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_while_agents_are_connected() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, pki, mut control) = start_control(dir.path());
    let mut agent = front_agent(&control, &pki).await;
    let clusters = next_of(&mut agent, type_url::CLUSTER, Duration::from_secs(5)).await;
    agent.ack(&clusters).await;

    // The stream stays open; SIGTERM still ends the process, cleanly, after its grace period.
    let pid = rustix::process::Pid::from_raw(control.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = control.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "hostmesh-control still running 30 s after SIGTERM with an agent connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // The agent sees its stream end rather than hanging.
    let end = agent.next(Duration::from_secs(10)).await;
    assert!(
        end.is_err(),
        "stream still delivering after the server stopped"
    );
}

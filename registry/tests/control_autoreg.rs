//! Auto-registration with the real `hostmesh-control` process: an agent-like delta client
//! whose node names a `WorkloadGroup` becomes an endpoint in another client's assignment,
//! `hostmesh describe service` shows it came from auto-registration, it stays for the grace
//! period after its stream ends and leaves after it, and a node whose certificate's service
//! account is not the group's is refused (shown by `hostmesh status`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Control, DeltaClient, Pki, addresses, connect, hostmesh, next_of, node};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use hostmesh_registry::xds::type_url;

const CLA: &str = "outbound|8080||vm-app.demo.svc.cluster.local";
const GRACE: Duration = Duration::from_secs(5);

const REGISTRY: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-app, namespace: demo}
spec:
  hosts: [vm-app.demo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: vm-app}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-static, namespace: demo}
spec:
  address: 10.0.0.5
  labels: {app: vm-app}
  serviceAccount: vm-app
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vm-app, namespace: demo}
spec:
  metadata:
    labels: {app: vm-app}
  template:
    serviceAccount: vm-app
    ports: {http: 8081}
";

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

/// A node that asks to join `group`, with a label of its own.
fn registering_node(ip: &str, group: &str) -> Node {
    let mut n = node(ip, "vm", "demo");
    let meta = n.metadata.get_or_insert_with(Struct::default);
    meta.fields
        .insert("AUTO_REGISTER_GROUP".to_owned(), string(group));
    let labels = Struct {
        fields: [("version".to_owned(), string("v2"))].into_iter().collect(),
    };
    meta.fields.insert(
        "LABELS".to_owned(),
        Value {
            kind: Some(Kind::StructValue(labels)),
        },
    );
    n
}

/// Reads assignments of [`CLA`] until `done` holds for its addresses; the addresses seen.
async fn wait_for(
    observer: &mut DeltaClient,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let eds = next_of(observer, type_url::ENDPOINT, left).await;
        observer.ack(&eds).await;
        if eds.resources.iter().any(|r| r.name == CLA) {
            let seen = addresses(&eds, CLA);
            if done(&seen) {
                return seen;
            }
        }
    }
}

/// A client with a certificate of service account `sa` whose node at `ip` asks to join the
/// `vm-app` group.
async fn join(control: &Control, pki: &Pki, sa: &str, ip: &str) -> DeltaClient {
    let id = format!("spiffe://cluster.local/ns/demo/sa/{sa}");
    let channel = connect(&control.address, pki.client(Some(&id))).await;
    DeltaClient::open(
        channel,
        registering_node(ip, "vm-app"),
        type_url::CLUSTER,
        &["*"],
    )
    .await
    .unwrap()
}

fn describe(control: &Control) -> String {
    let (code, out) = hostmesh(&[
        "describe",
        "service",
        "vm-app.demo.svc.cluster.local",
        "--address",
        &control.status_address,
    ]);
    assert_eq!(code, Some(0), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_a_workload_group_is_an_endpoint_while_connected_and_for_its_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.d");
    std::fs::create_dir(&registry).unwrap();
    std::fs::write(registry.join("vm.yaml"), REGISTRY).unwrap();
    let config = dir.path().join("control.yaml");
    std::fs::write(&config, "autoRegistration:\n  gracePeriod: 5s\n").unwrap();
    let pki = Pki::new(dir.path());
    let control = Control::start_with(
        env!("CARGO_BIN_EXE_hostmesh-control"),
        dir.path(),
        &registry,
        &["--config", config.to_str().unwrap()],
    );

    // Another host follows the service's assignment.
    let channel = connect(
        &control.address,
        pki.client(Some("spiffe://cluster.local/ns/demo/sa/front")),
    )
    .await;
    let mut observer = DeltaClient::open(
        channel,
        node("10.0.0.9", "front", "demo"),
        type_url::ENDPOINT,
        &[CLA],
    )
    .await
    .unwrap();
    let first = wait_for(&mut observer, Duration::from_secs(10), |_| true).await;
    assert_eq!(first, ["10.0.0.5"]);

    // The agent of the group connects: its address joins the assignment, at the template's
    // port.
    let member = join(&control, &pki, "vm-app", "10.0.0.77").await;
    let seen = wait_for(&mut observer, Duration::from_secs(10), |a| a.len() == 2).await;
    assert_eq!(seen, ["10.0.0.5", "10.0.0.77"]);

    let out = describe(&control);
    let line = out
        .lines()
        .find(|l| l.contains("10.0.0.77:8081"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("auto-registration"), "{line}");
    assert!(
        line.contains("WorkloadEntry demo/vm-app-10-0-0-77"),
        "{line}"
    );
    assert!(
        line.contains("spiffe://cluster.local/ns/demo/sa/vm-app"),
        "{line}"
    );

    // A node whose certificate is another service account's is refused, shown by status.
    let intruder = join(&control, &pki, "intruder", "10.0.0.88").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (_, out) = hostmesh(&["status", "--address", &control.status_address]);
        if out.contains("10-0-0-88") {
            break out;
        }
        assert!(Instant::now() < deadline, "no refusal in:\n{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refusal = status.lines().find(|l| l.contains("10-0-0-88")).unwrap();
    assert!(refusal.contains("auto-registration"), "{refusal}");
    assert!(
        refusal.contains("runs as service account \"vm-app\"")
            && refusal.contains("spiffe://cluster.local/ns/demo/sa/intruder"),
        "{refusal}"
    );
    assert!(!describe(&control).contains("10.0.0.88"));
    drop(intruder);

    // The member's stream ends: the entry stays for the grace period, then leaves.
    let gone = Instant::now();
    drop(member);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = describe(&control);
    assert!(
        gone.elapsed() < GRACE,
        "the machine is too slow to check within the grace period"
    );
    assert!(out.contains("10.0.0.77:8081"), "{out}");
    let seen = wait_for(&mut observer, Duration::from_secs(30), |a| a.len() == 1).await;
    let after = gone.elapsed();
    assert_eq!(seen, ["10.0.0.5"]);
    assert!(after >= GRACE, "removed {after:?} after the stream ended");
    assert!(!describe(&control).contains("10.0.0.77"));
}

//! Scale: many delta clients over 1,000 services and 10,000 endpoints receive and ACK a
//! one-endpoint change. The clients run in a child process so that the server's memory can
//! be measured alone. Heavy, so ignored by default:
//! `HOSTMESH_SCALE_CLIENTS=1000 cargo test -p hostmesh-registry --test ads scale -- --ignored --nocapture`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use hostmesh_ca::{CaPaths, CertificateAuthority};
use hostmesh_registry::xds::type_url;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Barrier, mpsc};

use crate::harness::*;

const SERVICES: usize = 1000;
const ENDPOINTS_PER_SERVICE: usize = 10;
const SETUP: Duration = Duration::from_secs(300);

fn services(changed: bool) -> Vec<(String, Vec<String>)> {
    (0..SERVICES)
        .map(|s| {
            let ips = (0..ENDPOINTS_PER_SERVICE)
                .map(|e| {
                    let last = if changed && s == 0 && e == 0 {
                        250
                    } else {
                        e + 1
                    };
                    format!("10.{}.{}.{last}", s / 250, s % 250)
                })
                .collect();
            (format!("svc-{s}"), ips)
        })
        .collect()
}

/// The next line the clients print for the test.
async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    loop {
        let line = tokio::time::timeout(SETUP, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the clients exited");
        if line.starts_with("SCALE ") {
            return line;
        }
    }
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn client_count() -> usize {
    std::env::var("HOSTMESH_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: run explicitly"]
async fn one_endpoint_change_reaches_every_delta_client() {
    let clients = client_count();
    let env = Env::start(snapshot_of(1, &services(false))).await;
    let next = snapshot_of(2, &services(true));
    let before = rss();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "scale::delta_clients",
            "--nocapture",
        ])
        .env("HOSTMESH_SCALE_ADDR", env.addr.to_string())
        .env("HOSTMESH_SCALE_CA", env.ca_dir())
        .env("HOSTMESH_SCALE_CLIENTS", clients.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_line(&mut lines).await, "SCALE READY");
    let per_client = rss().saturating_sub(before) / clients;

    let start = unix_nanos();
    env.publish(next);
    let times = next_line(&mut lines).await;
    let mut latencies: Vec<Duration> = times
        .trim_start_matches("SCALE TIMES ")
        .split(' ')
        .map(|t| {
            let at: u128 = t.parse().unwrap();
            Duration::from_nanos(u64::try_from(at.saturating_sub(start)).unwrap())
        })
        .collect();
    assert_eq!(latencies.len(), clients);
    let acked = env.ads.generation().to_string();
    env.wait_status_within("every node ACKed", SETUP, |s| {
        s.len() == clients
            && s.iter().all(|n| {
                n.types
                    .get(type_url::ENDPOINT)
                    .and_then(|t| t.acked.as_deref())
                    == Some(acked.as_str())
            })
    })
    .await;
    let all_acked = Duration::from_nanos(u64::try_from(unix_nanos() - start).unwrap());
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{clients} delta clients, {SERVICES} services, {} endpoints: one-endpoint change received p50 {:?}, p99 {:?}, max {:?}; all ACKs recorded after {:?}; server RSS +{} KiB per client",
        SERVICES * ENDPOINTS_PER_SERVICE,
        p(0.5),
        p(0.99),
        p(1.0),
        all_acked,
        per_client / 1024,
    );
    drop(child);
    env.stop();
}

/// The client side of the scale test, run by it in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by one_endpoint_change_reaches_every_delta_client"]
async fn delta_clients() {
    let Ok(addr) = std::env::var("HOSTMESH_SCALE_ADDR") else {
        println!("only run by one_endpoint_change_reaches_every_delta_client");
        return;
    };
    let addr = addr.parse().unwrap();
    let ca_dir = std::env::var("HOSTMESH_SCALE_CA").unwrap();
    let ca = CertificateAuthority::load(&CaPaths::new(ca_dir), None).unwrap();
    let clients = client_count();
    let names: Vec<String> = (0..SERVICES).map(|s| host(&format!("svc-{s}"))).collect();
    let cert = certificate(&ca, "spiffe://cluster.local/ns/demo/sa/bill");
    let ready = Arc::new(Barrier::new(clients + 1));
    let (done, mut results) = mpsc::channel::<u128>(clients);
    for i in 0..clients {
        let channel = connect(&ca, addr, Some(cert.clone())).await;
        let (ready, done, names) = (ready.clone(), done.clone(), names.clone());
        tokio::spawn(async move {
            let id = format!(
                "sidecar~10.200.{}.{}~vm-{i}.demo~demo.svc.cluster.local",
                i / 250,
                i % 250
            );
            let first = DeltaDiscoveryRequest {
                type_url: type_url::CLUSTER.to_owned(),
                node: Some(node(&id, "demo")),
                ..Default::default()
            };
            let mut client = DeltaClient::open(channel, first).await.unwrap();
            // Large answers come in several responses.
            let mut received = 0;
            while received < SERVICES {
                let cds = client.recv_within(SETUP).await;
                assert_eq!(cds.type_url, type_url::CLUSTER);
                received += cds.resources.len();
                client.ack(&cds).await;
            }
            client
                .send(DeltaDiscoveryRequest {
                    type_url: type_url::ENDPOINT.to_owned(),
                    resource_names_subscribe: names,
                    ..Default::default()
                })
                .await;
            let mut received = 0;
            while received < SERVICES {
                let eds = client.recv_within(SETUP).await;
                assert_eq!(eds.type_url, type_url::ENDPOINT);
                received += eds.resources.len();
                client.ack(&eds).await;
            }
            ready.wait().await;
            let change = client.recv_within(SETUP).await;
            let at = unix_nanos();
            assert_eq!(change.type_url, type_url::ENDPOINT);
            assert_eq!(change.resources.len(), 1);
            client.ack(&change).await;
            done.send(at).await.unwrap();
            // Keep the stream open until the parent ends the process.
            let _ = client.recv_within(SETUP).await;
        });
    }
    ready.wait().await;
    println!("SCALE READY");
    let mut times = Vec::with_capacity(clients);
    for _ in 0..clients {
        times.push(results.recv().await.unwrap().to_string());
    }
    println!("SCALE TIMES {}", times.join(" "));
    // The parent ends this process.
    let _ = results.recv().await;
}

//! Scale benchmark of the control server (a harness that prints a table, not a timed test).
//!
//! Runs the real `hostmesh-control` binary on a static registry of `SERVICES` services with
//! `ENDPOINTS` endpoints each, connects `CLIENTS` delta ADS clients over mTLS (each subscribes
//! to every cluster and endpoint assignment, like an agent, and ACKs every response), then
//! `ROUNDS` times moves one endpoint by rewriting its registry file (replaced by rename, as
//! Ansible does) and measures, for every client, the time from the rename until the client has
//! received the changed assignment and sent its ACK. Reports p50/p99/max over all clients and
//! rounds, and the server's resident memory per connected client.
//!
//! `cargo bench -p hostmesh-registry --bench xds_scale` (defaults 1000/1000/10/5);
//! override with `HOSTMESH_BENCH_CLIENTS`, `_SERVICES`, `_ENDPOINTS`, `_ROUNDS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostmesh_registry::xds::type_url;
use tokio::sync::{Semaphore, mpsc};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Control, DeltaClient, Pki};

fn env(name: &str, default: usize) -> usize {
    std::env::var(format!("HOSTMESH_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn service_name(s: usize) -> String {
    format!("svc-{s:04}")
}

fn cla_name(s: usize) -> String {
    format!("outbound|8080||{}.bench.svc.cluster.local", service_name(s))
}

/// The registry file of one service: a ServiceEntry and its WorkloadEntries.
fn service_file(s: usize, endpoints: usize, moved: Option<u8>) -> String {
    let name = service_name(s);
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: bench\nspec:\n  hosts: [{name}.bench.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 8080, name: http, protocol: HTTP}}\n  workloadSelector:\n    labels: {{app: {name}}}\n"
    );
    for e in 0..endpoints {
        let last = match (e, moved) {
            (0, Some(octet)) => octet,
            _ => u8::try_from(e + 1).unwrap_or(u8::MAX),
        };
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}-{e}\n  namespace: bench\nspec:\n  address: 10.{}.{}.{last}\n  labels: {{app: {name}, version: v1}}\n  serviceAccount: {name}\n",
            s / 250,
            s % 250
        ));
    }
    out
}

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn raise_fd_limit() {
    let (_, hard) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or((0, u64::MAX), |h| (0, h));
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the harness tells clients: the assignment to watch for, and when it changed.
type Probe = Arc<Mutex<Option<(String, Instant)>>>;

struct ClientSetup {
    address: String,
    tls: Arc<rustls::ClientConfig>,
    id: usize,
}

/// One agent-like delta client. Reports `synced` once it holds every assignment, then the
/// latency of every probe it sees.
async fn run_client(
    setup: ClientSetup,
    services: usize,
    probe: Probe,
    synced: mpsc::Sender<()>,
    latencies: mpsc::UnboundedSender<Duration>,
) {
    let channel = common::connect(&setup.address, setup.tls.clone()).await;
    let ip = format!("10.200.{}.{}", setup.id / 250, setup.id % 250);
    let node = common::node(&ip, &format!("bench-{}", setup.id), "bench");
    let Ok(mut client) = DeltaClient::open(channel, node, type_url::CLUSTER, &["*"]).await else {
        return;
    };
    client.subscribe(type_url::LISTENER, &["*"]).await;
    let mut eds_subscribed = false;
    let mut endpoints_held = 0usize;
    let mut synced = Some(synced);
    while let Ok(response) = client.next(Duration::from_secs(3600)).await {
        let received = Instant::now();
        client.ack(&response).await;
        if response.type_url == type_url::CLUSTER && !eds_subscribed {
            let names: Vec<String> = (0..services).map(cla_name).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            eds_subscribed = true;
            client.subscribe(type_url::ENDPOINT, &names).await;
        }
        if response.type_url == type_url::ENDPOINT {
            endpoints_held += response.resources.len();
            if endpoints_held >= services
                && let Some(s) = synced.take()
            {
                let _ = s.send(()).await;
            }
            let watched = probe.lock().unwrap().clone();
            if let Some((name, since)) = watched
                && response.resources.iter().any(|r| r.name == name)
            {
                let _ = latencies.send(Instant::now().max(received) - since);
            }
        }
    }
}

fn main() {
    let clients = env("CLIENTS", 1000);
    let services = env("SERVICES", 1000);
    let endpoints = env("ENDPOINTS", 10);
    let rounds = env("ROUNDS", 5);
    raise_fd_limit();

    let dir = tempfile::tempdir().unwrap();
    let registry: PathBuf = dir.path().join("registry.d");
    std::fs::create_dir(&registry).unwrap();
    for s in 0..services {
        write_atomic(
            &registry,
            &format!("{}.yaml", service_name(s)),
            &service_file(s, endpoints, None),
        );
    }
    let pki = Pki::new(dir.path());
    let tls = pki.client(Some("spiffe://cluster.local/ns/bench/sa/agent"));
    let server = Control::start(
        env!("CARGO_BIN_EXE_hostmesh-control"),
        dir.path(),
        &registry,
    );
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Let the first snapshot settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_idle = rss_kib(pid);

        let probe: Probe = Arc::new(Mutex::new(None));
        let (synced_tx, mut synced_rx) = mpsc::channel(clients.max(1));
        let (lat_tx, mut lat_rx) = mpsc::unbounded_channel();
        let connecting = Arc::new(Semaphore::new(64));
        let started = Instant::now();
        for id in 0..clients {
            let setup = ClientSetup {
                address: server.address.clone(),
                tls: tls.clone(),
                id,
            };
            let (probe, synced_tx, lat_tx) = (probe.clone(), synced_tx.clone(), lat_tx.clone());
            let permit = connecting.clone().acquire_owned().await.unwrap();
            tokio::spawn(async move {
                let (inner_tx, mut inner_rx) = mpsc::channel(1);
                let client = tokio::spawn(run_client(setup, services, probe, inner_tx, lat_tx));
                if inner_rx.recv().await.is_some() {
                    let _ = synced_tx.send(()).await;
                }
                drop(permit);
                let _ = client.await;
            });
        }
        for n in 0..clients {
            if tokio::time::timeout(Duration::from_secs(120), synced_rx.recv())
                .await
                .ok()
                .flatten()
                .is_none()
            {
                panic!("only {n} of {clients} clients synced");
            }
        }
        let sync_time = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_connected = rss_kib(pid);

        let mut all = Vec::new();
        let mut per_round = Vec::new();
        for round in 0..rounds {
            let s = (round * 7919) % services;
            let octet = if round % 2 == 0 { 201 } else { 202 };
            let since = Instant::now();
            *probe.lock().unwrap() = Some((cla_name(s), since));
            write_atomic(&registry, &format!("{}.yaml", service_name(s)), &service_file(s, endpoints, Some(octet)));
            let mut got = Vec::with_capacity(clients);
            while got.len() < clients {
                match tokio::time::timeout(Duration::from_secs(30), lat_rx.recv()).await {
                    Ok(Some(d)) => got.push(d),
                    _ => panic!("round {round}: only {} of {clients} clients got the change", got.len()),
                }
            }
            got.sort();
            per_round.push((percentile(&got, 50.0), percentile(&got, 99.0), got[got.len() - 1]));
            all.extend(got);
            *probe.lock().unwrap() = None;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        all.sort();

        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        println!();
        println!("xDS scale: {clients} delta clients, {services} services, {} endpoints, {rounds} one-endpoint changes", services * endpoints);
        println!("(time from the registry file's rename to each client's ACK of the changed assignment; includes the folder debounce: 15 ms quiet, at most 100 ms)");
        println!();
        println!("| round | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        for (i, (p50, p99, max)) in per_round.iter().enumerate() {
            println!("| {} | {} | {} | {} |", i + 1, ms(*p50), ms(*p99), ms(*max));
        }
        println!("| all | {} | {} | {} |", ms(percentile(&all, 50.0)), ms(percentile(&all, 99.0)), ms(all[all.len() - 1]));
        println!();
        println!("| measure | value |");
        println!("|---|---|");
        println!("| initial sync of all clients | {} ms |", sync_time.as_millis());
        println!("| server RSS, registry loaded, no clients | {:.1} MiB |", rss_idle as f64 / 1024.0);
        println!("| server RSS, {clients} clients synced | {:.1} MiB |", rss_connected as f64 / 1024.0);
        println!(
            "| server RSS per connected client | {:.3} MiB |",
            rss_connected.saturating_sub(rss_idle) as f64 / 1024.0 / clients.max(1) as f64
        );
    });
    drop(server);
}

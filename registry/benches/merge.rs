//! Benchmark of the registry merge (a harness that prints a table).
//!
//! Three sources (static, kubernetes, consul) hold `SERVICES` services with `ENDPOINTS`
//! endpoints in all (defaults 10,000 / 100,000), 1 % of the hosts defined by two sources
//! (so conflicts are found and reported on every merge). Measures the first merge, then
//! `ROUNDS` times: one endpoint of one Consul service changes, the Consul view is
//! republished (as the source does: every service `Arc` collected again) and merged into a
//! new snapshot. Prints p50/p99/max of the time to the new snapshot, and memory (resident
//! set growth): the views, and what one more snapshot costs (every round's snapshot is kept
//! alive, as generations being served are).
//!
//! `cargo bench -p hostmesh-registry --bench merge`; override with
//! `HOSTMESH_BENCH_SERVICES`, `_ENDPOINTS`, `_ROUNDS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostmesh_registry::merge::{Precedence, SourceView, merge};
use hostmesh_registry::model::config::{Address, MeshLocation, Resolution, ServicePort};
use hostmesh_registry::model::types::{Labels, ObjectName, Weight};
use hostmesh_registry::model::{
    Endpoint, Hostname, Identity, Kind, Namespace, ObjectKey, PortNumber, Protocol, Provenance,
    Service, SourceName, TrustDomain,
};

/// Resident memory of this process (Linux), in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(format!("HOSTMESH_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn service(source: &SourceName, host: &str, per: usize, seed: usize) -> Service {
    let port = PortNumber::new(8080).unwrap();
    let origin = ObjectKey {
        kind: Kind::ServiceEntry,
        namespace: Namespace::default_namespace(),
        name: ObjectName::new(&host.replace('.', "-")).unwrap(),
    };
    let identity = Identity::new(TrustDomain::default(), "default", "default").unwrap();
    let endpoints = (0..per)
        .map(|e| {
            let n = (seed * per + e) as u32;
            Endpoint {
                service_port: port,
                address: Address::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))),
                port,
                labels: Labels::default(),
                locality: None,
                network: None,
                weight: Weight::default(),
                identity: identity.clone(),
                origin: origin.clone(),
                provenance: Provenance::new(source.clone(), format!("{host} instance {e}"), n),
            }
        })
        .collect();
    Service {
        hostname: Hostname::new(host).unwrap(),
        namespace: Namespace::default_namespace(),
        ports: vec![ServicePort {
            number: port,
            name: "tcp".into(),
            protocol: Protocol::Tcp,
            target_port: None,
        }],
        addresses: Vec::new(),
        resolution: Resolution::Static,
        location: MeshLocation::External,
        export_to: Vec::new(),
        subject_alt_names: Vec::new(),
        endpoints,
        origin,
        provenance: Provenance::new(source.clone(), host.to_owned(), 1),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn main() {
    let services = env("SERVICES", 10_000);
    let endpoints = env("ENDPOINTS", 100_000);
    let rounds = env("ROUNDS", 50);
    let per = (endpoints / services).max(1);
    let sources = [
        ("static", Precedence::Static),
        ("kubernetes", Precedence::Kubernetes),
        ("consul", Precedence::Consul),
    ];
    let before = rss();
    let mut consul: Vec<Arc<Service>> = Vec::new();
    let mut views: Vec<SourceView> = Vec::new();
    for (i, (name, precedence)) in sources.iter().enumerate() {
        let source = SourceName::new(name);
        let list: Vec<Arc<Service>> = (0..services)
            .filter(|s| s % 3 == i || (i == 2 && s % 100 == 0 && s % 3 == 0))
            .map(|s| {
                Arc::new(service(
                    &source,
                    &format!("svc-{s:05}.bench.example"),
                    per,
                    s,
                ))
            })
            .collect();
        if *name == "consul" {
            consul = list.clone();
        }
        views.push(SourceView {
            revision: 1,
            services: list.into(),
            ..SourceView::empty(source, *precedence)
        });
    }
    let input = rss().saturating_sub(before);
    let total_services: usize = views.iter().map(|v| v.services.len()).sum();
    let total_endpoints: usize = views
        .iter()
        .flat_map(|v| v.services.iter())
        .map(|s| s.endpoints.len())
        .sum();

    let started = Instant::now();
    let first = merge(1, &views);
    let first_time = started.elapsed();
    let conflicts = first.conflicts.len();

    let mut times = Vec::with_capacity(rounds);
    let mut held = vec![first.snapshot];
    let rss_before_rounds = rss();
    for round in 0..rounds {
        let target = round % consul.len();
        let mut changed = Service::clone(&consul[target]);
        changed.endpoints[0].address =
            Address::Ip(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + round as u32)));
        let started = Instant::now();
        consul[target] = Arc::new(changed);
        views[2].services = consul.clone().into();
        views[2].revision += 1;
        let out = merge(round as u64 + 2, &views);
        times.push(started.elapsed());
        held.push(out.snapshot);
    }
    let per_snapshot = rss().saturating_sub(rss_before_rounds) / rounds.max(1);
    let last = held.last().unwrap();
    times.sort();
    println!(
        "merge benchmark: {total_services} services / {total_endpoints} endpoints in 3 sources, {conflicts} host conflicts"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| first merge | {} |", ms(first_time));
    println!(
        "| one endpoint change → new snapshot, p50 / p99 / max ({rounds} rounds) | {} / {} / {} |",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );
    println!("| views (input), resident | {} |", mib(input));
    println!(
        "| one more snapshot alive (shares unchanged services), resident | {} |",
        mib(per_snapshot)
    );
    println!(
        "| snapshot in force | version {}, {} services |",
        last.version(),
        last.services().len()
    );
}

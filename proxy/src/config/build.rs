//! Turns a [`ConfigSpec`] into a [`ProxyConfig`], collecting every problem on the way.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use regex::Regex;

use super::cluster::{Cluster, Endpoint, UpstreamTls};
use super::hash_lb::{MAX_RING_SIZE, is_prime};
use super::inbound::{InboundConfig, InboundPort};
use super::outbound::{OutboundConfig, Service, ServiceTarget};
use super::route::{
    HeaderMatch, HeaderSource, HeaderValueMatch, PathMatch, Route, RouteTable, VirtualHost,
    WeightedClusters,
};
use super::spec::{
    ClusterSpec, ConfigSpec, HeaderValueSpec, PathMatchSpec, RouteSpec, ServiceSpec, TargetSpec,
    UpstreamTlsSpec,
};
use super::{ConfigError, ConfigErrors, LbPolicy, ProxyConfig};
use route_policy::route_policy;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, at: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError {
            at: at.into(),
            problem: problem.into(),
        });
    }
}

pub(super) fn build(spec: &ConfigSpec) -> Result<ProxyConfig, ConfigErrors> {
    let mut problems = Problems::default();
    let mut clusters: HashMap<&str, Arc<Cluster>> = HashMap::new();
    for c in &spec.clusters {
        let at = format!("cluster {:?}", c.name);
        if clusters.contains_key(c.name.as_str()) {
            problems.add(at, "defined twice");
        } else if let Some(cluster) = cluster(c, &at, &mut problems) {
            clusters.insert(&c.name, Arc::new(cluster));
        }
    }

    let mut services = HashMap::new();
    let mut by_endpoints = Vec::new();
    for s in &spec.outbound.services {
        let at = format!("service {:?}", s.name);
        let Some(service) = service(s, &at, &clusters, &mut problems) else {
            continue;
        };
        let service = Arc::new(service);
        if s.addresses.is_empty() {
            problems.add(&at, "has no address");
        }
        for addr in &s.addresses {
            if let Some(other) = services.insert(*addr, service.clone()) {
                problems.add(
                    &at,
                    format!("address {addr} is also claimed by {:?}", other.name),
                );
            }
        }
        if let Some(name) = &s.endpoints_of {
            match clusters.get(name.as_str()) {
                Some(cluster) => by_endpoints.push((s, cluster.clone(), service)),
                None => problems.add(&at, format!("endpoint cluster {name:?} does not exist")),
            }
        }
    }
    // After every declared address, so an endpoint never takes a VIP's place.
    for (s, cluster, service) in by_endpoints {
        index_endpoints(&mut services, &s.addresses, &cluster, &service);
    }

    let mut ports = HashMap::new();
    for p in &spec.inbound.ports {
        let at = format!("inbound port {}", p.port);
        if p.port == 0 || p.app_port == 0 {
            problems.add(&at, "port 0 is not a port");
        }
        let port = InboundPort {
            app_port: p.app_port,
            protocol: p.protocol,
            mode: p.mode.unwrap_or(spec.inbound.default_mode),
            max_requests_per_connection: p.max_requests_per_connection.filter(|n| *n > 0),
        };
        if ports.insert(p.port, port).is_some() {
            problems.add(&at, "defined twice");
        }
    }

    if !problems.0.is_empty() {
        return Err(ConfigErrors(problems.0));
    }
    Ok(ProxyConfig {
        version: spec.version.clone(),
        outbound: OutboundConfig {
            services,
            unknown: spec.outbound.unknown_destination,
        },
        inbound: InboundConfig { ports },
    })
}

/// Adds `cluster`'s endpoint IPs at the service's ports; the first claim of an `ip:port` wins.
fn index_endpoints(
    services: &mut HashMap<SocketAddr, Arc<Service>>,
    addresses: &[SocketAddr],
    cluster: &Cluster,
    service: &Arc<Service>,
) {
    let ports: BTreeSet<u16> = addresses.iter().map(SocketAddr::port).collect();
    for e in cluster.endpoints() {
        for &port in &ports {
            services
                .entry(SocketAddr::new(e.address().ip(), port))
                .or_insert_with(|| service.clone());
        }
    }
}

fn cluster(c: &ClusterSpec, at: &str, problems: &mut Problems) -> Option<Cluster> {
    let before = problems.0.len();
    let tls = upstream_tls(&c.tls, at, problems);
    let mut endpoints = Vec::with_capacity(c.endpoints.len());
    for (i, e) in c.endpoints.iter().enumerate() {
        let at = format!("{at} endpoint {i} ({})", e.address);
        if e.weight == 0 {
            problems.add(&at, "weight is 0");
        }
        if e.address.port() == 0 {
            problems.add(&at, "port is 0");
        }
        let tls = match &e.tls {
            Some(spec) => upstream_tls(spec, &at, problems),
            None => tls.clone(),
        };
        endpoints.push(
            Endpoint::new(e.address, e.weight, e.labels.clone(), tls).with_priority(e.priority),
        );
    }
    if problems.0.len() != before {
        return None;
    }
    let timeout = c.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if c.max_requests_per_connection == Some(0) {
        problems.add(at, "max_requests_per_connection is 0");
    }
    match c.lb {
        LbPolicy::RingHash { min_ring_size } if min_ring_size > MAX_RING_SIZE => {
            problems.add(
                at,
                format!("minimum_ring_size {min_ring_size} is above {MAX_RING_SIZE}"),
            );
        }
        LbPolicy::Maglev { table_size } if !is_prime(table_size) => {
            problems.add(at, format!("maglev table_size {table_size} is not a prime"));
        }
        _ => {}
    }
    if let Some(o) = &c.outlier
        && o.max_ejection_percent > 100
    {
        problems.add(at, "max_ejection_percent is above 100");
    }
    if let Some((percent, _)) = c.thresholds.retry_budget
        && !(0.0..=100.0).contains(&percent)
    {
        problems.add(at, "retry budget percent is not within 0-100");
    }
    if problems.0.len() != before {
        return None;
    }
    let fallback = c
        .fallback
        .as_ref()
        .and_then(|f| l7::fallback(f, at, problems));
    if problems.0.len() != before {
        return None;
    }
    Some(
        Cluster::new(c.name.clone(), endpoints, c.lb, tls, timeout, c.http2)
            .with_resilience(c.thresholds.clone(), c.outlier.clone())
            .with_max_requests_per_connection(c.max_requests_per_connection)
            .with_fallback(fallback),
    )
}

fn upstream_tls(spec: &UpstreamTlsSpec, at: &str, problems: &mut Problems) -> UpstreamTls {
    match spec {
        UpstreamTlsSpec::Plaintext => UpstreamTls::Plaintext,
        UpstreamTlsSpec::Mtls {
            expected_identities,
        } => {
            let mut ids: Vec<SpiffeId> = Vec::new();
            for raw in expected_identities {
                match raw.parse() {
                    Ok(id) => ids.push(id),
                    Err(e) => problems.add(at, format!("expected identity {raw:?}: {e}")),
                }
            }
            if expected_identities.is_empty() {
                problems.add(at, "mutual TLS needs at least one expected SPIFFE ID");
            }
            ids.sort();
            ids.dedup();
            UpstreamTls::Mtls {
                expected: ids.into(),
            }
        }
    }
}

fn service(
    s: &ServiceSpec,
    at: &str,
    clusters: &HashMap<&str, Arc<Cluster>>,
    problems: &mut Problems,
) -> Option<Service> {
    let target = match (&s.target, s.protocol.is_http()) {
        (TargetSpec::Tcp { cluster }, false) => match clusters.get(cluster.as_str()) {
            Some(c) => ServiceTarget::Tcp(c.clone()),
            None => {
                problems.add(at, format!("cluster {cluster:?} does not exist"));
                return None;
            }
        },
        (TargetSpec::L4(spec), false) => {
            ServiceTarget::L4(l4::routes(spec, at, clusters, problems)?)
        }
        (TargetSpec::Http(table), true) => {
            let before = problems.0.len();
            let mut hosts = Vec::new();
            for vh in &table.virtual_hosts {
                let at = format!("{at} virtual host {:?}", vh.name);
                if vh.domains.is_empty() {
                    problems.add(&at, "has no domains");
                }
                let bucket = vh
                    .rate_limit
                    .as_ref()
                    .and_then(|rl| route_policy::token_bucket(rl, &at, problems));
                let routes = vh
                    .routes
                    .iter()
                    .filter_map(|r| {
                        route(r, &format!("{at} route {:?}", r.name), clusters, problems)
                    })
                    .map(|mut r| {
                        r.rate_limit = bucket.clone();
                        r
                    })
                    .collect();
                hosts.push(VirtualHost {
                    name: vh.name.clone(),
                    domains: vh.domains.clone(),
                    routes,
                });
            }
            if problems.0.len() != before {
                return None;
            }
            ServiceTarget::Http(RouteTable::new(table.name.clone(), hosts))
        }
        (_, http) => {
            let want = if http {
                "a route table"
            } else {
                "a TCP cluster"
            };
            problems.add(at, format!("protocol {:?} needs {want}", s.protocol));
            return None;
        }
    };
    Some(Service {
        name: s.name.clone(),
        protocol: s.protocol,
        target,
    })
}

fn route(
    r: &RouteSpec,
    at: &str,
    clusters: &HashMap<&str, Arc<Cluster>>,
    problems: &mut Problems,
) -> Option<Route> {
    let before = problems.0.len();
    let path = match &r.path {
        PathMatchSpec::Exact(p) => Some(PathMatch::Exact(p.clone())),
        PathMatchSpec::Prefix(p) => Some(PathMatch::Prefix(p.clone())),
        PathMatchSpec::Regex(re) => anchored(re, at, problems).map(PathMatch::Regex),
    };
    let mut headers = Vec::new();
    for h in &r.headers {
        let source = match h.name.as_str() {
            ":method" => HeaderSource::Method,
            ":authority" => HeaderSource::Authority,
            ":scheme" => HeaderSource::Scheme,
            ":path" => HeaderSource::Path,
            name => match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => HeaderSource::Header(n),
                Err(_) => {
                    problems.add(at, format!("{:?} is not a header name", h.name));
                    continue;
                }
            },
        };
        if let Some(value) = value_match(&h.value, at, problems) {
            headers.push(HeaderMatch {
                source,
                value,
                invert: h.invert,
            });
        }
    }
    let mut policy = route_policy(&r.policy, at, problems);
    let mirrors = l7::mirrors(&r.policy.mirrors, clusters, at, problems);
    if let Some(p) = &mut policy {
        p.mirrors = mirrors;
    }
    let mut weighted = Vec::new();
    for wc in &r.clusters {
        match clusters.get(wc.cluster.as_str()) {
            Some(c) if wc.weight > 0 => weighted.push((c.clone(), wc.weight)),
            Some(_) => {}
            None => problems.add(at, format!("cluster {:?} does not exist", wc.cluster)),
        }
    }
    let redirects = r.policy.redirect.is_some();
    if !redirects && (r.clusters.is_empty() || (weighted.is_empty() && problems.0.len() == before))
    {
        problems.add(at, "sends to no cluster (no cluster with a weight above 0)");
    }
    if redirects && !r.clusters.is_empty() {
        problems.add(at, "both redirects and sends to clusters");
    }
    if r.timeout == Some(Duration::ZERO) {
        problems.add(at, "timeout 0; leave it unset for no timeout");
    }
    if problems.0.len() != before {
        return None;
    }
    Some(Route {
        name: r.name.clone(),
        path: path?,
        headers,
        clusters: WeightedClusters::new(weighted),
        timeout: r.timeout,
        policy: policy?,
        rate_limit: None,
    })
}

fn value_match(v: &HeaderValueSpec, at: &str, problems: &mut Problems) -> Option<HeaderValueMatch> {
    Some(match v {
        HeaderValueSpec::Present => HeaderValueMatch::Present,
        HeaderValueSpec::Exact(v) => HeaderValueMatch::Exact(v.clone()),
        HeaderValueSpec::Prefix(v) => HeaderValueMatch::Prefix(v.clone()),
        HeaderValueSpec::Regex(re) => HeaderValueMatch::Regex(anchored(re, at, problems)?),
    })
}

/// Compiles `re` to match whole strings only.
fn anchored(re: &str, at: &str, problems: &mut Problems) -> Option<Regex> {
    match Regex::new(&format!("^(?:{re})$")) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.add(at, format!("regex {re:?}: {e}"));
            None
        }
    }
}

mod l4;
mod l7;
mod route_policy;
#[cfg(test)]
mod tests;

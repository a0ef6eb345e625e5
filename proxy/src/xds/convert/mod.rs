//! Envoy resources → [`ConfigSpec`]: pure, no I/O, no lock. Everything the proxy cannot
//! honour faithfully is a [`Rejection`] naming the resource and the field; a push with any
//! rejection is refused whole (NACK), and the previous config stays.
//!
//! - [`cluster`]: `Cluster` + `ClusterLoadAssignment` → clusters with endpoints and TLS;
//! - [`route`]: `RouteConfiguration` → route tables;
//! - [`listener`]: `Listener` → outbound services (by destination address) and inbound ports;
//! - `tls`: the transport sockets.
//!
//! References are resolved here: a route or TCP proxy naming a cluster that does not exist
//! gets an empty cluster (Envoy answers 503 / closes, as `cluster_not_found_response_code`
//! says); an EDS cluster without its assignment, or a listener without its RDS route
//! configuration, is *pending*: valid, but not yet complete enough to apply.

pub mod cluster;
mod cluster_resilience;
pub mod l4;
pub mod listener;
pub mod route;
mod route_l7;
pub mod route_policy;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use super::name_table::{self, MeshNames};
use super::resources::Resources;
use super::wire::{Problems, Rejection, Rejections};
use crate::config::spec::{
    ClusterSpec, ConfigSpec, InboundPortSpec, InboundSpec, OutboundSpec, PathMatchSpec,
    RouteTableSpec, TargetSpec, UpstreamTlsSpec, WeightedClusterSpec,
};
use crate::config::{LbPolicy, Protocol, UnknownDestination};
use listener::{Listeners, Target};

/// What the conversion needs to know about this host.
#[derive(Debug, Clone)]
pub struct Context {
    /// The mesh's trust domain (`cluster.local`): inbound peers must belong to it.
    pub trust_domain: String,
}

/// The result of converting every resource held.
#[derive(Debug, Clone)]
pub struct Converted {
    pub spec: ConfigSpec,
    /// What is still missing before `spec` is complete (e.g. `ClusterLoadAssignment "x"`).
    pub pending: Vec<String>,
    pub names: MeshNames,
}

/// Converts everything in `res`.
pub fn convert(res: &Resources, ctx: &Context) -> Result<Converted, Rejections> {
    let td = ctx.trust_domain.as_str();
    let mut out = Vec::new();
    let mut pending = Vec::new();

    let assignments = |name: &str| res.endpoints.get(name).map(|v| &*v.body);
    let mut clusters = BTreeMap::new();
    for (name, c) in &res.clusters {
        if let Some(c) = cluster::convert(&c.body, &assignments, td, &mut out, &mut pending) {
            clusters.insert(name.clone(), c);
        }
    }
    let mut routes = BTreeMap::new();
    for (name, rc) in &res.routes {
        let mut p = Problems::new("RouteConfiguration", name, &mut out);
        if let Some(t) = route::table(&rc.body, &mut p) {
            routes.insert(name.clone(), t);
        }
    }
    let mut listeners = Listeners::default();
    let mut inbound_listener = String::from("virtualInbound");
    for (name, l) in &res.listeners {
        let mut p = Problems::new("Listener", name, &mut out);
        let before = listeners.inbound.len();
        listener::convert(&l.body, td, &mut p, &mut listeners);
        if listeners.inbound.len() != before {
            inbound_listener = name.clone();
        }
    }

    let mut build = Build {
        clusters: &clusters,
        referenced: BTreeSet::new(),
    };
    let outbound = build.outbound(&listeners, &routes, &mut pending, &mut out);
    let inbound = build.inbound(&listeners, &inbound_listener, &mut out);
    let referenced = build.referenced;

    let names = name_table::convert(res.name_tables.iter().map(|(n, v)| (n, &*v.body)), &mut out);
    if !out.is_empty() {
        return Err(Rejections(out));
    }
    let mut specs: Vec<ClusterSpec> = clusters
        .into_values()
        .filter_map(|c| match c {
            cluster::Converted::Endpoints(spec) => Some(spec),
            cluster::Converted::OriginalDst => None,
        })
        .collect();
    let known: BTreeSet<String> = specs.iter().map(|c| c.name.clone()).collect();
    specs.extend(
        referenced
            .difference(&known)
            .map(|name| empty_cluster(name)),
    );
    Ok(Converted {
        spec: ConfigSpec {
            version: String::new(),
            clusters: specs,
            outbound,
            inbound,
        },
        pending,
        names,
    })
}

/// A cluster that exists only because something names it: no endpoints, so 503.
fn empty_cluster(name: &str) -> ClusterSpec {
    ClusterSpec {
        name: name.to_owned(),
        endpoints: Vec::new(),
        lb: LbPolicy::RoundRobin,
        tls: UpstreamTlsSpec::Plaintext,
        connect_timeout: None,
        http2: false,
        thresholds: Default::default(),
        outlier: None,
        max_requests_per_connection: None,
        fallback: None,
    }
}

/// Cross-resource assembly.
struct Build<'a> {
    clusters: &'a BTreeMap<String, cluster::Converted>,
    /// Clusters named by services (so that missing ones get an empty stand-in).
    referenced: BTreeSet<String>,
}

impl Build<'_> {
    fn is_original_dst(&self, name: &str) -> bool {
        matches!(
            self.clusters.get(name),
            Some(cluster::Converted::OriginalDst)
        )
    }

    /// A missing cluster or one without endpoints: connections to it fail.
    fn is_empty(&self, name: &str) -> bool {
        match self.clusters.get(name) {
            None => true,
            Some(cluster::Converted::Endpoints(c)) => c.endpoints.is_empty(),
            Some(cluster::Converted::OriginalDst) => false,
        }
    }

    fn outbound(
        &mut self,
        l: &Listeners,
        routes: &BTreeMap<String, RouteTableSpec>,
        pending: &mut Vec<String>,
        out: &mut Vec<Rejection>,
    ) -> OutboundSpec {
        let mut p = Problems::new("Listener", "virtualOutbound", out);
        let unknown_destination = match &l.outbound_default {
            None => UnknownDestination::Refuse,
            Some(c) if self.is_original_dst(c) => UnknownDestination::Passthrough,
            Some(c) if self.is_empty(c) => UnknownDestination::Refuse,
            Some(c) => {
                p.add(format!(
                    "default_filter_chain: TCP proxy to {c:?} is not supported (only ORIGINAL_DST for passthrough or a cluster without endpoints to refuse)"
                ));
                UnknownDestination::Refuse
            }
        };
        let mut services = Vec::new();
        for destination in l4::destinations(&l.outbound, &mut p) {
            let (chain, protocol, target) = match destination {
                l4::Destination::Chain(chain) => {
                    let Some((protocol, target)) =
                        self.chain_target(chain, unknown_destination, routes, pending, &mut p)
                    else {
                        continue;
                    };
                    (chain, protocol, target)
                }
                l4::Destination::L4 { named, mut spec } => {
                    // Connections no TLS route takes, sent to their original destination
                    // (a `NONE` service): the unknown-destination rule, which passes through.
                    let original = |d: &Vec<WeightedClusterSpec>| {
                        d.iter().any(|c| self.is_original_dst(&c.cluster))
                    };
                    if unknown_destination == UnknownDestination::Passthrough
                        && spec.default.as_ref().is_some_and(original)
                        && !spec.sni.is_empty()
                    {
                        spec.default = None;
                    }
                    for c in l4::Destination::clusters(&spec) {
                        if self.is_original_dst(c) {
                            p.add(format!(
                                "filter chain {:?}: TLS or weighted TCP routes to ORIGINAL_DST cluster {c:?} are not supported",
                                named.name
                            ));
                        }
                        self.referenced.insert(c.to_owned());
                    }
                    (named, Protocol::Tcp, TargetSpec::L4(spec))
                }
            };
            // A chain named after a cluster with endpoints (Istio names both
            // `outbound|PORT||HOST`) also matches those endpoints' IPs: the control server
            // lists only service addresses in chains, so that moving an endpoint changes the
            // assignment alone, not the listener every host holds.
            let endpoints_of = matches!(
                self.clusters.get(&chain.name),
                Some(cluster::Converted::Endpoints(_))
            )
            .then(|| chain.name.clone());
            services.push(listener::service(chain, endpoints_of, protocol, target));
        }
        OutboundSpec {
            services,
            unknown_destination,
        }
    }

    /// The protocol and target of a chain that is a destination of its own; `None`: passed
    /// through like an unknown destination, or waiting for its routes.
    fn chain_target(
        &mut self,
        chain: &listener::OutboundChain,
        unknown_destination: UnknownDestination,
        routes: &BTreeMap<String, RouteTableSpec>,
        pending: &mut Vec<String>,
        p: &mut Problems<'_>,
    ) -> Option<(Protocol, TargetSpec)> {
        let (protocol, target) = match &chain.target {
            Target::Tcp(c) if self.is_original_dst(c) => {
                if unknown_destination != UnknownDestination::Passthrough {
                    p.add(format!(
                        "filter chain {:?}: TCP proxy to ORIGINAL_DST cluster {c:?} is only supported when unknown destinations pass through",
                        chain.name
                    ));
                }
                // Same as an unknown destination: passed through.
                return None;
            }
            Target::Tcp(c) => {
                self.referenced.insert(c.clone());
                (Protocol::Tcp, TargetSpec::Tcp { cluster: c.clone() })
            }
            // Grouped into L4 destinations before this.
            Target::TcpSplit(_) => return None,
            Target::Rds(name) => match routes.get(name) {
                Some(t) => (Protocol::Http1, TargetSpec::Http(t.clone())),
                None => {
                    pending.push(format!("RouteConfiguration {name:?}"));
                    return None;
                }
            },
            Target::Inline(t) => (Protocol::Http1, TargetSpec::Http(t.clone())),
        };
        if let TargetSpec::Http(t) = &target {
            for c in t
                .virtual_hosts
                .iter()
                .flat_map(|vh| &vh.routes)
                .flat_map(|r| &r.clusters)
            {
                if self.is_original_dst(&c.cluster) {
                    p.add(format!(
                        "route table {:?}: routing to ORIGINAL_DST cluster {:?} is not supported",
                        t.name, c.cluster
                    ));
                }
                self.referenced.insert(c.cluster.clone());
            }
            let mirrors = t
                .virtual_hosts
                .iter()
                .flat_map(|vh| &vh.routes)
                .flat_map(|r| &r.policy.mirrors);
            for m in mirrors {
                if self.is_original_dst(&m.cluster) {
                    p.add(format!(
                        "route table {:?}: mirroring to ORIGINAL_DST cluster {:?} is not supported",
                        t.name, m.cluster
                    ));
                }
                self.referenced.insert(m.cluster.clone());
            }
        }
        Some((protocol, target))
    }

    fn inbound(
        &mut self,
        l: &Listeners,
        listener_name: &str,
        out: &mut Vec<Rejection>,
    ) -> InboundSpec {
        let mut p = Problems::new("Listener", listener_name, out);
        if let Some(c) = &l.inbound_default
            && !self.is_empty(c)
        {
            p.add(format!(
                "default_filter_chain: TCP proxy to {c:?} is not supported (unknown inbound ports are refused)"
            ));
        }
        let mut ports = Vec::new();
        for (port, (mode, target)) in listener::inbound_ports(&l.inbound, &mut p) {
            let at = format!("port {port}");
            let (cluster, http) = match &target {
                Target::Tcp(c) => (Some(c.clone()), false),
                Target::TcpSplit(_) => (None, false),
                Target::Inline(t) => (single_cluster(t), true),
                Target::Rds(_) => (None, true),
            };
            let Some(cluster) = cluster else {
                p.add(format!(
                    "{at}: inbound must be a TCP proxy to one cluster, or HTTP with one route \"/\" to one cluster, inline"
                ));
                continue;
            };
            let app = match self.clusters.get(&cluster) {
                Some(cluster::Converted::Endpoints(c)) => match c.endpoints.as_slice() {
                    [e] if e.address.ip().is_loopback() => {
                        Some((e.address.port(), c.http2, c.max_requests_per_connection))
                    }
                    _ => None,
                },
                _ => None,
            };
            let Some((app_port, http2, max_requests_per_connection)) = app else {
                p.add(format!(
                    "{at}: cluster {cluster:?} must be STATIC with one loopback endpoint (the application)"
                ));
                continue;
            };
            let protocol = match (http, http2) {
                (false, _) => Protocol::Tcp,
                (true, true) => Protocol::Http2,
                (true, false) => Protocol::Http1,
            };
            ports.push(InboundPortSpec {
                port,
                app_port,
                protocol,
                mode: Some(mode),
                max_requests_per_connection,
            });
        }
        InboundSpec {
            default_mode: Default::default(),
            ports,
        }
    }
}

/// The cluster of a table that sends everything to one cluster.
fn single_cluster(t: &RouteTableSpec) -> Option<String> {
    let [vh] = t.virtual_hosts.as_slice() else {
        return None;
    };
    let [r] = vh.routes.as_slice() else {
        return None;
    };
    let [c] = r.clusters.as_slice() else {
        return None;
    };
    let all = matches!(&r.path, PathMatchSpec::Prefix(p) if p == "/");
    (vh.domains.iter().any(|d| d == "*") && all && r.headers.is_empty() && c.weight > 0)
        .then(|| c.cluster.clone())
}

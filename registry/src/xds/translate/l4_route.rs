//! `VirtualService` `tls` and `tcp` routes → filter chains of `virtualOutbound` for one
//! non-HTTP service port, as Istio builds them for a sidecar:
//!
//! - on a `TLS`/`HTTPS` port, each `tls[].match[]` for this port is a chain matching its
//!   `sniHosts` (`filter_chain_match.server_names`, read by the `tls_inspector` listener
//!   filter) at its `destinationSubnets` or else the service's addresses; the client's TLS is
//!   passed through, never terminated;
//! - then each `tcp[].match[]` for this port (TCP routes apply to TLS ports too, for
//!   connections no TLS route takes) is a chain at its `destinationSubnets` or the service's
//!   addresses; a `tcp` route without `match` takes everything left, and routes after it are
//!   never reached;
//! - a chain at the service's addresses without server names goes to `outbound|PORT||HOST`
//!   when no route made one;
//! - each chain's TCP proxy sends to one cluster, or to `weighted_clusters` by the routes'
//!   weights (zero weights dropped). Destinations are named as HTTP routes name them.
//!
//! The first chain for a (subnets, server names) pair wins, as Istio drops later duplicates.
//! Not translated: matches with `sourceLabels`, `sourceNamespace`, `sourceSubnet` or
//! `gateways` other than `mesh` (per-source routing; such a match never applies), and
//! `destinationSubnets` wider than one address (the proxy matches single addresses only).

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight},
};
use envoy_types::util::pack_any;

use super::names::{self, TCP_PROXY};
use super::proto::{cidr, network_filter, u32_value};
use super::view::View;
use crate::model::config::{ServicePort, VirtualService};
use crate::model::istio::networking::RouteDestination;
use crate::model::{PortNumber, Protocol, Service};

/// The chains of one service port; `own` are the service's addresses this port claimed.
pub fn chains(
    view: &View<'_>,
    service: &Service,
    port: &ServicePort,
    own: &[CidrRange],
) -> Vec<FilterChain> {
    let host = service.hostname.as_str();
    let cluster = names::outbound_cluster(port.number, None, host);
    let mut out = Chains {
        cluster: cluster.clone(),
        port: port.number,
        own: own.to_vec(),
        seen: BTreeSet::new(),
        chains: Vec::new(),
    };
    if let Some(vs) = view.virtual_service(host) {
        if matches!(port.protocol, Protocol::Tls | Protocol::Https) {
            for (i, r) in vs.spec.tls.iter().enumerate() {
                let Some(filter) = out.filter(view, vs, &r.route) else {
                    continue;
                };
                for (j, m) in r.matches.iter().enumerate() {
                    let mesh = m.gateways.iter().all(|g| g == "mesh");
                    let per_source = !m.source_labels.is_empty() || m.source_namespace.is_some();
                    if !out.for_port(m.port) || !mesh || per_source {
                        continue;
                    }
                    let name = format!("{cluster}|tls[{i}].match[{j}]");
                    out.push(name, &m.destination_subnets, &m.sni_hosts, &filter);
                }
            }
        }
        for (i, r) in vs.spec.tcp.iter().enumerate() {
            let Some(filter) = out.filter(view, vs, &r.route) else {
                continue;
            };
            if r.matches.is_empty() {
                out.push(cluster.clone(), &[], &[], &filter);
                break;
            }
            for (j, m) in r.matches.iter().enumerate() {
                let mesh = m.gateways.iter().all(|g| g == "mesh");
                let per_source = !m.source_labels.is_empty()
                    || m.source_namespace.is_some()
                    || m.source_subnet.is_some();
                if !out.for_port(m.port) || !mesh || per_source {
                    continue;
                }
                let name = format!("{cluster}|tcp[{i}].match[{j}]");
                out.push(name, &m.destination_subnets, &[], &filter);
            }
        }
    }
    let default = tcp_proxy(&cluster, vec![(cluster.clone(), 1)]);
    out.push(cluster.clone(), &[], &[], &default);
    out.chains
}

/// What a chain matches: its subnets (address, prefix length) and server names.
type ChainKey = (Vec<(String, u32)>, Vec<String>);

struct Chains {
    cluster: String,
    port: PortNumber,
    own: Vec<CidrRange>,
    /// (subnets, server names) already matched by a chain.
    seen: BTreeSet<ChainKey>,
    chains: Vec<FilterChain>,
}

impl Chains {
    fn for_port(&self, port: Option<u32>) -> bool {
        port.is_none_or(|p| p == u32::from(self.port.get()))
    }

    fn filter(
        &self,
        view: &View<'_>,
        vs: &VirtualService,
        route: &[RouteDestination],
    ) -> Option<Filter> {
        let mut clusters: Vec<(String, u32)> = route
            .iter()
            .filter_map(|d| {
                let name = destination_cluster(view, vs, d, self.port)?;
                Some((
                    name,
                    d.weight.map_or(100, |w| u32::try_from(w).unwrap_or(0)),
                ))
            })
            .collect();
        if clusters.len() > 1 {
            clusters.retain(|(_, w)| *w > 0);
        }
        (!clusters.is_empty()).then(|| tcp_proxy(&self.cluster, clusters))
    }

    /// A chain at `subnets` (the service's own addresses when empty) for `server_names`,
    /// unless an earlier chain matches the same.
    fn push(&mut self, name: String, subnets: &[String], server_names: &[String], filter: &Filter) {
        let ranges: Vec<CidrRange> = if subnets.is_empty() {
            self.own.clone()
        } else {
            let ranges: Vec<CidrRange> = subnets.iter().filter_map(|s| cidr(s)).collect();
            let single = |r: &CidrRange| {
                let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
                len == if r.address_prefix.contains(':') {
                    128
                } else {
                    32
                }
            };
            if ranges.len() != subnets.len() || !ranges.iter().all(single) {
                tracing::debug!(
                    name,
                    ?subnets,
                    "destinationSubnets wider than one address are not translated yet"
                );
                return;
            }
            ranges
        };
        let key: ChainKey = (
            ranges
                .iter()
                .map(|r| {
                    let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
                    (r.address_prefix.clone(), len)
                })
                .collect(),
            server_names.to_vec(),
        );
        if !self.seen.insert(key) {
            return;
        }
        // The chain at the service's own addresses without server names carries the cluster's
        // name, so the proxy also routes clients that dial an endpoint directly.
        let name = if subnets.is_empty() && server_names.is_empty() {
            self.cluster.clone()
        } else {
            name
        };
        self.chains.push(FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                destination_port: u32_value(u32::from(self.port.get())),
                prefix_ranges: ranges,
                server_names: server_names.to_vec(),
                ..Default::default()
            }),
            filters: vec![filter.clone()],
            name,
            ..Default::default()
        });
    }
}

/// The cluster of a `tls`/`tcp` route destination: its host qualified in the
/// `VirtualService`'s namespace, its port (else the host's only port, else this port), its
/// subset.
fn destination_cluster(
    view: &View<'_>,
    vs: &VirtualService,
    d: &RouteDestination,
    port: PortNumber,
) -> Option<String> {
    super::route::destination_cluster(view, vs, d.destination.as_ref()?, port)
}

/// A TCP proxy to one cluster, or to several by weight.
fn tcp_proxy(stat_prefix: &str, mut clusters: Vec<(String, u32)>) -> Filter {
    let specifier = if clusters.len() == 1 {
        ClusterSpecifier::Cluster(clusters.remove(0).0)
    } else {
        ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(|(name, weight)| ClusterWeight {
                    name,
                    weight,
                    ..Default::default()
                })
                .collect(),
        })
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(specifier),
        ..Default::default()
    };
    network_filter(TCP_PROXY, pack_any(proxy))
}

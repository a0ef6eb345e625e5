//! `Listener` → outbound services and inbound ports.
//!
//! Outbound (`traffic_direction: OUTBOUND`, Istio's `virtualOutbound`): each filter chain is a
//! service, matched by `destination_port` and exact `prefix_ranges` (/32, /128), and also by
//! the endpoint IPs (at the same ports) of the cluster the chain is named after, so that a
//! client dialling an endpoint directly is routed as the service; its one filter is the HTTP
//! connection manager (routes by RDS or inline, router filter only) or a TCP proxy to one
//! cluster or to `weighted_clusters`. Chains with `server_names` (TCP proxies only) are TLS
//! routes: chains with the same addresses become one destination whose connections are told
//! apart by the `ClientHello`'s server name (see `config::l4`). The default chain's TCP proxy says what happens to unknown
//! destinations: an `ORIGINAL_DST` cluster passes through, a cluster without endpoints
//! refuses.
//!
//! Inbound (`INBOUND`, `virtualInbound`): chains by `destination_port` and
//! `transport_protocol`: `tls` with a `DownstreamTlsContext` alone is STRICT, with a
//! `raw_buffer` twin PERMISSIVE. Each sends to a `STATIC` cluster with one loopback endpoint,
//! whose port is the application's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{ClusterSpecifier, WeightedCluster},
};
use prost::Name;

use super::super::wire::{Problems, set_fields, unpack};
use super::tls::{Socket, socket};
use crate::config::spec::{RouteTableSpec, ServiceSpec, TargetSpec};
use crate::config::{MtlsMode, Protocol};

const LISTENER_FILTERS: [&str; 3] = [
    "envoy.filters.listener.tls_inspector",
    "envoy.filters.listener.original_dst",
    "envoy.filters.listener.http_inspector",
];

/// What a chain's filter does.
#[derive(Debug, Clone)]
pub enum Target {
    /// HTTP with routes by RDS (the name) or inline.
    Rds(String),
    Inline(RouteTableSpec),
    Tcp(String),
    /// A TCP proxy's `weighted_clusters`: (cluster, weight).
    TcpSplit(Vec<(String, u32)>),
}

/// One outbound chain.
#[derive(Debug, Clone)]
pub struct OutboundChain {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    /// `filter_chain_match.server_names`: the chain takes only TLS connections asking for
    /// one of these (read by the `tls_inspector`).
    pub server_names: Vec<String>,
    pub target: Target,
}

/// One inbound chain.
#[derive(Debug, Clone)]
pub struct InboundChain {
    pub name: String,
    pub port: u16,
    pub tls: bool,
    pub target: Target,
}

/// Everything the listeners hold, before cross-checks with clusters and routes.
#[derive(Debug, Default)]
pub struct Listeners {
    pub outbound: Vec<OutboundChain>,
    /// The outbound default chain's cluster (unknown destinations), if any.
    pub outbound_default: Option<String>,
    pub inbound: Vec<InboundChain>,
    /// The inbound default chain's cluster, if any.
    pub inbound_default: Option<String>,
}

pub fn convert(l: &Listener, trust_domain: &str, p: &mut Problems<'_>, out: &mut Listeners) {
    let mut l = l.clone();
    let direction = TrafficDirection::try_from(l.traffic_direction).ok();
    l.traffic_direction = 0;
    // The agent binds its own ports and always restores the original destination.
    l.name.clear();
    l.address = None;
    l.use_original_dst = None;
    l.continue_on_listener_filters_timeout = false;
    l.listener_filters_timeout = None;
    l.metadata = None;
    l.stat_prefix.clear();
    for (i, f) in std::mem::take(&mut l.listener_filters)
        .into_iter()
        .enumerate()
    {
        let known = LISTENER_FILTERS.contains(&f.name.as_str())
            && matches!(
                f.config_type,
                None | Some(listener_filter::ConfigType::TypedConfig(_))
            )
            && f.filter_disabled.is_none();
        if !known {
            p.add(format!(
                "listener_filters[{i}] {:?} is not supported",
                f.name
            ));
        }
    }
    let chains = std::mem::take(&mut l.filter_chains);
    let default = l.default_filter_chain.take();
    p.leftover("", &l);
    let inbound = match direction {
        Some(TrafficDirection::Outbound) => false,
        Some(TrafficDirection::Inbound) => true,
        _ => {
            p.add("traffic_direction must be OUTBOUND or INBOUND");
            return;
        }
    };
    for (i, chain) in chains.into_iter().enumerate() {
        let at = format!("filter_chains[{i}] ({:?})", chain.name);
        chain_of(chain, inbound, trust_domain, &at, p, out);
    }
    if let Some(mut chain) = default {
        let at = format!("default_filter_chain ({:?})", chain.name);
        chain.name.clear();
        chain.metadata = None;
        let filters = std::mem::take(&mut chain.filters);
        p.leftover(&at, &chain);
        let cluster = match one_filter(filters, &at, p) {
            Some(Target::Tcp(c)) => Some(c),
            Some(_) => {
                p.add(format!("{at}: only a TCP proxy is supported"));
                None
            }
            None => None,
        };
        if inbound {
            out.inbound_default = cluster;
        } else {
            out.outbound_default = cluster;
        }
    }
}

fn chain_of(
    mut chain: FilterChain,
    inbound: bool,
    trust_domain: &str,
    at: &str,
    p: &mut Problems<'_>,
    out: &mut Listeners,
) {
    let before = p.count();
    let name = std::mem::take(&mut chain.name);
    chain.metadata = None;
    let mut m = chain.filter_chain_match.take().unwrap_or_default();
    let filters = std::mem::take(&mut chain.filters);
    let ts = chain.transport_socket.take();
    p.leftover(at, &chain);
    let target = one_filter(filters, at, p);

    let port = m.destination_port.take().map(|v| v.value);
    let port = match port.map(u16::try_from) {
        Some(Ok(port)) if port != 0 => Some(port),
        _ => {
            p.add(format!(
                "{at}: filter_chain_match.destination_port is required (1-65535)"
            ));
            None
        }
    };
    let transport = std::mem::take(&mut m.transport_protocol);
    let server_names = std::mem::take(&mut m.server_names);
    let ranges = std::mem::take(&mut m.prefix_ranges);
    let mut ips = Vec::new();
    for r in &ranges {
        let ip = r.address_prefix.parse::<IpAddr>().ok();
        let len = r.prefix_len.as_ref().map_or(0, |v| v.value);
        match ip {
            Some(ip) if len == if ip.is_ipv4() { 32 } else { 128 } => ips.push(ip),
            _ => p.add(format!(
                "{at}: prefix_ranges {}/{len} is not supported (only single addresses)",
                r.address_prefix
            )),
        }
    }
    // source_type ANY is 0.
    p.leftover(&format!("{at}.filter_chain_match"), &m);

    let tls = match ts {
        None => false,
        Some(ts) => match socket(&ts, trust_domain, &format!("{at}.transport_socket"), p) {
            Some(Socket::Downstream) if inbound => true,
            Some(Socket::Plaintext) => false,
            _ => {
                p.add(format!(
                    "{at}: transport_socket must be a DownstreamTlsContext on an inbound chain"
                ));
                false
            }
        },
    };
    let (Some(port), Some(target)) = (port, target) else {
        return;
    };
    if p.count() != before {
        return;
    }
    if inbound {
        match (transport.as_str(), tls) {
            ("tls", true) | ("raw_buffer", false) => {}
            _ => {
                p.add(format!(
                    "{at}: transport_protocol {transport:?} is not supported here (inbound chains are \"tls\" with mutual TLS, or \"raw_buffer\" beside one)"
                ));
                return;
            }
        }
        if !ranges.is_empty() || !server_names.is_empty() {
            p.add(format!(
                "{at}: prefix_ranges and server_names on an inbound chain are not supported"
            ));
            return;
        }
        out.inbound.push(InboundChain {
            name,
            port,
            tls,
            target,
        });
    } else {
        if !transport.is_empty() {
            p.add(format!(
                "{at}: filter_chain_match.transport_protocol is not supported on outbound chains"
            ));
        }
        if ips.is_empty() {
            p.add(format!(
                "{at}: prefix_ranges is empty; matching every address of a port is not supported"
            ));
            return;
        }
        if !server_names.is_empty() && !matches!(target, Target::Tcp(_) | Target::TcpSplit(_)) {
            p.add(format!(
                "{at}: server_names is supported on TCP proxy chains only (TLS passthrough)"
            ));
            return;
        }
        out.outbound.push(OutboundChain {
            name,
            addresses: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            server_names,
            target,
        });
    }
}

fn one_filter(filters: Vec<Filter>, at: &str, p: &mut Problems<'_>) -> Option<Target> {
    let Ok([f]) = <[Filter; 1]>::try_from(filters) else {
        p.add(format!(
            "{at}: exactly one network filter (HTTP connection manager or TCP proxy) is supported"
        ));
        return None;
    };
    let at = format!("{at}.filters[{:?}]", f.name);
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        p.add(format!("{at}: has no typed_config"));
        return None;
    };
    if any.type_url == HttpConnectionManager::type_url() {
        match unpack::<HttpConnectionManager>(any) {
            Ok(hcm) => http(hcm, &at, p),
            Err(e) => {
                p.add(format!("{at}: {e}"));
                None
            }
        }
    } else if any.type_url == TcpProxy::type_url() {
        match unpack::<TcpProxy>(any) {
            Ok(mut tcp) => {
                tcp.stat_prefix.clear();
                let target = match tcp.cluster_specifier.take() {
                    Some(ClusterSpecifier::Cluster(c)) => Some(Target::Tcp(c)),
                    Some(ClusterSpecifier::WeightedClusters(w)) => weighted(w, &at, p),
                    None => {
                        p.add(format!("{at}: has no cluster"));
                        None
                    }
                };
                p.leftover(&at, &tcp);
                target
            }
            Err(e) => {
                p.add(format!("{at}: {e}"));
                None
            }
        }
    } else {
        p.add(format!(
            "{at}: network filter {} is not supported",
            any.type_url
        ));
        None
    }
}

fn weighted(w: WeightedCluster, at: &str, p: &mut Problems<'_>) -> Option<Target> {
    let mut out = Vec::new();
    for (i, mut c) in w.clusters.into_iter().enumerate() {
        out.push((std::mem::take(&mut c.name), std::mem::take(&mut c.weight)));
        p.leftover(&format!("{at}.weighted_clusters.clusters[{i}]"), &c);
    }
    if out.iter().all(|(_, w)| *w == 0) {
        p.add(format!(
            "{at}: weighted_clusters has no cluster with a weight above 0"
        ));
        return None;
    }
    Some(Target::TcpSplit(out))
}

fn http(mut hcm: HttpConnectionManager, at: &str, p: &mut Problems<'_>) -> Option<Target> {
    // The proxy detects HTTP/1.1 and HTTP/2 itself and replaces X-Forwarded-Client-Cert with
    // its own (inbound, over mutual TLS); these settings describe the same or are cosmetic.
    hcm.codec_type = 0;
    hcm.stat_prefix.clear();
    hcm.server_header_transformation = 0;
    hcm.forward_client_cert_details = 0;
    hcm.set_current_client_cert_details = None;
    hcm.path_with_escaped_slashes_action = 0;
    for f in std::mem::take(&mut hcm.http_filters) {
        let router = matches!(&f.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == Router::type_url());
        // The fault filter without faults of its own: routes configure it.
        let fault = matches!(&f.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == HttpFault::type_url() && a.value.is_empty());
        // The local rate limit filter with no bucket of its own: virtual hosts configure it.
        let rate_limit = matches!(&f.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == LocalRateLimit::type_url()
            && unpack::<LocalRateLimit>(a).is_ok_and(|mut l| { l.stat_prefix.clear(); set_fields(&l).is_empty() }));
        // The CORS filter with no policy of its own: routes configure it.
        let cors = matches!(&f.config_type, Some(http_filter::ConfigType::TypedConfig(a)) if a.type_url == Cors::type_url() && a.value.is_empty());
        if !router && !fault && !rate_limit && !cors {
            p.add(format!(
                "{at}: http_filters {:?} is not supported (only the router, and the CORS, fault and local rate limit filters configured per route or virtual host)",
                f.name
            ));
        }
    }
    let target = match hcm.route_specifier.take() {
        Some(RouteSpecifier::Rds(rds)) => Some(Target::Rds(rds.route_config_name)),
        Some(RouteSpecifier::RouteConfig(rc)) => inline(&rc, at, p).map(Target::Inline),
        _ => {
            p.add(format!("{at}: route_specifier must be rds or route_config"));
            None
        }
    };
    p.leftover(at, &hcm);
    target
}

fn inline(rc: &RouteConfiguration, at: &str, p: &mut Problems<'_>) -> Option<RouteTableSpec> {
    let before = p.count();
    let mut sub = Vec::new();
    let table = super::route::table(rc, &mut Problems::new("route_config", &rc.name, &mut sub));
    for r in sub {
        p.add(format!("{at}.{} {:?}: {}", r.kind, r.name, r.problem));
    }
    table.filter(|_| p.count() == before)
}

/// Inbound chains grouped by port, with their mode: STRICT (tls only) or PERMISSIVE (tls and
/// raw_buffer to the same target).
pub fn inbound_ports(
    chains: &[InboundChain],
    p: &mut Problems<'_>,
) -> BTreeMap<u16, (MtlsMode, Target)> {
    let mut by_port: BTreeMap<u16, Vec<&InboundChain>> = BTreeMap::new();
    for c in chains {
        by_port.entry(c.port).or_default().push(c);
    }
    let mut out = BTreeMap::new();
    for (port, chains) in by_port {
        let tls = chains.iter().filter(|c| c.tls).count();
        let plain = chains.len() - tls;
        let mode = match (tls, plain) {
            (1, 0) => MtlsMode::Strict,
            (1, 1) => MtlsMode::Permissive,
            _ => {
                p.add(format!(
                    "port {port}: {tls} mutual TLS and {plain} plaintext chains; supported are one \"tls\" chain (STRICT) or one of each (PERMISSIVE)"
                ));
                continue;
            }
        };
        let same = chains
            .windows(2)
            .all(|w| same_target(&w[0].target, &w[1].target));
        if !same {
            p.add(format!(
                "port {port}: the mutual TLS and plaintext chains send to different places"
            ));
            continue;
        }
        out.insert(port, (mode, chains[0].target.clone()));
    }
    out
}

fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Tcp(x), Target::Tcp(y)) | (Target::Rds(x), Target::Rds(y)) => x == y,
        (Target::TcpSplit(x), Target::TcpSplit(y)) => x == y,
        (Target::Inline(x), Target::Inline(y)) => format!("{x:?}") == format!("{y:?}"),
        _ => false,
    }
}

/// An outbound service for a chain; `endpoints_of` names the cluster whose endpoint IPs
/// also reach it.
pub fn service(
    chain: &OutboundChain,
    endpoints_of: Option<String>,
    protocol: Protocol,
    target: TargetSpec,
) -> ServiceSpec {
    ServiceSpec {
        name: chain.name.clone(),
        addresses: chain.addresses.clone(),
        endpoints_of,
        protocol,
        target,
    }
}

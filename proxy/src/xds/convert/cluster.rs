//! `Cluster` and `ClusterLoadAssignment` → [`ClusterSpec`].
//!
//! Discovery: `EDS` over ADS (endpoints from the assignment named by `service_name`),
//! `STATIC`, `STRICT_DNS` and `LOGICAL_DNS` with IP literals inline (host names would need
//! resolution, not implemented), `ORIGINAL_DST` (only as the passthrough target of a default
//! filter chain). Load balancing: round robin, least request, random. Security: the cluster's
//! `transport_socket` and, per endpoint, the first `transport_socket_matches` entry whose
//! `match` is contained in the endpoint's `envoy.transport_socket_match` metadata.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HealthStatus, address, config_source::ConfigSourceSpecifier, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{UpstreamProtocolOptions, explicit_http_config::ProtocolConfig},
};
use envoy_types::pb::google::protobuf::{Struct, Value};
use prost::Name;

use super::super::wire::{Problems, Rejection, unpack};
use super::tls::{Socket, socket};
use crate::config::LbPolicy as ProxyLb;
use crate::config::spec::{ClusterSpec, EndpointSpec, UpstreamTlsSpec};

const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// What a cluster turned into.
// One per cluster per push, held briefly: a box would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Converted {
    Endpoints(ClusterSpec),
    /// `ORIGINAL_DST`: to wherever the client was going.
    OriginalDst,
}

/// An EDS cluster's assignment, when it has arrived.
pub type Assignments<'a> = &'a dyn Fn(&str) -> Option<&'a ClusterLoadAssignment>;

/// Converts one cluster (its deprecated DNS fields are cleared: only IP literals are
/// accepted, so they change nothing). `pending` receives the assignment name an EDS cluster still waits
/// for.
#[allow(deprecated)]
pub fn convert(
    cluster: &Cluster,
    assignments: Assignments<'_>,
    trust_domain: &str,
    out: &mut Vec<Rejection>,
    pending: &mut Vec<String>,
) -> Option<Converted> {
    let mut c = cluster.clone();
    let name = std::mem::take(&mut c.name);
    let mut p = Problems::new("Cluster", &name, out);
    let before = p.count();

    let kind = match c.cluster_discovery_type.take() {
        None => DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(t)) => match DiscoveryType::try_from(t) {
            Ok(t) => t,
            Err(_) => {
                p.add(format!("type {t} is not a discovery type"));
                return None;
            }
        },
        Some(ClusterDiscoveryType::ClusterType(ct)) => {
            p.add(format!("cluster_type {:?} is not supported", ct.name));
            return None;
        }
    };
    let lb = std::mem::take(&mut c.lb_policy);
    let lb = match (LbPolicy::try_from(lb), kind) {
        (Ok(LbPolicy::ClusterProvided), DiscoveryType::OriginalDst) => ProxyLb::RoundRobin,
        (Ok(LbPolicy::RoundRobin), _) => ProxyLb::RoundRobin,
        (Ok(LbPolicy::LeastRequest), _) => ProxyLb::LeastRequest,
        (Ok(LbPolicy::Random), _) => ProxyLb::Random,
        (Ok(other), _) => {
            p.add(format!(
                "lb_policy {} is not supported",
                other.as_str_name()
            ));
            ProxyLb::RoundRobin
        }
        (Err(_), _) => {
            p.add(format!("lb_policy {lb} is not a load-balancing policy"));
            ProxyLb::RoundRobin
        }
    };
    let connect_timeout = c.connect_timeout.take().and_then(|d| {
        let d = duration(&d);
        if d.is_none() {
            p.add("connect_timeout is negative or out of range");
        }
        d
    });
    let http2 = protocol_options(&mut c, &mut p);
    let thresholds = super::cluster_resilience::thresholds(&mut c, &mut p);
    let outlier = super::cluster_resilience::outlier(&mut c, &mut p);

    let tls = match c.transport_socket.take() {
        None => UpstreamTlsSpec::Plaintext,
        Some(ts) => upstream_socket(&ts, trust_domain, "transport_socket", &mut p)
            .unwrap_or(UpstreamTlsSpec::Plaintext),
    };
    let mut matches = Vec::new();
    for (i, m) in std::mem::take(&mut c.transport_socket_matches)
        .into_iter()
        .enumerate()
    {
        let at = format!("transport_socket_matches[{i}] ({:?})", m.name);
        let Some(ts) = &m.transport_socket else {
            p.add(format!("{at}: has no transport_socket"));
            continue;
        };
        if let Some(spec) = upstream_socket(ts, trust_domain, &at, &mut p) {
            matches.push((m.r#match.unwrap_or_default(), spec));
        }
    }

    let fallback = super::route_l7::fallback(&mut c, &mut p);
    // Harmless here: names for stats, metadata, DNS settings (only IP literals are accepted).
    c.alt_stat_name.clear();
    c.metadata = None;
    c.dns_lookup_family = 0;
    c.dns_refresh_rate = None;
    c.respect_dns_ttl = false;
    c.dns_jitter = None;

    let inline = c.load_assignment.take();
    let eds = c.eds_cluster_config.take();
    p.leftover("", &c);

    let endpoints = match kind {
        DiscoveryType::OriginalDst => {
            if inline.is_some() {
                p.add("ORIGINAL_DST with a load_assignment is not supported");
            }
            return (p.count() == before).then_some(Converted::OriginalDst);
        }
        DiscoveryType::Static | DiscoveryType::StrictDns | DiscoveryType::LogicalDns => {
            let cla = inline.unwrap_or_default();
            endpoints(&cla, &tls, &matches, "load_assignment", &mut p)
        }
        DiscoveryType::Eds => {
            if inline.is_some() {
                p.add("EDS with an inline load_assignment is not supported");
            }
            let eds = eds.unwrap_or_default();
            let via_ads = matches!(
                eds.eds_config
                    .as_ref()
                    .and_then(|s| s.config_source_specifier.as_ref()),
                Some(ConfigSourceSpecifier::Ads(_))
            );
            if !via_ads {
                p.add("eds_cluster_config.eds_config must be ADS");
            }
            let service = if eds.service_name.is_empty() {
                name.clone()
            } else {
                eds.service_name.clone()
            };
            match assignments(&service) {
                Some(cla) => {
                    let mut cp = p.other("ClusterLoadAssignment", &service);
                    endpoints(cla, &tls, &matches, "", &mut cp)
                }
                None => {
                    pending.push(format!("ClusterLoadAssignment {service:?}"));
                    Vec::new()
                }
            }
        }
    };
    if p.count() != before {
        return None;
    }
    Some(Converted::Endpoints(ClusterSpec {
        name,
        endpoints,
        lb,
        tls,
        connect_timeout,
        http2,
        thresholds,
        outlier,
        fallback,
    }))
}

fn upstream_socket(
    ts: &envoy_types::pb::envoy::config::core::v3::TransportSocket,
    trust_domain: &str,
    at: &str,
    p: &mut Problems<'_>,
) -> Option<UpstreamTlsSpec> {
    match socket(ts, trust_domain, at, p)? {
        Socket::Plaintext => Some(UpstreamTlsSpec::Plaintext),
        Socket::Upstream(spec) => Some(spec),
        Socket::Downstream => {
            p.add(format!("{at}: a DownstreamTlsContext on a cluster"));
            None
        }
    }
}

/// `typed_extension_protocol_options`: explicit HTTP/1.1 or HTTP/2 only.
fn protocol_options(c: &mut Cluster, p: &mut Problems<'_>) -> bool {
    let mut http2 = false;
    for (key, any) in std::mem::take(&mut c.typed_extension_protocol_options) {
        let at = format!("typed_extension_protocol_options[{key:?}]");
        if any.type_url != HttpProtocolOptions::type_url() {
            p.add(format!("{at}: {} is not supported", any.type_url));
            continue;
        }
        let mut opts = match unpack::<HttpProtocolOptions>(&any) {
            Ok(o) => o,
            Err(e) => {
                p.add(format!("{at}: {e}"));
                continue;
            }
        };
        match opts.upstream_protocol_options.take() {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match e.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                    http2 = true;
                    p.leftover(&format!("{at}.http2_protocol_options"), &h2);
                }
                Some(ProtocolConfig::HttpProtocolOptions(h1)) => {
                    p.leftover(&format!("{at}.http_protocol_options"), &h1);
                }
                _ => p.add(format!(
                    "{at}: only explicit HTTP/1.1 or HTTP/2 is supported"
                )),
            },
            _ => p.add(format!(
                "{at}: upstream_protocol_options must be explicit HTTP/1.1 or HTTP/2"
            )),
        }
        p.leftover(&at, &opts);
    }
    http2
}

/// The endpoints of an assignment (unhealthy and draining ones left out, as Envoy does).
fn endpoints(
    cla: &ClusterLoadAssignment,
    default_tls: &UpstreamTlsSpec,
    matches: &[(Struct, UpstreamTlsSpec)],
    at: &str,
    p: &mut Problems<'_>,
) -> Vec<EndpointSpec> {
    let prefix = if at.is_empty() {
        String::new()
    } else {
        format!("{at}.")
    };
    let mut out = Vec::new();
    if !cla.named_endpoints.is_empty() {
        p.add(format!("{prefix}named_endpoints is not supported"));
    }
    for (li, locality) in cla.endpoints.iter().enumerate() {
        if locality.priority != 0 {
            p.add(format!(
                "{prefix}endpoints[{li}].priority {} is not supported (no failover between priorities)",
                locality.priority
            ));
        }
        for (ei, e) in locality.lb_endpoints.iter().enumerate() {
            let at = format!("{prefix}endpoints[{li}].lb_endpoints[{ei}]");
            let health = HealthStatus::try_from(e.health_status).unwrap_or(HealthStatus::Unknown);
            if matches!(
                health,
                HealthStatus::Unhealthy | HealthStatus::Draining | HealthStatus::Timeout
            ) {
                continue;
            }
            let address = match &e.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                    socket_addr(ep.address.as_ref(), &at, p)
                }
                _ => {
                    p.add(format!(
                        "{at}: only an endpoint with an address is supported"
                    ));
                    None
                }
            };
            let weight = e.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            let meta = e
                .metadata
                .as_ref()
                .and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH));
            let tls = matches
                .iter()
                .find(|(m, _)| contains(meta, m))
                .map(|(_, t)| t.clone())
                .or_else(|| (!matches.is_empty()).then(|| default_tls.clone()));
            if let Some(address) = address {
                out.push(EndpointSpec {
                    address,
                    weight,
                    labels: BTreeMap::new(),
                    tls,
                });
            }
        }
    }
    out
}

/// Does the endpoint's metadata hold every field of `want`?
fn contains(meta: Option<&Struct>, want: &Struct) -> bool {
    want.fields.iter().all(|(k, v)| {
        meta.and_then(|m| m.fields.get(k))
            .is_some_and(|have: &Value| have == v)
    })
}

/// An IP literal and a port; host names, pipes and named ports are rejected.
pub fn socket_addr(a: Option<&Address>, at: &str, p: &mut Problems<'_>) -> Option<SocketAddr> {
    let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) else {
        p.add(format!("{at}: only a TCP socket address is supported"));
        return None;
    };
    if sa.protocol != 0 || !sa.resolver_name.is_empty() {
        p.add(format!(
            "{at}: protocol UDP or a custom resolver is not supported"
        ));
        return None;
    }
    let Ok(ip) = sa.address.parse::<IpAddr>() else {
        p.add(format!(
            "{at}: address {:?} is not an IP address (DNS resolution is not supported)",
            sa.address
        ));
        return None;
    };
    match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(port)) => match u16::try_from(port) {
            Ok(port) => Some(SocketAddr::new(ip, port)),
            Err(_) => {
                p.add(format!("{at}: port {port} is out of range"));
                None
            }
        },
        _ => {
            p.add(format!("{at}: a named port is not supported"));
            None
        }
    }
}

/// A protobuf duration as a std one; `None` when negative.
pub fn duration(d: &envoy_types::pb::google::protobuf::Duration) -> Option<Duration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, 0) + Duration::from_nanos(u64::from(nanos)))
}

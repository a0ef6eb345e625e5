//! The outbound listener `virtualOutbound` on `0.0.0.0:15001` (original destination
//! restored): one filter chain per service port, matched on the destination port and the
//! service's addresses (declared or allocated). HTTP-family ports go to the HTTP connection
//! manager with RDS (route configuration named by the port number); the others to TCP
//! proxies: `outbound|PORT||HOST`, or the `VirtualService`'s `tls` and `tcp` routes
//! ([`l4_route`]; with `tls` routes the listener gets the `tls_inspector`). Everything else takes the default chain: `PassthroughCluster`
//! under `ALLOW_ANY`, `BlackHoleCluster` under `REGISTRY_ONLY`.
//!
//! Endpoint IPs are not in the chains of a service that has an address: the proxy matches a
//! connection to an endpoint's IP (at the service port) to the chain named after the
//! endpoint's cluster, from the assignments it holds. So moving an endpoint changes one
//! `ClusterLoadAssignment`, never this listener, which every node holds. Only a service port
//! with no address at all (`NONE` resolution or a wildcard host) is matched on its endpoint
//! IPs here.
//!
//! A destination (address and port) belongs to one chain only: when two services claim the
//! same one, the first host in sorted order keeps it. A service port with nothing to match
//! (no address and no endpoint IP) gets no chain.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::util::pack_any;

use super::OutboundPolicy;
use super::filters::{http_rds, tcp_proxy};
use super::l4_route;
use super::names::{
    self, BLACKHOLE_CLUSTER, OUTBOUND_LISTENER, OUTBOUND_PORT, PASSTHROUGH_CLUSTER, TLS_INSPECTOR,
};
use super::proto::{bool_value, cidr, socket_address, u32_value};
use super::view::View;
use crate::model::Protocol;
use crate::model::config::Address;

pub fn listener(view: &View<'_>) -> Listener {
    let mut claimed: BTreeSet<(String, u32, u16)> = BTreeSet::new();
    let mut chains = Vec::new();
    for service in &view.services {
        let host = service.hostname.as_str();
        let declared = view.addresses(service);
        for port in service.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            let mut addresses = declared.clone();
            if addresses.is_empty() {
                addresses.extend(service.endpoints_for(port.number).filter_map(
                    |e| match &e.address {
                        Address::Ip(ip) => Some(ip.to_string()),
                        _ => None,
                    },
                ));
            }
            let ranges: Vec<CidrRange> = addresses
                .iter()
                .filter_map(|a| cidr(a))
                .filter(|r| {
                    let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
                    claimed.insert((r.address_prefix.clone(), len, port.number.get()))
                })
                .collect();
            if ranges.is_empty() {
                tracing::debug!(host, port = %port.number, "no address to match; no outbound filter chain");
                continue;
            }
            let cluster = names::outbound_cluster(port.number, None, host);
            if !port.protocol.is_http() {
                chains.extend(l4_route::chains(view, service, port, &ranges));
                continue;
            }
            let prefix = format!("outbound_0.0.0.0_{}", port.number);
            let filter = http_rds(&prefix, &names::route_config(port.number));
            chains.push(FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: u32_value(u32::from(port.number.get())),
                    prefix_ranges: ranges,
                    ..Default::default()
                }),
                filters: vec![filter],
                name: cluster,
                ..Default::default()
            });
        }
    }
    let (default_name, default_cluster) = match view.config.outbound_policy {
        OutboundPolicy::AllowAny => ("PassthroughFilterChain", PASSTHROUGH_CLUSTER),
        OutboundPolicy::RegistryOnly => ("BlackHoleFilterChain", BLACKHOLE_CLUSTER),
    };
    // TLS routes match the ClientHello's server name, which the TLS inspector reads.
    let sni = chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty())
    });
    let listener_filters = if sni {
        vec![ListenerFilter {
            name: TLS_INSPECTOR.to_owned(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                TlsInspector::default(),
            ))),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    Listener {
        name: OUTBOUND_LISTENER.to_owned(),
        listener_filters,
        address: Some(socket_address("0.0.0.0", OUTBOUND_PORT)),
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            filters: vec![tcp_proxy(default_cluster, default_cluster)],
            name: default_name.to_owned(),
            ..Default::default()
        }),
        use_original_dst: bool_value(true),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

//! Endpoints (EDS): one `ClusterLoadAssignment` per EDS cluster, endpoints grouped by
//! locality (the locality's weight is the sum of its endpoints'), each with its
//! `load_balancing_weight` and, when it speaks Istio mTLS, the metadata
//! `envoy.transport_socket_match: {tlsMode: istio}` that `transport_socket_matches` read.
//! Also the inline assignments of DNS and inbound clusters.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{Address, Locality as EnvoyLocality};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};

use super::cluster::ClusterPlan;
use super::names::{TLS_MODE_ISTIO, TLS_MODE_KEY, TRANSPORT_SOCKET_MATCH};
use super::policy::is_meshed;
use super::proto::{metadata, pipe_address, socket_address, u32_value};
use super::view::View;
use crate::model::config::Address as ModelAddress;
use crate::model::istio::networking::LocalityLbSetting;
use crate::model::types::Locality;
use crate::model::{Endpoint, PortNumber};

/// The assignment of an EDS cluster. Endpoints named by host name cannot be sent over EDS
/// and are left out (with a warning).
pub fn eds(view: &View<'_>, plan: &ClusterPlan<'_>) -> ClusterLoadAssignment {
    eds_for(view, plan, None)
}

/// [`eds`] for a client at `client` with locality load balancing: each locality group gets
/// its priority by Istio's failover rules (`super::load_balancing`). Without a client
/// locality, the groups keep priority 0 (Istio leaves such a node's assignment alone).
pub fn eds_for(
    view: &View<'_>,
    plan: &ClusterPlan<'_>,
    client: Option<(&Locality, Option<&LocalityLbSetting>)>,
) -> ClusterLoadAssignment {
    let endpoints = plan.endpoints().filter_map(|e| {
        let address = match &e.address {
            ModelAddress::Ip(ip) => socket_address(&ip.to_string(), e.port.get()),
            ModelAddress::Unix(path) => pipe_address(path),
            ModelAddress::Hostname(h) => {
                tracing::warn!(cluster = %plan.name, host = %h, "endpoint named by host name in a STATIC service; left out");
                return None;
            }
        };
        Some((e, address))
    });
    let mut cla = assignment(view, plan, &plan.name, endpoints);
    if let Some((client, setting)) = client {
        let localities: Vec<Option<Locality>> = cla
            .endpoints
            .iter()
            .map(|g| {
                g.locality.as_ref().map(|l| Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    subzone: l.sub_zone.clone(),
                })
            })
            .collect();
        let refs: Vec<Option<&Locality>> = localities.iter().map(Option::as_ref).collect();
        let priorities = super::load_balancing::locality_priorities(client, &refs, setting);
        for (group, priority) in cla.endpoints.iter_mut().zip(priorities) {
            group.priority = priority;
        }
    }
    cla
}

/// The inline assignment of a DNS cluster: the endpoints' addresses (names or IPs), or the
/// service's host itself on the service port when it has none.
pub fn dns_load_assignment(
    view: &View<'_>,
    plan: &ClusterPlan<'_>,
    first_only: bool,
) -> ClusterLoadAssignment {
    let mut endpoints: Vec<(&Endpoint, Address)> = plan
        .endpoints()
        .filter_map(|e| match &e.address {
            ModelAddress::Ip(ip) => Some((e, socket_address(&ip.to_string(), e.port.get()))),
            ModelAddress::Hostname(h) => Some((e, socket_address(h.as_str(), e.port.get()))),
            ModelAddress::Unix(_) => None,
        })
        .collect();
    if first_only {
        endpoints.truncate(1);
    }
    if endpoints.is_empty() && !plan.service.hostname.is_wildcard() && plan.subset.is_none() {
        let address = socket_address(plan.service.hostname.as_str(), plan.port.number.get());
        return ClusterLoadAssignment {
            cluster_name: plan.name.clone(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(address, 1, false)],
                load_balancing_weight: u32_value(1),
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    assignment(view, plan, &plan.name, endpoints.into_iter())
}

/// `127.0.0.1:PORT`, for the inbound clusters.
pub fn local_load_assignment(cluster_name: &str, port: PortNumber) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint(
                socket_address("127.0.0.1", port.get()),
                1,
                false,
            )],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn assignment<'a>(
    view: &View<'_>,
    plan: &ClusterPlan<'_>,
    cluster_name: &str,
    endpoints: impl Iterator<Item = (&'a Endpoint, Address)>,
) -> ClusterLoadAssignment {
    let mut by_locality: BTreeMap<Option<&Locality>, (u32, Vec<LbEndpoint>)> = BTreeMap::new();
    for (e, address) in endpoints {
        let meshed = is_meshed(view.snapshot, plan.service, e);
        let weight = e.weight.get();
        let entry = by_locality.entry(e.locality.as_ref()).or_default();
        entry.0 = entry.0.saturating_add(weight);
        entry.1.push(lb_endpoint(address, weight, meshed));
    }
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: by_locality
            .into_iter()
            .map(|(locality, (weight, lb_endpoints))| LocalityLbEndpoints {
                locality: locality.map(|l| EnvoyLocality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    sub_zone: l.subzone.clone(),
                }),
                lb_endpoints,
                load_balancing_weight: u32_value(weight),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn lb_endpoint(address: Address, weight: u32, meshed: bool) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(address),
            ..Default::default()
        })),
        metadata: meshed.then(|| metadata(TRANSPORT_SOCKET_MATCH, TLS_MODE_KEY, TLS_MODE_ISTIO)),
        load_balancing_weight: u32_value(weight),
        ..Default::default()
    }
}

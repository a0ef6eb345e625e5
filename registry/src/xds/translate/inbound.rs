//! What depends on the node: the inbound listener `virtualInbound` on `0.0.0.0:15006`
//! (original destination restored) and the `inbound|PORT||` clusters to `127.0.0.1:PORT`.
//!
//! The node's workloads are the `WorkloadEntry`s whose address is the node's IP, or whose
//! name and namespace are the node's `WORKLOAD_NAME` and namespace (plus inline
//! `ServiceEntry` endpoints at the node's IP). Their ports are the target ports of the
//! services that select them; the protocol is the service port's (the first service in
//! sorted order wins when two disagree).
//!
//! Per port, by `PeerAuthentication` mode: `STRICT` → one chain matching
//! `transport_protocol: tls` that terminates mTLS; `PERMISSIVE` (Istio's default) → that
//! chain plus a plaintext one matching `raw_buffer` (the `tls_inspector` listener filter
//! tells them apart); `DISABLE` → one plaintext chain matching any transport. HTTP ports get
//! the HTTP connection manager with an inline route to the inbound cluster, the others a TCP
//! proxy. Connections to other ports take the default chain to `BlackHoleCluster` (the agent
//! only captures the declared ports).

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::util::pack_any;

use super::cluster;
use super::filters::{http_inline, tcp_proxy};
use super::names::{self, BLACKHOLE_CLUSTER, INBOUND_LISTENER, INBOUND_PORT, TLS_INSPECTOR};
use super::policy::peer_authentication_mode;
use super::proto::{bool_value, socket_address, u32_value};
use super::route::default_route;
use super::tls::downstream_mtls;
use super::view::View;
use crate::model::config::{Address, ConfigObject, Kind, MtlsMode, ObjectKey};
use crate::model::{Labels, Namespace, PortNumber, Protocol};
use crate::xds::NodeInfo;

/// The node's workload as the inbound side needs it.
struct NodeWorkload {
    namespace: Namespace,
    labels: Labels,
    /// Target port → protocol.
    ports: BTreeMap<PortNumber, Protocol>,
}

fn node_workload(view: &View<'_>, node: &NodeInfo) -> NodeWorkload {
    let node_ip = node.ip.map(Address::Ip);
    let mut keys = BTreeSet::new();
    let mut first: Option<(Namespace, Labels)> = None;
    for object in view.snapshot.objects() {
        let ConfigObject::WorkloadEntry(we) = object else {
            continue;
        };
        let by_ip = node_ip.is_some() && we.workload.address == node_ip;
        let by_name = node.workload_name.as_deref() == Some(we.meta.name.as_str())
            && we.meta.namespace.as_str() == node.namespace();
        if by_ip || by_name {
            keys.insert(object.key());
            first.get_or_insert_with(|| (we.meta.namespace.clone(), we.workload.labels.clone()));
        }
    }
    let mut ports = BTreeMap::new();
    for service in view.snapshot.services() {
        for e in &service.endpoints {
            let inline_here =
                e.origin.kind == Kind::ServiceEntry && node_ip.as_ref() == Some(&e.address);
            if !(keys.contains::<ObjectKey>(&e.origin) || inline_here) {
                continue;
            }
            if let Some(sp) = service.ports.iter().find(|p| p.number == e.service_port) {
                ports.entry(e.port).or_insert(sp.protocol);
            }
        }
    }
    let (namespace, labels) = first.unwrap_or_else(|| {
        (
            Namespace::new(node.namespace()).unwrap_or_else(|_| Namespace::default_namespace()),
            Labels::new(node.labels.clone()).unwrap_or_default(),
        )
    });
    NodeWorkload {
        namespace,
        labels,
        ports,
    }
}

/// The inbound listener and clusters of a node.
pub fn build(view: &View<'_>, node: &NodeInfo) -> (Listener, Vec<Cluster>) {
    let workload = node_workload(view, node);
    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    for (&port, &protocol) in workload.ports.iter().filter(|(_, p)| **p != Protocol::Udp) {
        let mode = peer_authentication_mode(
            view.snapshot,
            &workload.namespace,
            &workload.labels,
            port,
            &view.config.root_namespace,
        );
        let cluster_name = names::inbound_cluster(port);
        let filter = inbound_filter(port, protocol, &cluster_name);
        let chain = |suffix: &str, transport: &str, tls: bool| FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                destination_port: u32_value(u32::from(port.get())),
                transport_protocol: transport.to_owned(),
                ..Default::default()
            }),
            filters: vec![filter.clone()],
            transport_socket: tls.then(|| downstream_mtls(&view.config.trust_domain)),
            name: format!("{cluster_name}{suffix}"),
            ..Default::default()
        };
        if matches!(mode, MtlsMode::Strict | MtlsMode::Permissive) {
            chains.push(chain("mtls", "tls", true));
        }
        match mode {
            MtlsMode::Permissive => chains.push(chain("plaintext", "raw_buffer", false)),
            MtlsMode::Disable => chains.push(chain("plaintext", "", false)),
            MtlsMode::Strict | MtlsMode::Unset => {}
        }
        clusters.push(cluster::inbound(view, port, protocol));
    }
    let listener = Listener {
        name: INBOUND_LISTENER.to_owned(),
        address: Some(socket_address("0.0.0.0", INBOUND_PORT)),
        filter_chains: chains,
        default_filter_chain: Some(FilterChain {
            filters: vec![tcp_proxy(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
            name: "BlackHoleFilterChain".to_owned(),
            ..Default::default()
        }),
        listener_filters: vec![ListenerFilter {
            name: TLS_INSPECTOR.to_owned(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        continue_on_listener_filters_timeout: true,
        use_original_dst: bool_value(true),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    };
    (listener, clusters)
}

fn inbound_filter(port: PortNumber, protocol: Protocol, cluster_name: &str) -> Filter {
    if !protocol.is_http() {
        return tcp_proxy(cluster_name, cluster_name);
    }
    let routes = RouteConfiguration {
        name: cluster_name.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_owned()],
            routes: vec![default_route(cluster_name.to_owned())],
            ..Default::default()
        }],
        validate_clusters: bool_value(false),
        ..Default::default()
    };
    http_inline(&format!("inbound_0.0.0.0_{port}"), routes)
}

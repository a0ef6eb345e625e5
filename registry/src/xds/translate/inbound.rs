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
//! proxy. An HTTP inbound cluster takes `maxRequestsPerConnection` from the `DestinationRule`
//! of the service the port serves, as Istio programs a rule's connection pool on the server
//! side too (only that field here). Connections to other ports take the default chain to `BlackHoleCluster` (the agent
//! only captures the declared ports).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::util::pack_any;

use super::TranslatorConfig;
use super::cluster;
use super::filters::{http_inline, tcp_proxy};
use super::names::{self, BLACKHOLE_CLUSTER, INBOUND_LISTENER, INBOUND_PORT, TLS_INSPECTOR};
use super::policy::{cluster_policy, max_requests_per_connection, peer_authentication_mode};
use super::proto::{bool_value, socket_address, u32_value};
use super::route::default_route;
use super::tls::downstream_mtls;
use crate::model::Snapshot;
use crate::model::config::{Address, ConfigObject, Kind, MtlsMode, ObjectKey};
use crate::model::types::ObjectName;
use crate::model::{Labels, Namespace, PortNumber, Protocol};
use crate::xds::NodeInfo;

/// The node's workload as the inbound side needs it.
struct NodeWorkload {
    namespace: Namespace,
    labels: Labels,
    /// Target port → protocol.
    ports: BTreeMap<PortNumber, Protocol>,
    /// Target port → the `maxRequestsPerConnection` of the `DestinationRule` of the service
    /// the port serves (Istio sets a rule's connection pool on the server side too).
    max_requests: BTreeMap<PortNumber, u32>,
}

fn node_workload(snapshot: &Snapshot, node: &NodeInfo) -> NodeWorkload {
    let node_ip = node.ip.map(Address::Ip);
    // The node's WorkloadEntries: those at its address, and the one named by WORKLOAD_NAME.
    let mut keys: BTreeSet<ObjectKey> = node_ip
        .iter()
        .flat_map(|ip| snapshot.endpoints_at(ip))
        .filter(|(_, e)| e.origin.kind == Kind::WorkloadEntry)
        .map(|(_, e)| e.origin.clone())
        .collect();
    if let (Some(name), Ok(namespace)) = (&node.workload_name, Namespace::new(node.namespace()))
        && let Ok(name) = ObjectName::new(name)
    {
        let key = ObjectKey {
            kind: Kind::WorkloadEntry,
            namespace,
            name,
        };
        if snapshot.object(&key).is_some() {
            keys.insert(key);
        }
    }
    let first = keys.iter().find_map(|key| match snapshot.object(key) {
        Some(ConfigObject::WorkloadEntry(we)) => {
            Some((we.meta.namespace.clone(), we.workload.labels.clone()))
        }
        _ => None,
    });
    let mut ports = BTreeMap::new();
    let mut max_requests = BTreeMap::new();
    let from_entries = keys.iter().flat_map(|key| snapshot.endpoints_from(key));
    let inline_here = node_ip
        .iter()
        .flat_map(|ip| snapshot.endpoints_at(ip))
        .filter(|(_, e)| e.origin.kind == Kind::ServiceEntry);
    for (service, e) in from_entries.chain(inline_here) {
        if let Some(sp) = service.ports.iter().find(|p| p.number == e.service_port) {
            ports.entry(e.port).or_insert(sp.protocol);
            let dr = snapshot
                .destination_rules()
                .find(|dr| dr.host == service.hostname);
            let policy = cluster_policy(dr, e.service_port, None, Duration::ZERO);
            if let Some(n) = max_requests_per_connection(&policy) {
                max_requests.entry(e.port).or_insert(n);
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
        max_requests,
    }
}

/// The inbound listener and clusters of a node.
/// Needs only the snapshot and settings, not a [`super::view::View`]: it runs once per node
/// per generation, so it must not redo the whole-mesh work (VIP allocation).
pub fn build(
    snapshot: &Snapshot,
    config: &TranslatorConfig,
    node: &NodeInfo,
) -> (Listener, Vec<Cluster>) {
    let workload = node_workload(snapshot, node);
    let mut chains = Vec::new();
    let mut clusters = Vec::new();
    for (&port, &protocol) in workload.ports.iter().filter(|(_, p)| **p != Protocol::Udp) {
        let mode = peer_authentication_mode(
            snapshot,
            &workload.namespace,
            &workload.labels,
            port,
            &config.root_namespace,
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
            transport_socket: tls.then(|| downstream_mtls(&config.trust_domain)),
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
        let limit = workload.max_requests.get(&port).copied();
        clusters.push(cluster::inbound(config, port, protocol, limit));
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

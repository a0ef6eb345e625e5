//! Names and fixed values that must match Istio's, so that a configuration dump reads the same
//! as an Istio sidecar's and Istio peers negotiate with us: cluster, listener and route
//! names, the ALPN lists, and the names of Envoy extensions.

use crate::model::{PortNumber, Protocol};

pub const OUTBOUND_LISTENER: &str = "virtualOutbound";
pub const INBOUND_LISTENER: &str = "virtualInbound";
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;

/// `ORIGINAL_DST` cluster used for traffic to unknown destinations under `ALLOW_ANY`.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Cluster without endpoints used for traffic to unknown destinations under `REGISTRY_ONLY`.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";

/// Istio's SDS secret names: the workload's certificate and the trust bundle.
pub const SDS_DEFAULT: &str = "default";
pub const SDS_ROOTCA: &str = "ROOTCA";

/// Endpoint metadata read by Envoy's `transport_socket_matches`.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";
/// Workload label that overrides whether a workload speaks Istio mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const ROUTER: &str = "envoy.filters.http.router";
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
/// Cluster `typed_filter_metadata` key of our fallback answer (service degradation).
pub const FALLBACK_METADATA: &str = "hostmesh.io/fallback";
pub const LOCAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
pub const LOCAL_RATE_LIMIT_STATS: &str = "http_local_rate_limiter";
pub const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
pub const RAW_BUFFER_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.raw_buffer";
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// `outbound|PORT|SUBSET|HOST` (the subset empty for the whole service).
pub fn outbound_cluster(port: PortNumber, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or_default())
}

/// `inbound|PORT||`: the workload's own port on 127.0.0.1.
pub fn inbound_cluster(port: PortNumber) -> String {
    format!("inbound|{port}||")
}

/// The SNI Istio sidecars send: `outbound_.PORT_.SUBSET_.HOST`.
pub fn outbound_sni(port: PortNumber, subset: Option<&str>, host: &str) -> String {
    format!("outbound_.{port}_.{}_.{host}", subset.unwrap_or_default())
}

/// Outbound route configurations are named by port number, as Istio does.
pub fn route_config(port: PortNumber) -> String {
    port.to_string()
}

/// Does the upstream speak HTTP/2 (HTTP/2, gRPC, gRPC-Web)?
pub fn is_http2(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
    )
}

/// The ALPN an Istio sidecar offers to an mTLS upstream for the protocol it speaks. The TCP
/// list leaves out `istio-peer-exchange`: hostmesh does not implement its metadata exchange.
pub fn upstream_alpn(protocol: Protocol) -> &'static [&'static str] {
    if is_http2(protocol) {
        &["istio-h2", "istio", "h2"]
    } else if protocol == Protocol::Http {
        &["istio-http/1.1", "istio", "http/1.1"]
    } else {
        &["istio"]
    }
}

/// Server preference on the inbound side: every Istio client list negotiates.
pub const INBOUND_ALPN: [&str; 3] = ["h2", "http/1.1", "istio"];

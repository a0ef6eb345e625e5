//! The policies that shape clusters and the inbound listener, read from the model: the
//! `DestinationRule` traffic policy of a port and subset (load balancer, connect timeout,
//! TLS mode), whether an endpoint speaks Istio mTLS, and the `PeerAuthentication` mode of a
//! workload port.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;

use super::names::{TLS_MODE_ISTIO, TLS_MODE_LABEL};
use crate::model::config::{
    ConfigObject, DestinationRule, MeshLocation, MtlsMode, PeerAuthentication,
};
use crate::model::istio::networking::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHash, LoadBalancerSettings,
    LocalityLbSetting, OutlierDetection, TrafficPolicy,
};
use crate::model::{Endpoint, Labels, Namespace, PortNumber, Service, Snapshot};

/// `DestinationRule` `tls.mode`, as far as hostmesh translates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS settings: Istio's automatic mTLS, by endpoint.
    Auto,
    Disable,
    IstioMutual,
    /// `SIMPLE` or `MUTUAL` origination to a non-mesh server: not translated yet; such
    /// clusters are sent without a transport socket.
    Originate,
}

/// The settings of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPolicy {
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    pub tls: TlsMode,
    /// Extra SANs from `tls.subjectAltNames` (with `ISTIO_MUTUAL`).
    pub tls_sans: Vec<String>,
    /// The connection pool in force (a more specific level replaces it whole, as Istio).
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `loadBalancer.consistentHash` in force (it replaces `simple`, and `simple` it).
    pub consistent_hash: Option<ConsistentHash>,
    /// `loadBalancer.localityLbSetting` in force.
    pub locality: Option<LocalityLbSetting>,
}

/// The policy of `port` (and `subset`) of the rule's host: the rule's traffic policy, then its
/// port-level settings for the port, then the subset's traffic policy and its port-level
/// settings, each overriding the fields it sets.
pub fn cluster_policy(
    dr: Option<&DestinationRule>,
    port: PortNumber,
    subset: Option<&str>,
    default_timeout: Duration,
) -> ClusterPolicy {
    let mut p = ClusterPolicy {
        lb: LbPolicy::LeastRequest,
        connect_timeout: default_timeout,
        tls: TlsMode::Auto,
        tls_sans: Vec::new(),
        connection_pool: None,
        outlier_detection: None,
        consistent_hash: None,
        locality: None,
    };
    let Some(dr) = dr else { return p };
    let subset_policy = subset.and_then(|name| {
        dr.spec
            .subsets
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .and_then(|s| s.traffic_policy.as_ref())
    });
    for tp in [dr.spec.traffic_policy.as_ref(), subset_policy]
        .into_iter()
        .flatten()
    {
        apply_traffic_policy(&mut p, tp, port);
    }
    p
}

fn apply_traffic_policy(p: &mut ClusterPolicy, tp: &TrafficPolicy, port: PortNumber) {
    if let Some(od) = &tp.outlier_detection {
        p.outlier_detection = Some(od.clone());
    }
    apply(
        p,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.tls.as_ref(),
    );
    let port_level = tp
        .port_level_settings
        .iter()
        .find(|s| s.port.as_ref().and_then(|p| p.number) == Some(u32::from(port.get())));
    if let Some(s) = port_level {
        if let Some(od) = &s.outlier_detection {
            p.outlier_detection = Some(od.clone());
        }
        apply(
            p,
            s.load_balancer.as_ref(),
            s.connection_pool.as_ref(),
            s.tls.as_ref(),
        );
    }
}

fn apply(
    p: &mut ClusterPolicy,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    tls: Option<&ClientTlsSettings>,
) {
    if let Some(simple) = lb.and_then(|l| l.simple.as_deref()) {
        let before = p.lb;
        match simple {
            "ROUND_ROBIN" => p.lb = LbPolicy::RoundRobin,
            "LEAST_REQUEST" | "LEAST_CONN" => p.lb = LbPolicy::LeastRequest,
            "RANDOM" => p.lb = LbPolicy::Random,
            // UNSPECIFIED keeps the default; PASSTHROUGH is not translated.
            _ => {}
        }
        if p.lb != before {
            p.consistent_hash = None;
        }
    }
    if let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) {
        p.lb = super::load_balancing::hash_lb_policy(ch);
        p.consistent_hash = Some(ch.clone());
    }
    if let Some(l) = lb.and_then(|l| l.locality_lb_setting.as_ref()) {
        p.locality = Some(l.clone());
    }
    if let Some(pool) = pool {
        p.connection_pool = Some(pool.clone());
    }
    if let Some(t) = pool
        .and_then(|c| c.tcp.as_ref())
        .and_then(|t| t.connect_timeout.as_deref())
        .and_then(super::proto::parse_duration)
    {
        p.connect_timeout = t;
    }
    if let Some(tls) = tls {
        if let Some(mode) = tls.mode.as_deref() {
            p.tls = match mode {
                "DISABLE" => TlsMode::Disable,
                "ISTIO_MUTUAL" => TlsMode::IstioMutual,
                "SIMPLE" | "MUTUAL" => TlsMode::Originate,
                _ => p.tls,
            };
        }
        if !tls.subject_alt_names.is_empty() {
            p.tls_sans = tls.subject_alt_names.clone();
        }
    }
}

/// `connectionPool.http.maxRequestsPerConnection` when set above 0.
pub fn max_requests_per_connection(p: &ClusterPolicy) -> Option<u32> {
    p.connection_pool
        .as_ref()
        .and_then(|c| c.http.as_ref())
        .and_then(|h| h.max_requests_per_connection)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// Does the endpoint speak Istio mTLS? Never for `MESH_EXTERNAL` services. Otherwise the
/// workload label `security.istio.io/tlsMode` decides when present (`istio` or not), else
/// whether the workload declares a service account — Istio's rule for `WorkloadEntry`s.
pub fn is_meshed(snapshot: &Snapshot, service: &Service, endpoint: &Endpoint) -> bool {
    if service.location == MeshLocation::External {
        return false;
    }
    if let Some(mode) = endpoint.labels.get(TLS_MODE_LABEL) {
        return mode == TLS_MODE_ISTIO;
    }
    match snapshot.object(&endpoint.origin) {
        Some(ConfigObject::WorkloadEntry(we)) => we.workload.service_account.is_some(),
        Some(ConfigObject::ServiceEntry(se)) => se
            .endpoints
            .iter()
            .any(|w| w.address.as_ref() == Some(&endpoint.address) && w.service_account.is_some()),
        _ => false,
    }
}

/// The mTLS mode of a workload port: the workload's policy (port-level, then whole), then
/// the namespace's, then the mesh's (in the root namespace), else `PERMISSIVE` (Istio's
/// default). Never `Unset`. When several policies of one level apply, the first by key wins.
pub fn peer_authentication_mode(
    snapshot: &Snapshot,
    namespace: &Namespace,
    labels: &Labels,
    port: PortNumber,
    root_namespace: &str,
) -> MtlsMode {
    let pas: Vec<&PeerAuthentication> = snapshot.peer_authentications().collect();
    let workload = pas.iter().find(|pa| {
        &pa.meta.namespace == namespace
            && pa
                .selector
                .as_ref()
                .is_some_and(|s| !s.is_empty() && s.selects(labels))
    });
    let namespace_wide = pas.iter().find(|pa| {
        &pa.meta.namespace == namespace && pa.selector.as_ref().is_none_or(Labels::is_empty)
    });
    let mesh_wide = pas.iter().find(|pa| {
        pa.meta.namespace.as_str() == root_namespace
            && pa.selector.as_ref().is_none_or(Labels::is_empty)
    });
    let candidates = [
        workload.and_then(|pa| pa.port_level.get(&port).copied()),
        workload.map(|pa| pa.mode),
        namespace_wide.map(|pa| pa.mode),
        mesh_wide.map(|pa| pa.mode),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|m| *m != MtlsMode::Unset)
        .unwrap_or(MtlsMode::Permissive)
}

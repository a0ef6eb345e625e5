//! Clusters (CDS): one per service port (`outbound|PORT||HOST`) and per `DestinationRule`
//! subset (`outbound|PORT|SUBSET|HOST`), the passthrough and black-hole clusters, and the
//! node's inbound clusters (`inbound|PORT||`).
//!
//! Discovery by `ServiceEntry` resolution: `STATIC` → `EDS` over ADS; `DNS` → `STRICT_DNS`
//! and `DNS_ROUND_ROBIN` → `LOGICAL_DNS` (Istio's choice), with the endpoints' addresses —
//! or the host itself when there are none — inline in `load_assignment` (a `LOGICAL_DNS`
//! cluster takes the first one only, as Envoy requires); `NONE` → `ORIGINAL_DST`.
//!
//! Security: `DestinationRule` `tls.mode` `DISABLE` → plaintext, `ISTIO_MUTUAL` → mTLS;
//! without one, Istio's automatic mTLS: mTLS when every endpoint of the cluster is meshed
//! ([`is_meshed`]), plaintext when none is (or there are none), and when they mix,
//! `transport_socket_matches` on the endpoint metadata `envoy.transport_socket_match.tlsMode:
//! istio`. `SIMPLE`/`MUTUAL` origination is not translated yet (plaintext, with a warning).

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy, TransportSocketMatch,
    },
};
use envoy_types::pb::envoy::config::core::v3::{Http2ProtocolOptions, TransportSocket};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use envoy_types::util::pack_any;

use super::TranslatorConfig;
use super::endpoint::{dns_load_assignment, local_load_assignment};
use super::names::{
    self, BLACKHOLE_CLUSTER, HTTP_PROTOCOL_OPTIONS, PASSTHROUGH_CLUSTER, TLS_MODE_ISTIO,
    TLS_MODE_KEY, is_http2,
};
use super::policy::{ClusterPolicy, TlsMode, cluster_policy, is_meshed};
use super::proto::{ads, duration};
use super::tls::{raw_buffer, upstream_mtls};
use super::view::View;
use crate::model::config::{Resolution, ServicePort, Subset};
use crate::model::{Endpoint, PortNumber, Protocol, Service};

/// One outbound cluster to build: a service port, possibly narrowed to a subset.
pub struct ClusterPlan<'a> {
    pub name: String,
    pub service: &'a Service,
    pub port: &'a ServicePort,
    pub subset: Option<&'a Subset>,
}

impl<'a> ClusterPlan<'a> {
    /// The endpoints of the cluster: the service's on this port, in the subset if any.
    pub fn endpoints(&self) -> impl Iterator<Item = &'a Endpoint> + '_ {
        self.service
            .endpoints_for(self.port.number)
            .filter(|e| self.subset.is_none_or(|s| s.labels.selects(&e.labels)))
    }

    pub fn subset_name(&self) -> Option<&'a str> {
        self.subset.map(|s| s.name.as_str())
    }
}

/// Every outbound cluster of the snapshot, in a stable order. UDP ports get none (Envoy's
/// TCP proxying cannot carry them).
pub fn plans<'a>(view: &View<'a>) -> Vec<ClusterPlan<'a>> {
    let mut out = Vec::new();
    for service in &view.services {
        let subsets: &[Subset] = view
            .destination_rule(service.hostname.as_str())
            .map_or(&[], |dr| dr.subsets.as_slice());
        for port in service.ports.iter().filter(|p| p.protocol != Protocol::Udp) {
            for subset in std::iter::once(None).chain(subsets.iter().map(Some)) {
                out.push(ClusterPlan {
                    name: names::outbound_cluster(
                        port.number,
                        subset.map(|s| s.name.as_str()),
                        service.hostname.as_str(),
                    ),
                    service,
                    port,
                    subset,
                });
            }
        }
    }
    out
}

/// Does the cluster get its endpoints over EDS?
pub fn uses_eds(plan: &ClusterPlan<'_>) -> bool {
    plan.service.resolution == Resolution::Static
}

pub fn outbound(view: &View<'_>, plan: &ClusterPlan<'_>) -> Cluster {
    let host = plan.service.hostname.as_str();
    let policy = cluster_policy(
        view.destination_rule(host),
        plan.port.number,
        plan.subset_name(),
        view.config.connect_timeout,
    );
    let mut c = Cluster {
        name: plan.name.clone(),
        connect_timeout: Some(duration(policy.connect_timeout)),
        lb_policy: policy.lb as i32,
        ..Default::default()
    };
    match plan.service.resolution {
        Resolution::Static => {
            c.cluster_discovery_type = discovery(DiscoveryType::Eds);
            c.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: plan.name.clone(),
            });
        }
        Resolution::None => {
            c.cluster_discovery_type = discovery(DiscoveryType::OriginalDst);
            c.lb_policy = LbPolicy::ClusterProvided as i32;
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            let (kind, first_only) = if plan.service.resolution == Resolution::Dns {
                (DiscoveryType::StrictDns, false)
            } else {
                (DiscoveryType::LogicalDns, true)
            };
            c.cluster_discovery_type = discovery(kind);
            c.load_assignment = Some(dns_load_assignment(view, plan, first_only));
        }
    }
    if is_http2(plan.port.protocol) {
        c.typed_extension_protocol_options = http2_options();
    }
    apply_security(view, plan, &policy, &mut c);
    if plan.service.resolution != Resolution::None {
        super::resilience::apply(&policy, &mut c);
        super::fallback::apply(view.destination_rule(host), &mut c);
    }
    c
}

fn discovery(kind: DiscoveryType) -> Option<ClusterDiscoveryType> {
    Some(ClusterDiscoveryType::Type(kind as i32))
}

fn http2_options() -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let opts = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_owned(), pack_any(opts))])
}

fn apply_security(
    view: &View<'_>,
    plan: &ClusterPlan<'_>,
    policy: &ClusterPolicy,
    c: &mut Cluster,
) {
    let meshed = |e: &Endpoint| is_meshed(view.snapshot, plan.service, e);
    let mtls = || -> TransportSocket {
        let sans = sans(view, plan, policy);
        let sni = names::outbound_sni(
            plan.port.number,
            plan.subset_name(),
            plan.service.hostname.as_str(),
        );
        upstream_mtls(plan.port.protocol, &sans, sni)
    };
    match policy.tls {
        TlsMode::Disable => {}
        TlsMode::IstioMutual => c.transport_socket = Some(mtls()),
        TlsMode::Originate => {
            tracing::warn!(cluster = %plan.name, "DestinationRule tls mode SIMPLE/MUTUAL is not translated yet; sending plaintext");
        }
        TlsMode::Auto => {
            if plan.service.resolution == Resolution::None {
                return;
            }
            let (yes, no) = plan.endpoints().fold((0usize, 0usize), |(y, n), e| {
                if meshed(e) { (y + 1, n) } else { (y, n + 1) }
            });
            match (yes, no) {
                (0, _) => {}
                (_, 0) => c.transport_socket = Some(mtls()),
                _ => c.transport_socket_matches = mixed_matches(mtls()),
            }
        }
    }
}

/// mTLS for endpoints marked `tlsMode: istio`, plaintext for the others.
fn mixed_matches(mtls: TransportSocket) -> Vec<TransportSocketMatch> {
    let istio = Struct {
        fields: HashMap::from([(
            TLS_MODE_KEY.to_owned(),
            Value {
                kind: Some(value::Kind::StringValue(TLS_MODE_ISTIO.to_owned())),
            },
        )]),
    };
    vec![
        TransportSocketMatch {
            name: "tlsMode-istio".to_owned(),
            r#match: Some(istio),
            transport_socket: Some(mtls),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".to_owned(),
            r#match: Some(Struct::default()),
            transport_socket: Some(raw_buffer()),
        },
    ]
}

/// The identities accepted from the upstream: the SPIFFE IDs of the service's endpoints on
/// this port that speak mTLS (all of them under `ISTIO_MUTUAL`), the `ServiceEntry`'s
/// `subjectAltNames` and the rule's `tls.subjectAltNames`; sorted, without duplicates. The
/// whole service's endpoints count, not only the subset's, as in Istio.
fn sans(view: &View<'_>, plan: &ClusterPlan<'_>, policy: &ClusterPolicy) -> Vec<String> {
    let all = policy.tls == TlsMode::IstioMutual;
    let mut out: BTreeSet<String> = plan
        .service
        .endpoints_for(plan.port.number)
        .filter(|e| all || is_meshed(view.snapshot, plan.service, e))
        .map(|e| e.identity.to_string())
        .collect();
    out.extend(plan.service.subject_alt_names.iter().cloned());
    out.extend(policy.tls_sans.iter().cloned());
    out.into_iter().collect()
}

/// `ORIGINAL_DST`: connect to where the client was going.
pub fn passthrough(view: &View<'_>) -> Cluster {
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_owned(),
        cluster_discovery_type: discovery(DiscoveryType::OriginalDst),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(view.config.connect_timeout)),
        ..Default::default()
    }
}

/// A static cluster with no endpoints: every connection fails.
pub fn blackhole(view: &View<'_>) -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_owned(),
        cluster_discovery_type: discovery(DiscoveryType::Static),
        connect_timeout: Some(duration(view.config.connect_timeout)),
        ..Default::default()
    }
}

/// `inbound|PORT||`: the workload's port on 127.0.0.1, plaintext.
pub fn inbound(config: &TranslatorConfig, port: PortNumber, protocol: Protocol) -> Cluster {
    let name = names::inbound_cluster(port);
    let mut c = Cluster {
        load_assignment: Some(local_load_assignment(&name, port)),
        name,
        cluster_discovery_type: discovery(DiscoveryType::Static),
        connect_timeout: Some(duration(config.connect_timeout)),
        ..Default::default()
    };
    if is_http2(protocol) {
        c.typed_extension_protocol_options = http2_options();
    }
    c
}

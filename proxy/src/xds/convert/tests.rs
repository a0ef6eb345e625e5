//! Conversion of hand-built resources shaped like the control server's translation.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, CidrRange, ConfigSource, TrafficDirection, TransportSocket,
    address, config_source, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
    UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};
use envoy_types::util::pack_any;

use super::*;
use crate::config::spec::TargetSpec;
use crate::xds::resources::ResourceType;

const BILL: &str = "spiffe://cluster.local/ns/demo/sa/bill";
const V1: &str = "outbound|9999|v1|bill-service.demo.svc.cluster.local";
const V2: &str = "outbound|9999|v2|bill-service.demo.svc.cluster.local";

fn ctx() -> Context {
    Context {
        trust_domain: "cluster.local".into(),
    }
}

fn addr(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(
            envoy_types::pb::envoy::config::core::v3::SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            },
        )),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: 2,
        ..Default::default()
    }
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        ..Default::default()
    }
}

fn mtls(san: &str, alpn: &[&str]) -> TransportSocket {
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds("default")],
            alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                san_type: subject_alt_name_matcher::SanType::Uri as i32,
                                matcher: Some(StringMatcher {
                                    match_pattern: Some(MatchPattern::Exact(san.into())),
                                    ignore_case: false,
                                }),
                                oid: String::new(),
                            }],
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(sds("ROOTCA")),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        sni: "outbound_.9999_.v1_.bill-service.demo.svc.cluster.local".into(),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(ctx))),
    }
}

fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        lb_policy: LbPolicy::LeastRequest as i32,
        transport_socket: Some(mtls(BILL, &["istio-http/1.1", "istio", "http/1.1"])),
        ..Default::default()
    }
}

fn typed(kind: DiscoveryType, name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        lb_policy: if kind == DiscoveryType::OriginalDst {
            LbPolicy::ClusterProvided as i32
        } else {
            0
        },
        ..Default::default()
    }
}

fn cla(name: &str, endpoints: &[(&str, u32, u32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|(ip, port, w)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr(ip, *port)),
                        ..Default::default()
                    })),
                    load_balancing_weight: Some(UInt32Value { value: *w }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tcp_filter(cluster: &str) -> Filter {
    let tcp = TcpProxy {
        stat_prefix: cluster.into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(tcp))),
    }
}

fn hcm(route: RouteSpecifier) -> Filter {
    let hcm = HttpConnectionManager {
        stat_prefix: "outbound_0.0.0.0_9999".into(),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        }],
        forward_client_cert_details: 1,
        route_specifier: Some(route),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
    }
}

fn outbound_listener(port: u32, ips: &[&str], filter: Filter, default: &str) -> Listener {
    Listener {
        name: "virtualOutbound".into(),
        address: Some(addr("0.0.0.0", 15001)),
        filter_chains: vec![FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                destination_port: Some(UInt32Value { value: port }),
                prefix_ranges: ips
                    .iter()
                    .map(|ip| CidrRange {
                        address_prefix: ip.to_string(),
                        prefix_len: Some(UInt32Value { value: 32 }),
                    })
                    .collect(),
                ..Default::default()
            }),
            filters: vec![filter],
            name: "outbound|9999||bill-service.demo.svc.cluster.local".into(),
            ..Default::default()
        }],
        use_original_dst: Some(BoolValue { value: true }),
        default_filter_chain: Some(FilterChain {
            filters: vec![tcp_filter(default)],
            name: "PassthroughFilterChain".into(),
            ..Default::default()
        }),
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

fn weighted(split: &[(&str, u32)]) -> RouteConfiguration {
    RouteConfiguration {
        name: "9999".into(),
        virtual_hosts: vec![VirtualHost {
            name: "bill-service.demo.svc.cluster.local:9999".into(),
            domains: vec!["bill-service.demo.svc.cluster.local".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    timeout: Some(Duration::default()),
                    cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                        WeightedCluster {
                            clusters: split
                                .iter()
                                .map(|(c, w)| ClusterWeight {
                                    name: c.to_string(),
                                    weight: Some(UInt32Value { value: *w }),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn put(res: &mut Resources, ty: ResourceType, any: Any) {
    res.insert(ty, None, "1".into(), &any).unwrap();
}

/// bill-service as the translator emits it: two EDS subset clusters, an RDS split.
fn bill() -> Resources {
    let mut res = Resources::default();
    for c in [eds_cluster(V1), eds_cluster(V2)] {
        put(&mut res, ResourceType::Cluster, pack_any(c));
    }
    put(
        &mut res,
        ResourceType::Cluster,
        pack_any(typed(DiscoveryType::OriginalDst, "PassthroughCluster")),
    );
    put(
        &mut res,
        ResourceType::Cluster,
        pack_any(typed(DiscoveryType::Static, "BlackHoleCluster")),
    );
    put(
        &mut res,
        ResourceType::Endpoint,
        pack_any(cla(V1, &[("10.0.0.5", 9999, 1)])),
    );
    put(
        &mut res,
        ResourceType::Endpoint,
        pack_any(cla(V2, &[("10.0.0.6", 19999, 3)])),
    );
    let rds = RouteSpecifier::Rds(Rds {
        config_source: Some(ads()),
        route_config_name: "9999".into(),
    });
    let listener = outbound_listener(
        9999,
        &["240.240.246.3", "10.0.0.5", "10.0.0.6"],
        hcm(rds),
        "PassthroughCluster",
    );
    put(&mut res, ResourceType::Listener, pack_any(listener));
    put(
        &mut res,
        ResourceType::Route,
        pack_any(weighted(&[(V1, 90), (V2, 10)])),
    );
    res
}

#[test]
fn the_bill_service_converts_and_validates() {
    let converted = convert(&bill(), &ctx()).unwrap();
    assert!(converted.pending.is_empty(), "{:?}", converted.pending);
    let spec = &converted.spec;
    let v2 = spec.clusters.iter().find(|c| c.name == V2).unwrap();
    assert_eq!(v2.lb, crate::config::LbPolicy::LeastRequest);
    assert_eq!(v2.endpoints[0].address, "10.0.0.6:19999".parse().unwrap());
    assert_eq!(v2.endpoints[0].weight, 3);
    assert!(matches!(
        &v2.tls,
        UpstreamTlsSpec::Mtls { expected_identities } if expected_identities == &[BILL.to_owned()]
    ));
    assert_eq!(
        spec.outbound.unknown_destination,
        UnknownDestination::Passthrough
    );
    let service = &spec.outbound.services[0];
    assert_eq!(service.addresses.len(), 3);
    assert!(
        service
            .addresses
            .contains(&"240.240.246.3:9999".parse().unwrap())
    );
    let TargetSpec::Http(table) = &service.target else {
        panic!("HTTP service");
    };
    let split: Vec<_> = table.virtual_hosts[0].routes[0]
        .clusters
        .iter()
        .map(|c| (c.cluster.as_str(), c.weight))
        .collect();
    assert_eq!(split, [(V1, 90), (V2, 10)]);
    assert_eq!(table.virtual_hosts[0].routes[0].timeout, None, "0 disables");
    crate::ProxyConfig::build(spec).unwrap();
}

#[test]
fn endpoints_of_the_chain_s_cluster_reach_the_service_without_being_in_the_listener() {
    const ALL: &str = "outbound|9999||bill-service.demo.svc.cluster.local";
    let mut res = bill();
    put(&mut res, ResourceType::Cluster, pack_any(eds_cluster(ALL)));
    put(
        &mut res,
        ResourceType::Endpoint,
        pack_any(cla(ALL, &[("10.0.0.5", 9999, 1), ("10.0.0.6", 19999, 1)])),
    );
    let listener = outbound_listener(
        9999,
        &["240.240.246.3"],
        hcm(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "9999".into(),
        })),
        "PassthroughCluster",
    );
    put(&mut res, ResourceType::Listener, pack_any(listener));
    let spec = convert(&res, &ctx()).unwrap().spec;
    assert_eq!(spec.outbound.services[0].endpoints_of.as_deref(), Some(ALL));
    let config = crate::ProxyConfig::build(&spec).unwrap();
    let service = |a: &str| config.outbound().service(a.parse().unwrap()).is_some();
    // The VIP, and each endpoint's IP at the service port (not at its own port).
    assert!(service("240.240.246.3:9999"));
    assert!(service("10.0.0.5:9999"));
    assert!(service("10.0.0.6:9999"));
    assert!(!service("10.0.0.6:19999"));
    assert!(!service("10.0.0.7:9999"));

    // Without an assignment for the chain's cluster, endpoints are not matched (the
    // conversion waits for it).
    res.remove(ResourceType::Endpoint, ALL);
    let converted = convert(&res, &ctx()).unwrap();
    assert!(
        converted.pending.iter().any(|p| p.contains(ALL)),
        "{:?}",
        converted.pending
    );
}

#[test]
fn missing_assignments_and_routes_are_pending_not_errors() {
    let mut res = bill();
    res.remove(ResourceType::Endpoint, V2);
    res.remove(ResourceType::Route, "9999");
    let converted = convert(&res, &ctx()).unwrap();
    assert_eq!(
        converted.pending,
        [
            format!("ClusterLoadAssignment {V2:?}"),
            "RouteConfiguration \"9999\"".to_owned()
        ]
    );
}

#[test]
fn a_route_to_a_missing_cluster_gets_an_empty_one() {
    let mut res = bill();
    put(
        &mut res,
        ResourceType::Route,
        pack_any(weighted(&[(V1, 50), ("gone", 50)])),
    );
    let spec = convert(&res, &ctx()).unwrap().spec;
    let gone = spec.clusters.iter().find(|c| c.name == "gone").unwrap();
    assert!(gone.endpoints.is_empty());
    crate::ProxyConfig::build(&spec).unwrap();
}

fn rejection(res: &Resources) -> String {
    convert(res, &ctx()).unwrap_err().to_string()
}

#[test]
fn unsupported_settings_are_rejected_naming_the_field() {
    let mut res = bill();
    let mut provided = eds_cluster(V1);
    provided.lb_policy = LbPolicy::ClusterProvided as i32;
    put(&mut res, ResourceType::Cluster, pack_any(provided));
    assert_eq!(
        rejection(&res),
        format!("Cluster {V1:?}: lb_policy CLUSTER_PROVIDED is not supported")
    );

    let mut res = bill();
    let mut c = eds_cluster(V1);
    c.per_connection_buffer_limit_bytes = Some(UInt32Value { value: 1 });
    put(&mut res, ResourceType::Cluster, pack_any(c));
    let text = rejection(&res);
    assert!(
        text.contains("field(s) 5 of envoy.config.cluster.v3.Cluster are set but not supported"),
        "{text}"
    );

    let mut res = bill();
    let mut c = eds_cluster(V1);
    c.transport_socket = Some(mtls(BILL, &["h3"]));
    put(&mut res, ResourceType::Cluster, pack_any(c));
    assert!(rejection(&res).contains("alpn_protocols [\"h3\"] is not supported"));

    let mut res = bill();
    let mut c = cla(V1, &[("bill.example.com", 80, 1)]);
    c.cluster_name = V1.into();
    put(&mut res, ResourceType::Endpoint, pack_any(c));
    assert!(rejection(&res).contains("is not an IP address"));
}

#[test]
fn a_tcp_chain_and_a_refusing_default() {
    let mut res = Resources::default();
    let mut c = typed(DiscoveryType::Static, "outbound|5432||pg");
    c.load_assignment = Some(cla("outbound|5432||pg", &[("10.0.0.7", 5432, 1)]));
    put(&mut res, ResourceType::Cluster, pack_any(c));
    put(
        &mut res,
        ResourceType::Cluster,
        pack_any(typed(DiscoveryType::Static, "BlackHoleCluster")),
    );
    let listener = outbound_listener(
        5432,
        &["10.0.0.7"],
        tcp_filter("outbound|5432||pg"),
        "BlackHoleCluster",
    );
    put(&mut res, ResourceType::Listener, pack_any(listener));
    let spec = convert(&res, &ctx()).unwrap().spec;
    assert_eq!(
        spec.outbound.unknown_destination,
        UnknownDestination::Refuse
    );
    assert!(matches!(
        &spec.outbound.services[0].target,
        TargetSpec::Tcp { cluster } if cluster == "outbound|5432||pg"
    ));
    crate::ProxyConfig::build(&spec).unwrap();
}

#[test]
fn a_prefix_range_wider_than_one_address_is_rejected() {
    let mut res = bill();
    let mut l = outbound_listener(9999, &["10.0.0.0"], tcp_filter(V1), "PassthroughCluster");
    if let Some(m) = l.filter_chains[0].filter_chain_match.as_mut() {
        m.prefix_ranges[0].prefix_len = Some(UInt32Value { value: 8 });
    }
    put(&mut res, ResourceType::Listener, pack_any(l));
    assert!(rejection(&res).contains("prefix_ranges 10.0.0.0/8 is not supported"));
}

#[test]
fn transport_socket_matches_choose_per_endpoint() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

    let istio = Struct {
        fields: HashMap::from([(
            "tlsMode".to_owned(),
            Value {
                kind: Some(Kind::StringValue("istio".into())),
            },
        )]),
    };
    let mut c = eds_cluster(V1);
    c.transport_socket = None;
    c.transport_socket_matches = vec![
        TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(istio.clone()),
            transport_socket: Some(mtls(BILL, &["istio-http/1.1", "istio", "http/1.1"])),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                    RawBuffer {},
                ))),
            }),
        },
    ];
    let mut assignment = cla(V1, &[("10.0.0.5", 9999, 1), ("10.0.0.9", 9999, 1)]);
    assignment.endpoints[0].lb_endpoints[0].metadata = Some(Metadata {
        filter_metadata: HashMap::from([("envoy.transport_socket_match".to_owned(), istio)]),
        ..Default::default()
    });
    let mut res = bill();
    put(&mut res, ResourceType::Cluster, pack_any(c));
    put(&mut res, ResourceType::Endpoint, pack_any(assignment));
    let spec = convert(&res, &ctx()).unwrap().spec;
    let v1 = spec.clusters.iter().find(|c| c.name == V1).unwrap();
    assert!(matches!(
        v1.endpoints[0].tls,
        Some(UpstreamTlsSpec::Mtls { .. })
    ));
    assert!(matches!(
        v1.endpoints[1].tls,
        Some(UpstreamTlsSpec::Plaintext)
    ));
}

#[test]
fn the_name_table_is_checked_and_lower_cased() {
    use crate::xds::name_table::{NameInfo, NameTable};
    let mut res = bill();
    let table = NameTable {
        table: [(
            "Bill-Service.demo.svc.cluster.local".to_owned(),
            NameInfo {
                ips: vec!["240.240.246.3".into()],
                registry: "External".into(),
                shortname: "bill-service".into(),
                namespace: "demo".into(),
            },
        )]
        .into(),
    };
    res.insert(
        ResourceType::NameTable,
        Some(String::new()),
        "1".into(),
        &pack_any(table),
    )
    .unwrap();
    let names = convert(&res, &ctx()).unwrap().names;
    let bill = names
        .lookup("bill-service.demo.svc.cluster.local.")
        .unwrap();
    assert_eq!(
        bill.ips,
        ["240.240.246.3".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn hashing_clusters_priorities_and_request_limits_convert() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{LbConfig, MaglevLbConfig};
    use envoy_types::pb::envoy::config::core::v3::{
        Http1ProtocolOptions, HttpProtocolOptions as Common,
    };
    use envoy_types::pb::envoy::config::route::v3::route_action::{
        HashPolicy,
        hash_policy::{Header, PolicySpecifier},
    };
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        },
    };
    use envoy_types::pb::google::protobuf::UInt64Value;

    let mut res = bill();
    let mut c = eds_cluster(V1);
    c.lb_policy = LbPolicy::Maglev as i32;
    c.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
        table_size: Some(UInt64Value { value: 1021 }),
    }));
    let options = HttpProtocolOptions {
        common_http_protocol_options: Some(Common {
            max_requests_per_connection: Some(UInt32Value { value: 3 }),
            ..Default::default()
        }),
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                    Http1ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    c.typed_extension_protocol_options = HashMap::from([(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        pack_any(options),
    )]);
    put(&mut res, ResourceType::Cluster, pack_any(c));
    let mut assignment = cla(V1, &[("10.0.0.5", 9999, 1)]);
    let mut far = cla(V1, &[("10.0.0.7", 9999, 1)]).endpoints.remove(0);
    far.priority = 1;
    assignment.endpoints.push(far);
    put(&mut res, ResourceType::Endpoint, pack_any(assignment));
    let mut routes = weighted(&[(V1, 90), (V2, 10)]);
    if let Some(route::Action::Route(a)) = &mut routes.virtual_hosts[0].routes[0].action {
        a.hash_policy = vec![HashPolicy {
            policy_specifier: Some(PolicySpecifier::Header(Header {
                header_name: "X-User".into(),
                ..Default::default()
            })),
            terminal: true,
        }];
    }
    put(&mut res, ResourceType::Route, pack_any(routes));

    let spec = convert(&res, &ctx()).unwrap().spec;
    let v1 = spec.clusters.iter().find(|c| c.name == V1).unwrap();
    assert_eq!(v1.lb, crate::config::LbPolicy::Maglev { table_size: 1021 });
    assert_eq!(v1.max_requests_per_connection, Some(3));
    let priorities: Vec<_> = v1
        .endpoints
        .iter()
        .map(|e| (e.address.ip().to_string(), e.priority))
        .collect();
    assert_eq!(
        priorities,
        [("10.0.0.5".to_owned(), 0), ("10.0.0.7".to_owned(), 1)]
    );
    let TargetSpec::Http(table) = &spec.outbound.services[0].target else {
        panic!("an HTTP service");
    };
    let hash = &table.virtual_hosts[0].routes[0].policy.hash;
    assert!(
        matches!(hash.as_slice(), [(crate::config::spec::HashPolicySpec::Header(h), true)] if h == "x-user"),
        "{hash:?}"
    );
    crate::ProxyConfig::build(&spec).unwrap();

    // A maglev table must be prime, as in Envoy.
    let mut bad = spec.clone();
    bad.clusters.iter_mut().find(|c| c.name == V1).unwrap().lb =
        crate::config::LbPolicy::Maglev { table_size: 1000 };
    let err = crate::ProxyConfig::build(&bad).unwrap_err().to_string();
    assert!(
        err.contains("maglev table_size 1000 is not a prime"),
        "{err}"
    );
}
mod l4;

//! Plain assertions on the translation: Istio's names, weights, ALPN, SANs, VIP and version
//! stability, outbound policy and PeerAuthentication modes.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier as TcpCluster,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    UpstreamTlsContext, common_tls_context::ValidationContextType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::*;

const BILL_HOST: &str = "bill-service.demo.svc.cluster.local";

fn cluster(set: &ResourceSet, name: &str) -> Cluster {
    decode(set, type_url::CLUSTER, name)
}

fn upstream_tls(c: &Cluster) -> UpstreamTlsContext {
    let socket = c.transport_socket.as_ref().expect("no transport socket");
    let Some(SocketConfig::TypedConfig(a)) = &socket.config_type else {
        panic!("untyped socket")
    };
    any(a)
}

fn alpn(c: &Cluster) -> Vec<String> {
    upstream_tls(c).common_tls_context.unwrap().alpn_protocols
}

fn sans(c: &Cluster) -> Vec<String> {
    let ctx = upstream_tls(c).common_tls_context.unwrap();
    let Some(ValidationContextType::CombinedValidationContext(v)) = ctx.validation_context_type
    else {
        panic!("no combined validation context")
    };
    v.default_validation_context
        .unwrap()
        .match_typed_subject_alt_names
        .into_iter()
        .map(|m| match m.matcher.unwrap().match_pattern.unwrap() {
            MatchPattern::Exact(s) => s,
            other => panic!("not exact: {other:?}"),
        })
        .collect()
}

fn translator(policy: OutboundPolicy) -> MeshTranslator {
    MeshTranslator::new(TranslatorConfig {
        outbound_policy: policy,
        ..Default::default()
    })
}

#[test]
fn names_follow_istio_conventions() {
    let snap = snapshot(&[BILL]);
    let t = MeshTranslator::default();
    let set = t.shared(&snap);
    let clusters = set.names(type_url::CLUSTER);
    let want: BTreeSet<String> = [
        format!("outbound|9999||{BILL_HOST}"),
        format!("outbound|9999|v1|{BILL_HOST}"),
        format!("outbound|9999|v2|{BILL_HOST}"),
        "PassthroughCluster".to_owned(),
        "BlackHoleCluster".to_owned(),
    ]
    .into();
    assert_eq!(clusters, want.iter().map(String::as_str).collect());
    assert_eq!(
        set.names(type_url::ENDPOINT),
        clusters
            .iter()
            .copied()
            .filter(|n| n.starts_with("outbound"))
            .collect()
    );
    assert_eq!(set.names(type_url::LISTENER), ["virtualOutbound"].into());
    assert_eq!(set.names(type_url::ROUTE), ["9999"].into());
    assert_eq!(set.names(type_url::NAME_TABLE), [""].into());

    // bill-vm-1 serves 9999 itself; bill-vm-2 maps the port to 19999.
    let vm1 = t.for_node(&snap, &node("10.0.0.5", "demo", "bill"));
    assert_eq!(vm1.names(type_url::CLUSTER), ["inbound|9999||"].into());
    assert_eq!(vm1.names(type_url::LISTENER), ["virtualInbound"].into());
    let vm2 = t.for_node(&snap, &node("10.0.0.6", "demo", "bill"));
    assert_eq!(vm2.names(type_url::CLUSTER), ["inbound|19999||"].into());
}

#[test]
fn virtual_service_splits_90_10_between_subsets() {
    let set = shared(&[BILL]);
    let rc: RouteConfiguration = decode(&set, type_url::ROUTE, "9999");
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.name, format!("{BILL_HOST}:9999"));
    for d in [
        BILL_HOST,
        "bill-service",
        "bill-service.demo",
        "bill-service:9999",
    ] {
        assert!(
            vh.domains.iter().any(|x| x == d),
            "{d} missing: {:?}",
            vh.domains
        );
    }
    let Some(Action::Route(action)) = &vh.routes[0].action else {
        panic!("not a route")
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action.cluster_specifier else {
        panic!("not weighted: {action:?}")
    };
    let got: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        got,
        [
            ("outbound|9999|v1|bill-service.demo.svc.cluster.local", 90),
            ("outbound|9999|v2|bill-service.demo.svc.cluster.local", 10)
        ]
    );
}

#[test]
fn alpn_follows_the_port_protocol() {
    let set = shared(&[BILL, TCP, NOVIP]);
    let http = cluster(&set, &format!("outbound|9999||{BILL_HOST}"));
    assert_eq!(alpn(&http), ["istio-http/1.1", "istio", "http/1.1"]);
    let grpc = cluster(&set, "outbound|7070||inventory.shop.svc.cluster.local");
    assert_eq!(alpn(&grpc), ["istio-h2", "istio", "h2"]);
    assert!(
        grpc.typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    );
    let tcp = cluster(&set, "outbound|5432||postgres.db.svc.cluster.local");
    let m = &tcp.transport_socket_matches;
    assert_eq!(m.len(), 2, "mixed endpoints use transport_socket_matches");
    let Some(SocketConfig::TypedConfig(a)) = &m[0].transport_socket.as_ref().unwrap().config_type
    else {
        panic!()
    };
    let ctx: UpstreamTlsContext = any(a);
    assert_eq!(ctx.common_tls_context.unwrap().alpn_protocols, ["istio"]);
}

#[test]
fn san_matchers_are_exactly_the_endpoint_identities() {
    let set = shared(&[BILL, NOVIP]);
    for subset in ["", "v1", "v2"] {
        let c = cluster(&set, &format!("outbound|9999|{subset}|{BILL_HOST}"));
        assert_eq!(sans(&c), ["spiffe://cluster.local/ns/demo/sa/bill"]);
    }
    let c = cluster(&set, "outbound|7070||inventory.shop.svc.cluster.local");
    assert_eq!(
        sans(&c),
        [
            "spiffe://cluster.local/ns/shop/sa/inventory",
            "spiffe://cluster.local/ns/shop/sa/inventory-legacy"
        ]
    );
}

#[test]
fn external_services_are_plaintext_dns_clusters() {
    let set = shared(&[EXTERNAL]);
    let c = cluster(&set, "outbound|443||api.payments.example.com");
    assert!(c.transport_socket.is_none() && c.transport_socket_matches.is_empty());
    assert_eq!(c.connect_timeout.unwrap().seconds, 2);
    let la = c.load_assignment.unwrap();
    assert_eq!(la.endpoints[0].lb_endpoints.len(), 1);
    assert!(set.names(type_url::ENDPOINT).is_empty());
}

#[test]
fn subsets_filter_endpoints_by_label() {
    let set = shared(&[BILL]);
    let ips = |name: &str| -> Vec<String> {
        let la: ClusterLoadAssignment = decode(&set, type_url::ENDPOINT, name);
        la.endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| format!("{e:?}"))
            .collect()
    };
    let v1 = ips(&format!("outbound|9999|v1|{BILL_HOST}"));
    assert_eq!(v1.len(), 1);
    assert!(v1[0].contains("10.0.0.5"));
    let all = ips(&format!("outbound|9999||{BILL_HOST}"));
    assert_eq!(all.len(), 2);
}

fn vip_of(set: &ResourceSet, host: &str) -> String {
    let table: NameTable = decode(set, type_url::NAME_TABLE, "");
    table.table[host].ips[0].clone()
}

#[test]
fn vips_are_stable_when_unrelated_services_come_and_go() {
    let host = "inventory.shop.svc.cluster.local";
    let alone = vip_of(&shared(&[NOVIP]), host);
    assert!(alone.starts_with("240.240."), "{alone}");
    let extra = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: others, namespace: shop}
spec:
  hosts: [a.shop.svc.cluster.local, b.shop.svc.cluster.local, zz.example.com]
  location: MESH_INTERNAL
  ports: [{number: 7070, name: grpc}]
  resolution: STATIC
  workloadSelector: {labels: {app: others}}
"#;
    let with_others = shared(&[NOVIP, EXTERNAL, extra]);
    assert_eq!(vip_of(&with_others, host), alone);
    assert_eq!(shared(&[NOVIP, BILL]).names(type_url::CLUSTER).len(), 6);
    assert_eq!(vip_of(&shared(&[NOVIP, BILL]), host), alone);

    // The outbound listener matches the same address, not the endpoint's (the proxy finds
    // endpoints from their assignment).
    let l: Listener = decode(&with_others, type_url::LISTENER, "virtualOutbound");
    let chain = l
        .filter_chains
        .iter()
        .find(|c| c.name == format!("outbound|7070||{host}"))
        .unwrap();
    let prefixes: Vec<&str> = chain
        .filter_chain_match
        .as_ref()
        .unwrap()
        .prefix_ranges
        .iter()
        .map(|r| r.address_prefix.as_str())
        .collect();
    assert_eq!(prefixes, [alone.as_str()]);
}

#[test]
fn versions_of_unchanged_resources_do_not_move() {
    let before = shared(&[BILL, TCP]);
    let changed_tcp = TCP.replace("10.0.1.11", "10.0.1.12");
    let after = shared(&[BILL, &changed_tcp]);
    let version = |set: &ResourceSet, t: &str, n: &str| set.get(t, n).unwrap().version.clone();
    for subset in ["", "v1", "v2"] {
        let name = format!("outbound|9999|{subset}|{BILL_HOST}");
        for t in [type_url::CLUSTER, type_url::ENDPOINT] {
            assert_eq!(
                version(&before, t, &name),
                version(&after, t, &name),
                "{t} {name}"
            );
        }
    }
    assert_eq!(
        version(&before, type_url::ROUTE, "9999"),
        version(&after, type_url::ROUTE, "9999")
    );
    let pg = "outbound|5432||postgres.db.svc.cluster.local";
    assert_ne!(
        version(&before, type_url::ENDPOINT, pg),
        version(&after, type_url::ENDPOINT, pg)
    );
    // Moving an endpoint changes its assignment only, never the listener every node holds.
    assert_eq!(
        version(&before, type_url::LISTENER, "virtualOutbound"),
        version(&after, type_url::LISTENER, "virtualOutbound")
    );
    // Translating the same snapshot twice gives identical resources.
    assert_eq!(shared(&[BILL, TCP]), before);
}

fn default_cluster(l: &Listener) -> String {
    let f = &l.default_filter_chain.as_ref().unwrap().filters[0];
    let Some(filter::ConfigType::TypedConfig(a)) = &f.config_type else {
        panic!()
    };
    let p: TcpProxy = any(a);
    let Some(TcpCluster::Cluster(c)) = p.cluster_specifier else {
        panic!()
    };
    c
}

#[test]
fn outbound_policy_picks_the_default_chain() {
    let snap = snapshot(&[BILL]);
    for (policy, want) in [
        (OutboundPolicy::AllowAny, "PassthroughCluster"),
        (OutboundPolicy::RegistryOnly, "BlackHoleCluster"),
    ] {
        let set = translator(policy).shared(&snap);
        let l: Listener = decode(&set, type_url::LISTENER, "virtualOutbound");
        assert_eq!(default_cluster(&l), want);
    }
}

#[test]
fn peer_authentication_decides_the_inbound_chains() {
    let t = MeshTranslator::default();
    let chains = |files: &[&str]| -> Vec<(String, String)> {
        let set = t.for_node(&snapshot(files), &node("10.0.0.5", "demo", "bill"));
        let l: Listener = decode(&set, type_url::LISTENER, "virtualInbound");
        l.filter_chains
            .iter()
            .map(|c| {
                let m = c.filter_chain_match.as_ref().unwrap();
                (c.name.clone(), m.transport_protocol.clone())
            })
            .collect()
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        chains(&[BILL]),
        [
            s("inbound|9999||mtls", "tls"),
            s("inbound|9999||plaintext", "raw_buffer")
        ],
        "PERMISSIVE by default"
    );
    assert_eq!(chains(&[BILL, PEER_AUTH]), [s("inbound|9999||mtls", "tls")]);
    let disable = PEER_AUTH.replace("STRICT", "DISABLE");
    assert_eq!(
        chains(&[BILL, &disable]),
        [s("inbound|9999||plaintext", "")]
    );
}

#[test]
fn a_node_without_workloads_gets_an_empty_inbound() {
    let set = MeshTranslator::default().for_node(&snapshot(&[BILL]), &node("10.9.9.9", "x", "y"));
    let l: Listener = decode(&set, type_url::LISTENER, "virtualInbound");
    assert!(l.filter_chains.is_empty());
    assert_eq!(default_cluster(&l), "BlackHoleCluster");
    assert_eq!(set.names(type_url::CLUSTER).len(), 0);
}

#[test]
fn name_table_has_istio_type_url() {
    let set = shared(&[BILL]);
    let r = set.get(type_url::NAME_TABLE, "").unwrap();
    assert_eq!(r.type_url(), type_url::NAME_TABLE);
    let table: NameTable = decode(&set, type_url::NAME_TABLE, "");
    let info = &table.table[BILL_HOST];
    assert_eq!(
        (info.shortname.as_str(), info.namespace.as_str()),
        ("bill-service", "demo")
    );
}

#[test]
fn virtual_service_matches_and_timeout_are_translated() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bill-service, namespace: demo}
spec:
  hosts: [bill-service]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-canary: {exact: "yes"}}
    - uri: {regex: "/v[0-9]+/.*"}
      port: 8080
    timeout: 1.5s
    route:
    - destination: {host: bill-service, subset: v2}
  - redirect: {uri: /moved}
  - route:
    - destination: {host: bill-service, subset: v1}
"#;
    let bill_without_vs = BILL.split("---").take(4).collect::<Vec<_>>().join("---");
    let set = shared(&[&bill_without_vs, vs]);
    let rc: RouteConfiguration = decode(&set, type_url::ROUTE, "9999");
    let routes = &rc.virtual_hosts[0].routes;
    // The regex match is for port 8080.
    assert_eq!(routes.len(), 3, "{routes:#?}");
    let first = &routes[0];
    assert_eq!(first.name, "api");
    let m = first.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(
            envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix(
                "/api".to_owned()
            )
        )
    );
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "x-canary");
    let Some(Action::Route(a)) = &first.action else {
        panic!()
    };
    let t = a.timeout.unwrap();
    assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
    assert_eq!(
        a.cluster_specifier,
        Some(ClusterSpecifier::Cluster(format!(
            "outbound|9999|v2|{BILL_HOST}"
        )))
    );
    let Some(Action::Redirect(r)) = &routes[1].action else {
        panic!("{:?}", routes[1].action)
    };
    assert_eq!(
        r.path_rewrite_specifier,
        Some(
            envoy_types::pb::envoy::config::route::v3::redirect_action::PathRewriteSpecifier::PathRedirect(
                "/moved".to_owned()
            )
        )
    );
    let Some(Action::Route(a)) = &routes[2].action else {
        panic!()
    };
    assert_eq!(
        a.cluster_specifier,
        Some(ClusterSpecifier::Cluster(format!(
            "outbound|9999|v1|{BILL_HOST}"
        )))
    );
}

//! `tcp` and `tls` routes of a `VirtualService` in `virtualOutbound`.

use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier;

use super::*;

pub const L4: &str = include_str!("../../../../tests/fixtures/translate/l4.yaml");

fn listener() -> Listener {
    let set = MeshTranslator::default().shared(&snapshot(&[L4]));
    decode(&set, type_url::LISTENER, "virtualOutbound")
}

/// (port, addresses, server names) → clusters with weights (1 for a single cluster), per
/// chain in order.
/// A chain: port, addresses, server names, (cluster, weight)s.
type Summary = (u32, Vec<String>, Vec<String>, Vec<(String, u32)>);

fn chains(l: &Listener) -> Vec<Summary> {
    l.filter_chains.iter().map(summary).collect()
}

fn summary(c: &FilterChain) -> Summary {
    let m = c.filter_chain_match.clone().unwrap();
    let addrs = m
        .prefix_ranges
        .iter()
        .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.unwrap().value))
        .collect();
    let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a)) =
        &c.filters[0].config_type
    else {
        panic!("no typed config")
    };
    let tcp: TcpProxy = any(a);
    let to = match tcp.cluster_specifier.unwrap() {
        ClusterSpecifier::Cluster(c) => vec![(c, 1)],
        ClusterSpecifier::WeightedClusters(w) => {
            w.clusters.into_iter().map(|c| (c.name, c.weight)).collect()
        }
    };
    (m.destination_port.unwrap().value, addrs, m.server_names, to)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn tcp_routes_become_chains_in_order_with_weighted_clusters() {
    let l = listener();
    let pg: Vec<_> = chains(&l).into_iter().filter(|c| c.0 == 5432).collect();
    let v1 = "outbound|5432|v1|postgres.db.svc.cluster.local".to_owned();
    let v2 = "outbound|5432|v2|postgres.db.svc.cluster.local".to_owned();
    assert_eq!(
        pg,
        vec![
            // The sourceLabels match is per source: not translated, so never applies. The
            // port-6543 match is for another port.
            (5432, s(&["10.96.0.21/32"]), vec![], vec![(v2.clone(), 1)]),
            (
                5432,
                s(&["10.96.0.20/32"]),
                vec![],
                vec![(v1, 80), (v2, 20)]
            ),
            // The match-less route after it is never reached; no default is added.
        ]
    );
    let names: Vec<_> = l
        .filter_chains
        .iter()
        .filter(|c| summary(c).0 == 5432)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "outbound|5432||postgres.db.svc.cluster.local|tcp[1].match[0]",
            "outbound|5432||postgres.db.svc.cluster.local",
        ]
    );
}

#[test]
fn tls_routes_match_server_names_and_unmatched_names_go_to_the_service() {
    let l = listener();
    let edge: Vec<_> = chains(&l).into_iter().filter(|c| c.0 == 443).collect();
    let a = "outbound|8443||backend-a.demo.svc.cluster.local".to_owned();
    let b = "outbound|8443||backend-b.demo.svc.cluster.local".to_owned();
    let vip = s(&["10.96.0.30/32"]);
    assert_eq!(
        edge,
        vec![
            (
                443,
                vip.clone(),
                s(&["a.example.com"]),
                vec![(a.clone(), 1)]
            ),
            (
                443,
                vip.clone(),
                s(&["b.example.com"]),
                vec![(a, 50), (b, 50)]
            ),
            (
                443,
                vip,
                vec![],
                vec![("outbound|443||a.example.com".to_owned(), 1)]
            ),
        ],
        "b.example.com shares the address: its chains are a.example.com's"
    );
    let inspector: Vec<_> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(inspector, ["envoy.filters.listener.tls_inspector"]);
}

#[test]
fn without_tls_routes_the_listener_has_no_inspector() {
    let set = MeshTranslator::default().shared(&snapshot(&[TCP]));
    let l: Listener = decode(&set, type_url::LISTENER, "virtualOutbound");
    assert!(l.listener_filters.is_empty());
}

#[test]
fn snapshot_l4_routes() {
    insta::assert_snapshot!(
        "l4_routes",
        render_any(&pack_any(listener()).type_url, &listener().encode_to_vec())
    );
}

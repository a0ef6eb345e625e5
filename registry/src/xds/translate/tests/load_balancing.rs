//! Consistent hashing, locality priorities per node and `sourceLabels` routes per node.

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route::Action, route_action::ClusterSpecifier,
};

use super::*;

const V1: &str = "outbound|8080|v1|shop.demo.svc.cluster.local";
const ALL: &str = "outbound|8080||shop.demo.svc.cluster.local";

fn priorities(cla: &ClusterLoadAssignment) -> Vec<(String, u32)> {
    cla.endpoints
        .iter()
        .map(|g| (g.locality.clone().unwrap_or_default().region, g.priority))
        .collect()
}

#[test]
fn locality_assignments_are_per_node_with_istio_priorities() {
    let snap = snapshot(&[LOAD_BALANCING]);
    let t = MeshTranslator::default();
    assert!(
        t.shared(&snap).get(type_url::ENDPOINT, ALL).is_none(),
        "with locality load balancing the assignment is not shared"
    );
    let eu = t.for_node(&snap, &located_node("eu-west/zone-a", &[]));
    let cla: ClusterLoadAssignment = decode(&eu, type_url::ENDPOINT, ALL);
    let mut got = priorities(&cla);
    got.sort();
    // Same zone 0, same region 1, the failover region (ap-south) 2, the rest 3.
    assert_eq!(
        got,
        [
            ("ap-south".to_owned(), 2),
            ("eu-west".to_owned(), 0),
            ("eu-west".to_owned(), 1),
            ("us-east".to_owned(), 3)
        ]
    );
    let us = t.for_node(&snap, &located_node("us-east/zone-a", &[]));
    let cla: ClusterLoadAssignment = decode(&us, type_url::ENDPOINT, ALL);
    let mut got = priorities(&cla);
    got.sort();
    assert_eq!(
        got,
        [
            ("ap-south".to_owned(), 1),
            ("eu-west".to_owned(), 1),
            ("eu-west".to_owned(), 1),
            ("us-east".to_owned(), 0)
        ]
    );
    // A node without a locality: everything at priority 0.
    let nowhere = t.for_node(&snap, &node("10.0.0.8", "demo", "front"));
    let cla: ClusterLoadAssignment = decode(&nowhere, type_url::ENDPOINT, V1);
    assert!(cla.endpoints.iter().all(|g| g.priority == 0));
}

fn first_cluster(set: &ResourceSet) -> String {
    let rc: RouteConfiguration = decode(set, type_url::ROUTE, "8080");
    let route = &rc.virtual_hosts[0].routes[0];
    match &route.action {
        Some(Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => c.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn source_labels_give_each_node_its_own_routes() {
    let snap = snapshot(&[LOAD_BALANCING]);
    let t = MeshTranslator::default();
    assert!(t.shared(&snap).get(type_url::ROUTE, "8080").is_none());
    let tester = t.for_node(
        &snap,
        &located_node("eu-west/zone-a", &[("role", "tester")]),
    );
    let other = t.for_node(&snap, &located_node("eu-west/zone-a", &[("role", "user")]));
    assert_eq!(
        first_cluster(&tester),
        "outbound|8080|v2|shop.demo.svc.cluster.local"
    );
    assert_eq!(first_cluster(&other), V1);
}

#[test]
fn bill_without_such_rules_has_nothing_per_node_but_its_inbound() {
    let snap = snapshot(&[BILL]);
    let own = MeshTranslator::default().for_node(&snap, &located_node("eu-west/zone-a", &[]));
    assert!(own.names(type_url::ENDPOINT).is_empty());
    assert!(own.names(type_url::ROUTE).is_empty());
}

#[test]
fn max_requests_per_connection_reaches_the_server_side_inbound_cluster_too() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    let limit = |c: &Cluster| {
        let any = c.typed_extension_protocol_options.values().next()?;
        let opts = HttpProtocolOptions::decode(any.value.as_slice()).ok()?;
        Some(
            opts.common_http_protocol_options?
                .max_requests_per_connection?
                .value,
        )
    };
    let snap = snapshot(&[TRAFFIC]);
    let t = MeshTranslator::default();
    let outbound: Cluster = decode(
        &t.shared(&snap),
        type_url::CLUSTER,
        "outbound|8080||shop.demo.svc.cluster.local",
    );
    assert_eq!(limit(&outbound), Some(100));
    let server = t.for_node(&snap, &node("10.0.9.1", "demo", "shop"));
    let inbound: Cluster = decode(&server, type_url::CLUSTER, "inbound|8080||");
    assert_eq!(limit(&inbound), Some(100));
    let bill = t.for_node(&snapshot(&[BILL]), &node("10.0.0.6", "demo", "bill"));
    for c in bill.of_type(type_url::CLUSTER) {
        let c = Cluster::decode(c.body.value.as_slice()).unwrap();
        assert_eq!(limit(&c), None, "{}", c.name);
    }
}

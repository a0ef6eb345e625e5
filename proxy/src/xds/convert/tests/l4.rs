//! TLS routes by server name and weighted TCP splits on outbound chains.

use envoy_types::pb::envoy::config::listener::v3::ListenerFilter;

use super::*;

fn split_filter(split: &[(&str, u32)]) -> Filter {
    let clusters = split
        .iter()
        .map(
            |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                name: (*name).into(),
                weight: *weight,
                ..Default::default()
            },
        )
        .collect();
    let tcp = TcpProxy {
        stat_prefix: "split".into(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
            tcp_proxy::WeightedCluster { clusters },
        )),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack_any(tcp))),
    }
}

/// bill's clusters with a listener of three chains at 10.0.0.9:443: `a.test` to v1,
/// `*.b.test` split 80/20 over v1 and v2, anything else to v2.
fn tls_routes() -> (Resources, Listener) {
    let mut res = bill();
    let mut l = outbound_listener(443, &["10.0.0.9"], tcp_filter(V1), "PassthroughCluster");
    l.listener_filters.push(ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        ..Default::default()
    });
    let chain = |names: &[&str], filter: Filter| {
        let mut c = l.filter_chains[0].clone();
        if let Some(m) = c.filter_chain_match.as_mut() {
            m.server_names = names.iter().map(|n| (*n).into()).collect();
        }
        c.filters = vec![filter];
        c
    };
    let chains = vec![
        chain(&["a.test"], tcp_filter(V1)),
        chain(&["*.b.test"], split_filter(&[(V1, 80), (V2, 20)])),
        chain(&[], tcp_filter(V2)),
    ];
    l.filter_chains = chains;
    put(&mut res, ResourceType::Listener, pack_any(l.clone()));
    (res, l)
}

#[test]
fn chains_of_one_address_become_tls_routes_by_server_name() {
    let (res, _) = tls_routes();
    let spec = convert(&res, &ctx()).unwrap().spec;
    let tls = spec
        .outbound
        .services
        .iter()
        .find(|s| s.addresses.iter().any(|a| a.port() == 443))
        .unwrap();
    let TargetSpec::L4(l4) = &tls.target else {
        panic!("{:?}", tls.target)
    };
    let routes: Vec<_> = l4
        .sni
        .iter()
        .map(|r| {
            let to: Vec<_> = r
                .clusters
                .iter()
                .map(|c| (c.cluster.as_str(), c.weight))
                .collect();
            (r.server_names.clone(), to)
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            (vec!["a.test".to_owned()], vec![(V1, 1)]),
            (vec!["*.b.test".to_owned()], vec![(V1, 80), (V2, 20)]),
        ]
    );
    let default: Vec<_> = l4
        .default
        .iter()
        .flatten()
        .map(|c| c.cluster.as_str())
        .collect();
    assert_eq!(default, [V2]);
    let config = crate::ProxyConfig::build(&spec).unwrap();
    let dst = "10.0.0.9:443".parse().unwrap();
    let crate::config::ServiceTarget::L4(routes) = config.outbound().service(dst).unwrap().target()
    else {
        panic!("not L4")
    };
    let pick = |sni| {
        routes.choose(sni).unwrap().clusters()[0]
            .0
            .name()
            .to_owned()
    };
    assert_eq!(pick(Some("a.test")), V1);
    assert_eq!(pick(Some("x.b.test")), V1);
    assert_eq!(routes.choose(Some("x.b.test")).unwrap().clusters().len(), 2);
    assert_eq!(pick(Some("c.test")), V2);
    assert_eq!(pick(None), V2);
}

#[test]
fn server_names_on_an_http_chain_or_two_defaults_are_refused() {
    let (mut res, mut l) = tls_routes();
    let extra = l.filter_chains[2].clone();
    l.filter_chains.push(extra);
    put(&mut res, ResourceType::Listener, pack_any(l.clone()));
    assert!(rejection(&res).contains("a second chain without server_names"));

    l.filter_chains.pop();
    l.filter_chains[0].filters = vec![hcm(RouteSpecifier::Rds(Rds {
        config_source: Some(ads()),
        route_config_name: "9999".into(),
    }))];
    put(&mut res, ResourceType::Listener, pack_any(l));
    assert!(rejection(&res).contains("server_names is supported on TCP proxy chains only"));
}

#[test]
fn a_weighted_split_with_no_weight_is_refused() {
    let mut res = bill();
    let l = outbound_listener(
        5432,
        &["10.0.0.7"],
        split_filter(&[(V1, 0), (V2, 0)]),
        "PassthroughCluster",
    );
    put(&mut res, ResourceType::Listener, pack_any(l));
    assert!(rejection(&res).contains("no cluster with a weight above 0"));
}

#[test]
fn names_no_tls_route_takes_pass_through_when_the_chain_without_names_is_original_dst() {
    let (mut res, mut l) = tls_routes();
    l.filter_chains[2].filters = vec![tcp_filter("PassthroughCluster")];
    put(&mut res, ResourceType::Listener, pack_any(l));
    let spec = convert(&res, &ctx()).unwrap().spec;
    let tls = spec
        .outbound
        .services
        .iter()
        .find(|s| s.addresses.iter().any(|a| a.port() == 443))
        .unwrap();
    let TargetSpec::L4(l4) = &tls.target else {
        panic!("{:?}", tls.target)
    };
    assert_eq!(l4.sni.len(), 2);
    assert!(l4.default.is_none(), "{:?}", l4.default);
    let config = crate::ProxyConfig::build(&spec).unwrap();
    let dst = "10.0.0.9:443".parse().unwrap();
    let crate::config::ServiceTarget::L4(routes) = config.outbound().service(dst).unwrap().target()
    else {
        panic!("not L4")
    };
    assert!(routes.choose(Some("c.test")).is_none());
}

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use http::HeaderMap;

use super::super::spec::*;
use super::super::*;

fn cluster(name: &str, addr: &str, tls: UpstreamTlsSpec) -> ClusterSpec {
    ClusterSpec {
        name: name.into(),
        endpoints: vec![EndpointSpec {
            address: addr.parse().unwrap(),
            weight: 1,
            labels: BTreeMap::new(),
            tls: None,
        }],
        lb: LbPolicy::RoundRobin,
        tls,
        connect_timeout: None,
        http2: false,
        thresholds: Default::default(),
        outlier: None,
        fallback: None,
    }
}

fn route(name: &str, path: PathMatchSpec, clusters: &[(&str, u32)]) -> RouteSpec {
    RouteSpec {
        name: name.into(),
        path,
        headers: vec![],
        clusters: clusters
            .iter()
            .map(|(c, w)| WeightedClusterSpec {
                cluster: c.to_string(),
                weight: *w,
            })
            .collect(),
        timeout: None,
        policy: Default::default(),
    }
}

fn http_service(name: &str, addr: &str, routes: Vec<RouteSpec>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        addresses: vec![addr.parse().unwrap()],
        endpoints_of: None,
        protocol: Protocol::Http1,
        target: TargetSpec::Http(RouteTableSpec {
            name: name.into(),
            virtual_hosts: vec![VirtualHostSpec {
                name: name.into(),
                domains: vec!["*".into()],
                routes,
                rate_limit: None,
            }],
        }),
    }
}

#[test]
fn a_good_spec_builds_and_routes() {
    let mut v2 = route("v2", PathMatchSpec::Prefix("/".into()), &[("v2", 1)]);
    v2.headers.push(HeaderMatchSpec {
        name: "x-version".into(),
        value: HeaderValueSpec::Exact("2".into()),
        invert: false,
    });
    let spec = ConfigSpec {
        version: "1".into(),
        clusters: vec![
            cluster("v1", "10.0.0.1:80", UpstreamTlsSpec::Plaintext),
            cluster(
                "v2",
                "10.0.0.2:80",
                UpstreamTlsSpec::Mtls {
                    expected_identities: vec!["spiffe://cluster.local/ns/demo/sa/bill".into()],
                },
            ),
        ],
        outbound: OutboundSpec {
            services: vec![http_service(
                "bill",
                "240.240.0.1:9999",
                vec![
                    route(
                        "exact",
                        PathMatchSpec::Exact("/healthz".into()),
                        &[("v1", 1)],
                    ),
                    v2,
                    route(
                        "items",
                        PathMatchSpec::Regex("/items/[0-9]+".into()),
                        &[("v1", 1)],
                    ),
                ],
            )],
            unknown_destination: UnknownDestination::Refuse,
        },
        inbound: InboundSpec::default(),
    };
    let config = ProxyConfig::build(&spec).unwrap();
    let service = config
        .outbound()
        .service("240.240.0.1:9999".parse().unwrap())
        .unwrap();
    let ServiceTarget::Http(table) = service.target() else {
        panic!("not http")
    };
    let mut headers = HeaderMap::new();
    let name =
        |path: &str, h: &HeaderMap| table.route("bill", path, h).map(|r| r.name().to_owned());
    assert_eq!(name("/healthz", &headers).as_deref(), Some("exact"));
    assert_eq!(name("/items/12", &headers).as_deref(), Some("items"));
    assert_eq!(name("/items/12/x", &headers), None);
    headers.insert("x-version", "2".parse().unwrap());
    assert_eq!(name("/items/12", &headers).as_deref(), Some("v2"));
    assert!(
        config
            .outbound()
            .service("240.240.0.1:80".parse().unwrap())
            .is_none()
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut empty = cluster("empty", "10.0.0.1:80", UpstreamTlsSpec::Plaintext);
    empty.endpoints.clear();
    let spec = ConfigSpec {
        version: "1".into(),
        clusters: vec![
            empty,
            cluster(
                "bad-id",
                "10.0.0.1:80",
                UpstreamTlsSpec::Mtls {
                    expected_identities: vec!["https://example.com".into()],
                },
            ),
            cluster("ok", "10.0.0.1:80", UpstreamTlsSpec::Plaintext),
            cluster("ok", "10.0.0.2:80", UpstreamTlsSpec::Plaintext),
        ],
        outbound: OutboundSpec {
            services: vec![
                http_service(
                    "a",
                    "240.240.0.1:80",
                    vec![
                        route("missing", PathMatchSpec::Prefix("/".into()), &[("nope", 1)]),
                        route("zero", PathMatchSpec::Prefix("/".into()), &[("ok", 0)]),
                        route("re", PathMatchSpec::Regex("(".into()), &[("ok", 1)]),
                    ],
                ),
                ServiceSpec {
                    name: "tcp".into(),
                    addresses: vec!["240.240.0.1:80".parse().unwrap()],
                    endpoints_of: None,
                    protocol: Protocol::Http2,
                    target: TargetSpec::Tcp {
                        cluster: "ok".into(),
                    },
                },
            ],
            unknown_destination: UnknownDestination::Passthrough,
        },
        inbound: InboundSpec {
            default_mode: MtlsMode::Strict,
            ports: vec![InboundPortSpec {
                port: 8080,
                app_port: 0,
                protocol: Protocol::Http1,
                mode: None,
            }],
        },
    };
    let errors = ProxyConfig::build(&spec).unwrap_err();
    let text = errors.to_string();
    for want in [
        r#"cluster "bad-id": expected identity "https://example.com""#,
        r#"cluster "ok": defined twice"#,
        r#"route "missing": cluster "nope" does not exist"#,
        r#"route "zero": sends to no cluster"#,
        r#"route "re": regex "(""#,
        r#"service "tcp": protocol Http2 needs a route table"#,
        "inbound port 8080: port 0 is not a port",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    assert_eq!(errors.0.len(), 7, "{text}");
}

fn tcp_service(name: &str, addr: &str, cluster: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        addresses: vec![addr.parse().unwrap()],
        endpoints_of: Some(cluster.into()),
        protocol: Protocol::Tcp,
        target: TargetSpec::Tcp {
            cluster: cluster.into(),
        },
    }
}

#[test]
fn endpoints_reach_their_service_at_its_ports_without_taking_a_vip() {
    let plain = UpstreamTlsSpec::Plaintext;
    let mut b = cluster("b", "10.0.0.2:9000", plain.clone());
    // One endpoint of b is also a (strange) VIP of a, one is shared with c.
    b.endpoints.push(EndpointSpec {
        address: "240.240.0.1:9000".parse().unwrap(),
        ..b.endpoints[0].clone()
    });
    let c = cluster("c", "10.0.0.2:9000", plain.clone());
    let spec = ConfigSpec {
        clusters: vec![cluster("a", "10.0.0.1:80", plain), b, c],
        outbound: OutboundSpec {
            services: vec![
                tcp_service("a", "240.240.0.1:80", "a"),
                tcp_service("b", "240.240.0.2:80", "b"),
                tcp_service("c", "240.240.0.3:80", "c"),
            ],
            unknown_destination: UnknownDestination::Refuse,
        },
        ..Default::default()
    };
    let config = ProxyConfig::build(&spec).unwrap();
    let to = |addr: &str| {
        config
            .outbound()
            .service(addr.parse().unwrap())
            .map(|s| s.name().to_owned())
    };
    // Endpoints match at the service port, not at their own port.
    assert_eq!(to("10.0.0.1:80").as_deref(), Some("a"));
    assert_eq!(to("10.0.0.1:81"), None);
    assert_eq!(to("10.0.0.2:9000"), None);
    // The first service in order keeps a shared endpoint; a VIP stays with its service.
    assert_eq!(to("10.0.0.2:80").as_deref(), Some("b"));
    assert_eq!(to("240.240.0.1:80").as_deref(), Some("a"));
    assert_eq!(to("240.240.0.3:80").as_deref(), Some("c"));

    let mut missing = spec.clone();
    missing.outbound.services[2].endpoints_of = Some("nope".into());
    let text = ProxyConfig::build(&missing).unwrap_err().to_string();
    assert!(
        text.contains(r#"service "c": endpoint cluster "nope" does not exist"#),
        "{text}"
    );
}

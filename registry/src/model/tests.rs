#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::types::{Locality, ObjectName, ServiceAccount, Weight};
use super::*;

#[test]
fn protocol_follows_istio_port_naming() {
    let cases = [
        ("http", Protocol::Http),
        ("http-foo", Protocol::Http),
        ("HTTP-web", Protocol::Http),
        ("http2", Protocol::Http2),
        ("h2", Protocol::Http2),
        ("https", Protocol::Https),
        ("grpc", Protocol::Grpc),
        ("grpc-web", Protocol::GrpcWeb),
        ("grpc-web-ui", Protocol::GrpcWeb),
        ("grpc-internal", Protocol::Grpc),
        ("tcp", Protocol::Tcp),
        ("tls-passthrough", Protocol::Tls),
        ("mongo", Protocol::Mongo),
        ("redis-cache", Protocol::Redis),
        ("mysql", Protocol::Mysql),
        ("udp-dns", Protocol::Udp),
        ("metrics", Protocol::Tcp),
        ("", Protocol::Tcp),
    ];
    for (name, want) in cases {
        assert_eq!(Protocol::from_port_name(name), want, "port name {name:?}");
    }
}

#[test]
fn explicit_protocol_then_app_protocol_then_name() {
    assert_eq!(
        Protocol::select(Some("GRPC"), Some("http"), "tcp"),
        Protocol::Grpc
    );
    assert_eq!(
        Protocol::select(None, Some("http2"), "tcp-x"),
        Protocol::Http2
    );
    assert_eq!(
        Protocol::select(None, Some("kubernetes.io/h2c"), "tcp"),
        Protocol::Http2
    );
    assert_eq!(Protocol::select(None, None, "grpc-web"), Protocol::GrpcWeb);
    assert_eq!(Protocol::select(None, None, "web"), Protocol::Tcp);
    assert_eq!(Protocol::GrpcWeb.to_string(), "GRPC-WEB");
    assert!(Protocol::Grpc.is_http());
    assert!(!Protocol::Tls.is_http());
}

#[test]
fn hostnames_are_validated_and_short_names_qualified() {
    let ns = Namespace::new("demo").unwrap();
    let short = Hostname::new("bill-service").unwrap();
    assert_eq!(
        short.qualify(&ns, "cluster.local").as_str(),
        "bill-service.demo.svc.cluster.local"
    );
    let fqdn = Hostname::new("api.example.com").unwrap();
    assert_eq!(fqdn.qualify(&ns, "cluster.local"), fqdn);
    let wild = Hostname::new("*.example.com").unwrap();
    assert!(wild.is_wildcard());
    assert_eq!(wild.qualify(&ns, "cluster.local"), wild);
    assert_eq!(Hostname::new("*").unwrap().qualify(&ns, "x").as_str(), "*");

    for bad in ["", "UPPER.example.com", "a..b", "-a.b", "a.*.b", "a_b.c"] {
        assert!(Hostname::new(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        Hostname::new("a..b").unwrap_err().to_string(),
        "\"a..b\" is not a valid host name (label \"\" must be 1-63 lower-case letters, digits or '-')"
    );
}

#[test]
fn ports_and_weights() {
    assert_eq!(PortNumber::new(9999).unwrap().get(), 9999);
    assert_eq!(
        PortNumber::new(70000).unwrap_err().to_string(),
        "70000 is not a valid port"
    );
    assert!(PortNumber::new(0).is_err());
    assert_eq!(Weight::from_istio(0).get(), 1);
    assert_eq!(Weight::from_istio(5).get(), 5);
}

#[test]
fn labels_validate_and_select() {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let workload = Labels::new(map(&[("app", "bill"), ("version", "v1")])).unwrap();
    let selector = Labels::new(map(&[("app", "bill")])).unwrap();
    assert!(selector.selects(&workload));
    assert!(!workload.selects(&selector));
    assert!(Labels::default().selects(&workload));
    assert!(Labels::new(map(&[("app.kubernetes.io/name", "x")])).is_ok());
    assert_eq!(
        Labels::new(map(&[("bad key", "x")]))
            .unwrap_err()
            .to_string(),
        "\"bad key\" is not a valid label key"
    );
    assert!(Labels::new(map(&[("k", "-v")])).is_err());
}

#[test]
fn identity_is_a_spiffe_id() {
    let id = Identity::new(TrustDomain::default(), "demo", "bill").unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/demo/sa/bill");
    assert_eq!(ServiceAccount::default_account().as_str(), "default");
    assert!(TrustDomain::new("Example.COM").is_err());
}

#[test]
fn localities_and_names() {
    let l = Locality::parse("us-east/zone-1/rack-2").unwrap();
    assert_eq!(
        (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
        ("us-east", "zone-1", "rack-2")
    );
    assert_eq!(Locality::parse("eu").unwrap().to_string(), "eu");
    assert!(Locality::parse("a//b").is_err());
    assert!(Locality::parse("a/b/c/d").is_err());
    assert!(ObjectName::new("bill-service.v1").is_ok());
    assert!(ObjectName::new("Bill").is_err());
    assert!(Namespace::new("a.b").is_err());
}

#[test]
fn kinds_accept_istio_api_versions() {
    assert!(Kind::ServiceEntry.accepts_api_version("networking.istio.io/v1"));
    assert!(Kind::VirtualService.accepts_api_version("networking.istio.io/v1alpha3"));
    assert!(Kind::AuthorizationPolicy.accepts_api_version("security.istio.io/v1beta1"));
    assert!(!Kind::AuthorizationPolicy.accepts_api_version("networking.istio.io/v1"));
    assert!(!Kind::ServiceEntry.accepts_api_version("networking.istio.io/v2"));
    assert_eq!(Kind::parse("Gateway"), Some(Kind::Gateway));
    assert_eq!(Kind::parse("Service"), None);
}

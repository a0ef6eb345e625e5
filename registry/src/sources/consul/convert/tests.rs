#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::model::TrustDomain;
use crate::sources::consul::api::{AgentService, Node, Weights};

fn settings() -> ConsulSettings {
    ConsulSettings::new(
        "http://127.0.0.1:8500".parse().unwrap(),
        TrustDomain::default(),
    )
}

fn entry(
    id: &str,
    node_addr: &str,
    addr: &str,
    port: u32,
    meta: &[(&str, &str)],
    tags: &[&str],
) -> HealthEntry {
    HealthEntry {
        node: Node {
            node: format!("node-{id}"),
            address: node_addr.into(),
            datacenter: "dc1".into(),
            meta: BTreeMap::from([("rack".to_owned(), "r1".to_owned())]),
            ..Node::default()
        },
        service: AgentService {
            id: id.into(),
            service: "web".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            address: addr.into(),
            meta: meta
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port,
            weights: Some(Weights {
                passing: 3,
                warning: 1,
            }),
            modify_index: 42,
        },
        checks: Vec::new(),
    }
}

#[test]
fn instances_become_endpoints_of_web_service_consul() {
    let entries = [
        entry(
            "web-1",
            "10.0.0.1",
            "",
            8080,
            &[("version", "v1")],
            &["env=prod", "canary"],
        ),
        entry("web-2", "10.0.0.2", "10.9.0.2", 8080, &[], &[]),
        entry("web-3", "10.0.0.3", "", 9090, &[], &[]),
    ];
    let out = convert("web", &entries, 77, &settings());
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let svc = out.service.unwrap();
    assert_eq!(svc.hostname.as_str(), "web.service.consul");
    assert_eq!(svc.location, MeshLocation::External);
    let ports: Vec<(u16, &str)> = svc
        .ports
        .iter()
        .map(|p| (p.number.get(), p.name.as_str()))
        .collect();
    assert_eq!(ports, [(8080, "tcp-8080"), (9090, "tcp-9090")]);
    let eps: Vec<(String, u16)> = svc
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.port.get()))
        .collect();
    assert_eq!(
        eps,
        [
            ("10.0.0.1".into(), 8080),
            ("10.9.0.2".into(), 8080),
            ("10.0.0.3".into(), 9090)
        ]
    );
    let first = &svc.endpoints[0];
    assert_eq!(first.labels.get("env"), Some("prod"));
    assert_eq!(first.labels.get("canary"), Some(""));
    assert_eq!(first.labels.get("version"), Some("v1"));
    assert_eq!(first.labels.get("rack"), Some("r1"));
    assert_eq!(first.weight.get(), 3);
    assert_eq!(first.locality.as_ref().unwrap().region, "dc1");
    assert_eq!(first.provenance.source.as_str(), "consul");
    assert_eq!(
        &*first.provenance.object,
        "consul service web, instance web-1 on node node-web-1"
    );
    assert_eq!(&*first.provenance.revision, "42");
    assert_eq!(&*svc.provenance.revision, "77");
}

#[test]
fn a_bad_instance_is_rejected_alone() {
    let entries = [
        entry("web-1", "10.0.0.1", "", 8080, &[], &[]),
        entry("web-2", "", "web-2.internal", 8080, &[], &[]),
        entry("web-3", "", "", 8080, &[], &[]),
        entry(
            "web-4",
            "10.0.0.4",
            "",
            8080,
            &[(META_PROTOCOL, "carrier-pigeon")],
            &[],
        ),
    ];
    let out = convert("web", &entries, 1, &settings());
    assert_eq!(out.service.unwrap().endpoints.len(), 1);
    let reasons: Vec<String> = out
        .rejected
        .iter()
        .map(|r| format!("{}: {}", r.object, r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            "consul service web, instance web-2 on node node-web-2: address \"web-2.internal\" is not an IP address (hostmesh needs IP endpoints)",
            "consul service web, instance web-3 on node node-web-3: no address: neither Service.Address nor the node's Address is set",
            "consul service web, instance web-4 on node node-web-4: hostmesh-protocol \"carrier-pigeon\" is not a protocol",
        ]
    );
}

#[test]
fn meshed_instances_make_a_mesh_internal_service_with_identities() {
    let meta = [
        (META_MESHED, "true"),
        (META_SERVICE_ACCOUNT, "web"),
        (META_PROTOCOL, "http"),
    ];
    let entries = [entry("web-1", "10.0.0.1", "", 8080, &meta, &[])];
    let svc = convert("web", &entries, 1, &settings()).service.unwrap();
    assert_eq!(svc.location, MeshLocation::Internal);
    assert_eq!(svc.ports[0].protocol, Protocol::Http);
    assert_eq!(svc.ports[0].name, "http-8080");
    let e = &svc.endpoints[0];
    assert_eq!(
        e.identity.to_string(),
        "spiffe://cluster.local/ns/default/sa/web"
    );
    assert_eq!(e.labels.get("security.istio.io/tlsMode"), Some("istio"));
    // One plaintext instance makes the whole service plaintext.
    let mixed = [
        entry("web-1", "10.0.0.1", "", 8080, &meta, &[]),
        entry("web-2", "10.0.0.2", "", 8080, &[], &[]),
    ];
    let svc = convert("web", &mixed, 1, &settings()).service.unwrap();
    assert_eq!(svc.location, MeshLocation::External);
    assert!(
        svc.endpoints
            .iter()
            .all(|e| e.labels.get("security.istio.io/tlsMode").is_none())
    );
}

#[test]
fn a_name_that_is_not_dns_is_rejected_and_no_instance_means_no_service() {
    let out = convert(
        "Web_Admin",
        &[entry("a", "10.0.0.1", "", 80, &[], &[])],
        1,
        &settings(),
    );
    assert!(out.service.is_none());
    assert_eq!(out.rejected.len(), 1);
    assert!(
        out.rejected[0]
            .reason
            .contains("not a valid mesh host name"),
        "{:?}",
        out.rejected
    );
    assert_eq!(convert("web", &[], 1, &settings()), Converted::default());
}

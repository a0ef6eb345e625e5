#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

fn service(extra: serde_json::Value) -> KubeService {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7",
            "labels": {"app": "web"}},
        "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [
            {"name": "http-api", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "appProtocol": "http", "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"}
        ]}
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn slice(name: &str, endpoints: serde_json::Value, address_type: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "9",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "http-api", "port": 8080}, {"name": "metrics", "port": 9091}]
    }))
    .unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

#[test]
fn a_service_becomes_a_mesh_service_with_ready_endpoints() {
    let s = slice(
        "web-abc",
        json!([
            {"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "zone": "eu-west-1a"},
            {"addresses": ["10.1.0.6"]},
            {"addresses": ["10.1.0.7"], "conditions": {"ready": false}}
        ]),
        "IPv4",
    );
    let c = convert(&service(json!({})), &[&s], "cluster.local", &td());
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let svc = c.service.unwrap();
    assert_eq!(svc.hostname.as_str(), "web.shop.svc.cluster.local");
    assert_eq!(svc.addresses, vec!["10.96.0.10".to_owned()]);
    let ports: Vec<_> = svc
        .ports
        .iter()
        .map(|p| (p.number.get(), p.protocol.as_str()))
        .collect();
    assert_eq!(ports, vec![(80, "HTTP"), (9090, "HTTP")]);
    let eps: Vec<_> = svc
        .endpoints
        .iter()
        .map(|e| (e.service_port.get(), e.address.to_string(), e.port.get()))
        .collect();
    assert_eq!(
        eps,
        vec![
            (80, "10.1.0.5".into(), 8080),
            (80, "10.1.0.6".into(), 8080),
            (9090, "10.1.0.5".into(), 9091),
            (9090, "10.1.0.6".into(), 9091),
        ]
    );
    assert_eq!(svc.provenance.object.as_ref(), "Service shop/web");
    assert_eq!(svc.provenance.revision.as_ref(), "7");
    assert_eq!(
        svc.endpoints[0].provenance.object.as_ref(),
        "EndpointSlice shop/web-abc"
    );
    assert_eq!(svc.endpoints[0].labels.get("app"), Some("web"));
    assert_eq!(
        svc.endpoints[0].labels.get("security.istio.io/tlsMode"),
        None
    );
    assert_eq!(
        svc.endpoints[0].identity.to_string(),
        "spiffe://cluster.local/ns/shop/sa/default"
    );
}

#[test]
fn annotations_set_the_identity_and_mtls() {
    let s = slice("web-abc", json!([{"addresses": ["10.1.0.5"]}]), "IPv4");
    let svc = service(json!({"metadata": {"annotations": {
        "hostmesh.io/service-account": "web-sa", "hostmesh.io/meshed": "true"}}}));
    let c = convert(&svc, &[&s], "cluster.local", &td());
    let svc = c.service.unwrap();
    assert_eq!(
        svc.endpoints[0].identity.to_string(),
        "spiffe://cluster.local/ns/shop/sa/web-sa"
    );
    assert_eq!(
        svc.endpoints[0].labels.get("security.istio.io/tlsMode"),
        Some("istio")
    );
}

#[test]
fn bad_objects_are_rejected_alone() {
    let good = slice("web-good", json!([{"addresses": ["10.1.0.5"]}]), "IPv4");
    let fqdn = slice(
        "web-fqdn",
        json!([{"addresses": ["db.example.com"]}]),
        "FQDN",
    );
    let c = convert(&service(json!({})), &[&good, &fqdn], "cluster.local", &td());
    assert_eq!(c.service.unwrap().endpoints.len(), 2);
    assert_eq!(c.rejected.len(), 1);
    assert_eq!(c.rejected[0].object, "EndpointSlice shop/web-fqdn");
    assert!(
        c.rejected[0].reason.contains("FQDN"),
        "{}",
        c.rejected[0].reason
    );

    let external =
        service(json!({"spec": {"type": "ExternalName", "externalName": "x.example.com"}}));
    let c = convert(&external, &[], "cluster.local", &td());
    assert!(c.service.is_none());
    assert_eq!(c.rejected[0].object, "Service shop/web");
    assert!(c.rejected[0].reason.contains("ExternalName"));

    let bad_port = service(json!({"spec": {"ports": [{"name": "x", "port": 0}]}}));
    let c = convert(&bad_port, &[], "cluster.local", &td());
    assert!(
        c.rejected[0].reason.contains("spec.ports[0].port"),
        "{:?}",
        c.rejected
    );
}

#[test]
fn headless_services_have_no_declared_address() {
    let svc = service(json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}));
    let c = convert(&svc, &[], "cluster.local", &td());
    assert!(c.service.unwrap().addresses.is_empty());
}

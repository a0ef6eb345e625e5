#![allow(clippy::unwrap_used)]

use super::*;

fn identity(ns: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/{ns}/sa/bill")
        .parse()
        .unwrap()
}

fn node(id: &str, meta: &[(&str, Value)]) -> Node {
    Node {
        id: id.into(),
        metadata: Some(Struct {
            fields: meta
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }),
        ..Default::default()
    }
}

#[test]
fn istio_node_with_metadata() {
    let labels = Value {
        kind: Some(Kind::StructValue(Struct {
            fields: [("app".to_owned(), string_value("bill"))].into(),
        })),
    };
    let n = node(
        "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local",
        &[
            ("NAMESPACE", string_value("demo")),
            ("LABELS", labels),
            ("INSTANCE_IPS", string_value("10.0.0.5,fd00::5")),
            ("WORKLOAD_NAME", string_value("bill")),
            ("AUTO_REGISTER_GROUP", string_value("bill-vms")),
        ],
    );
    let info = node_info(Some(&n), &identity("demo")).unwrap();
    assert_eq!(info.ip, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(info.labels.get("app").map(String::as_str), Some("bill"));
    assert_eq!(info.workload_group.as_deref(), Some("bill-vms"));
    assert_eq!(info.workload_name.as_deref(), Some("bill"));
    assert_eq!(info.namespace(), "demo");
}

#[test]
fn malformed_ids_name_the_problem() {
    let cases = [
        ("sidecar~10.0.0.5~vm-1.demo", "3 '~'-separated parts"),
        (
            "proxy~10.0.0.5~vm-1.demo~demo.svc.cluster.local",
            "node type \"proxy\"",
        ),
        (
            "sidecar~ten~vm-1.demo~demo.svc.cluster.local",
            "\"ten\" is not an IP",
        ),
        ("sidecar~10.0.0.5~vm-1~demo.svc.cluster.local", "no '.'"),
        ("sidecar~10.0.0.5~vm-1.demo~demo", "NAMESPACE.svc.DOMAIN"),
        (
            "sidecar~10.0.0.5~vm-1.demo~other.svc.cluster.local",
            "differs",
        ),
        ("", "1 '~'-separated parts"),
    ];
    for (id, expected) in cases {
        let err = node_info(Some(&node(id, &[])), &identity("demo")).unwrap_err();
        assert!(matches!(err, NodeError::MalformedId { .. }), "{id}: {err}");
        assert!(err.to_string().contains(expected), "{id}: {err}");
        assert_eq!(err.to_status().code(), tonic::Code::InvalidArgument);
    }
    let err = node_info(None, &identity("demo")).unwrap_err();
    assert_eq!(err, NodeError::Missing);
}

#[test]
fn namespace_must_match_the_certificate() {
    let id = "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local";
    let n = node(id, &[("NAMESPACE", string_value("prod"))]);
    let err = node_info(Some(&n), &identity("demo")).unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
    assert!(err.to_string().contains("metadata NAMESPACE"), "{err}");
    let err = node_info(Some(&node(id, &[])), &identity("prod")).unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::PermissionDenied);
}

#[test]
fn metadata_of_the_wrong_type_is_refused() {
    let id = "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local";
    let n = node(id, &[("LABELS", string_value("app=bill"))]);
    let err = node_info(Some(&n), &identity("demo")).unwrap_err();
    assert!(err.to_string().contains("LABELS"), "{err}");
    let n = node(id, &[("INSTANCE_IPS", string_value("nope"))]);
    assert!(node_info(Some(&n), &identity("demo")).is_err());
}

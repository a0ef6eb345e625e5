//! The Envoy `Node` a client announces, checked against the identity its certificate proves.
//!
//! Node ids follow Istio: `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.DOMAIN`, where `TYPE` is
//! `sidecar` or `router`. Metadata keys are the ones Istio's agent sends: `NAMESPACE`,
//! `LABELS` (a struct of strings), `INSTANCE_IPS` (comma separated), `WORKLOAD_NAME`,
//! `AUTO_REGISTER_GROUP`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use hostmesh_ca::SpiffeId;

use crate::xds::NodeInfo;

/// Why a node was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("the first request of the stream carries no node")]
    Missing,
    #[error(
        "malformed node id {id:?}: {problem} (expected TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local)"
    )]
    MalformedId { id: String, problem: String },
    #[error("malformed node metadata {key}: {problem}")]
    MalformedMetadata { key: &'static str, problem: String },
    #[error(
        "node {id:?} claims namespace {claimed:?} ({source_of_claim}) but its certificate proves {identity} of namespace {proven:?}"
    )]
    NamespaceMismatch {
        id: String,
        claimed: String,
        source_of_claim: &'static str,
        /// The certificate's SPIFFE ID.
        identity: String,
        proven: String,
    },
}

impl NodeError {
    /// The gRPC status a client receives for this error.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::NamespaceMismatch { .. } => tonic::Status::permission_denied(self.to_string()),
            _ => tonic::Status::invalid_argument(self.to_string()),
        }
    }
}

/// The parts of an Istio node id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeId {
    ip: IpAddr,
    namespace: String,
}

fn parse_id(id: &str) -> Result<NodeId, NodeError> {
    let bad = |problem: &str| NodeError::MalformedId {
        id: id.to_owned(),
        problem: problem.to_owned(),
    };
    let parts: Vec<&str> = id.split('~').collect();
    let [kind, ip, name_ns, domain] = parts.as_slice() else {
        return Err(bad(&format!(
            "it has {} '~'-separated parts, not 4",
            parts.len()
        )));
    };
    if !matches!(*kind, "sidecar" | "router") {
        return Err(bad(&format!(
            "node type {kind:?} is neither \"sidecar\" nor \"router\""
        )));
    }
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
    let Some((name, namespace)) = name_ns.rsplit_once('.') else {
        return Err(bad(&format!("{name_ns:?} is not NAME.NAMESPACE (no '.')")));
    };
    if name.is_empty() || namespace.is_empty() {
        return Err(bad(&format!(
            "{name_ns:?} is not NAME.NAMESPACE (empty part)"
        )));
    }
    let Some((domain_ns, rest)) = domain.split_once('.') else {
        return Err(bad(&format!("{domain:?} is not NAMESPACE.svc.DOMAIN")));
    };
    if !rest.starts_with("svc.") || rest.len() <= 4 {
        return Err(bad(&format!("{domain:?} is not NAMESPACE.svc.DOMAIN")));
    }
    if domain_ns != namespace {
        return Err(bad(&format!(
            "namespace {namespace:?} of {name_ns:?} differs from {domain_ns:?} of {domain:?}"
        )));
    }
    Ok(NodeId {
        ip,
        namespace: namespace.to_owned(),
    })
}

fn string_field(meta: &Struct, key: &'static str) -> Result<Option<String>, NodeError> {
    match meta.fields.get(key).and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => Ok(None),
        Some(Kind::StringValue(s)) if s.is_empty() => Ok(None),
        Some(Kind::StringValue(s)) => Ok(Some(s.clone())),
        Some(_) => Err(NodeError::MalformedMetadata {
            key,
            problem: "not a string".into(),
        }),
    }
}

fn labels(meta: &Struct) -> Result<BTreeMap<String, String>, NodeError> {
    const KEY: &str = "LABELS";
    let fields = match meta.fields.get(KEY).and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => return Ok(BTreeMap::new()),
        Some(Kind::StructValue(s)) => &s.fields,
        Some(_) => {
            return Err(NodeError::MalformedMetadata {
                key: KEY,
                problem: "not a struct of strings".into(),
            });
        }
    };
    fields
        .iter()
        .map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Ok((k.clone(), s.clone())),
            _ => Err(NodeError::MalformedMetadata {
                key: KEY,
                problem: format!("label {k:?} is not a string"),
            }),
        })
        .collect()
}

fn instance_ip(meta: &Struct) -> Result<Option<IpAddr>, NodeError> {
    let Some(ips) = string_field(meta, "INSTANCE_IPS")? else {
        return Ok(None);
    };
    let mut parsed = ips
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| NodeError::MalformedMetadata {
                    key: "INSTANCE_IPS",
                    problem: format!("{s:?} is not an IP address"),
                })
        });
    parsed.next().transpose()
}

/// Checks the node a client announced against the identity it proved and returns what the
/// server knows of it.
pub fn node_info(node: Option<&Node>, identity: &SpiffeId) -> Result<NodeInfo, NodeError> {
    let node = node.ok_or(NodeError::Missing)?;
    let id = parse_id(&node.id)?;
    let empty = Struct::default();
    let meta = node.metadata.as_ref().unwrap_or(&empty);
    let mismatch = |claimed: &str, source_of_claim| NodeError::NamespaceMismatch {
        id: node.id.clone(),
        claimed: claimed.to_owned(),
        source_of_claim,
        identity: identity.to_string(),
        proven: identity.namespace().to_owned(),
    };
    if let Some(ns) = string_field(meta, "NAMESPACE")?
        && ns != identity.namespace()
    {
        return Err(mismatch(&ns, "metadata NAMESPACE"));
    }
    if id.namespace != identity.namespace() {
        return Err(mismatch(&id.namespace, "node id"));
    }
    let instance_ip = instance_ip(meta)?;
    Ok(NodeInfo {
        id: node.id.clone(),
        identity: identity.clone(),
        ip: Some(id.ip).or(instance_ip),
        labels: labels(meta)?,
        workload_group: string_field(meta, "AUTO_REGISTER_GROUP")?,
        workload_name: string_field(meta, "WORKLOAD_NAME")?,
    })
}

/// A metadata string value, for building nodes (tests, the agent).
pub fn string_value(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

#[cfg(test)]
mod tests {
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
}

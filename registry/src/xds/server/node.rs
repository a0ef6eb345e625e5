//! The Envoy `Node` a client announces, checked against the identity its certificate proves.
//!
//! Node ids follow Istio: `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.DOMAIN`, where `TYPE` is
//! `sidecar` or `router`. Metadata keys are the ones Istio's agent sends: `NAMESPACE`,
//! `LABELS` (a struct of strings), `INSTANCE_IPS` (comma separated), `WORKLOAD_NAME`,
//! `AUTO_REGISTER_GROUP`, `NETWORK`; the locality is Envoy's `Node.locality`.

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

/// `region/zone/subzone` of `Node.locality`, without trailing empty parts; none when empty.
fn locality(node: &Node) -> Option<String> {
    let l = node.locality.as_ref()?;
    let parts = [&l.region, &l.zone, &l.sub_zone];
    let used = parts.iter().rposition(|p| !p.is_empty())?;
    Some(
        parts[..=used]
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("/"),
    )
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
        network: string_field(meta, "NETWORK")?,
        locality: locality(node),
    })
}

/// A metadata string value, for building nodes (tests, the agent).
pub fn string_value(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

#[cfg(test)]
mod tests;

//! The Envoy `Node` this host announces, in Istio's shape so the control server (and a dump)
//! reads it as it reads a sidecar: id `sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.DOMAIN`,
//! metadata `NAMESPACE`, `LABELS`, `INSTANCE_IPS`, `WORKLOAD_NAME` and, to auto-register,
//! `AUTO_REGISTER_GROUP`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

/// Who this host is, as the control server needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The host's primary address (the node id's IP).
    pub ip: IpAddr,
    /// Every address of the host (`INSTANCE_IPS`); the primary one when empty.
    pub instance_ips: Vec<IpAddr>,
    /// The workload's name (`WORKLOAD_NAME`, and the node id's NAME).
    pub name: String,
    pub namespace: String,
    /// DNS suffix of the mesh (`cluster.local`).
    pub domain: String,
    pub labels: BTreeMap<String, String>,
    /// The `WorkloadGroup` to auto-register in.
    pub auto_register_group: Option<String>,
    /// Where the host runs, `region[/zone[/subzone]]` (Envoy's `Node.locality`), for locality
    /// load balancing.
    pub locality: Option<String>,
}

fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

impl NodeIdentity {
    /// `sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local`.
    pub fn id(&self) -> String {
        format!(
            "sidecar~{}~{}.{ns}~{ns}.svc.{}",
            self.ip,
            self.name,
            self.domain,
            ns = self.namespace
        )
    }

    pub fn node(&self) -> Node {
        let ips: Vec<String> = if self.instance_ips.is_empty() {
            vec![self.ip.to_string()]
        } else {
            self.instance_ips.iter().map(IpAddr::to_string).collect()
        };
        let labels = Struct {
            fields: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), string(v.clone())))
                .collect(),
        };
        let mut fields = std::collections::HashMap::from([
            ("NAMESPACE".to_owned(), string(&self.namespace)),
            ("INSTANCE_IPS".to_owned(), string(ips.join(","))),
            ("WORKLOAD_NAME".to_owned(), string(&self.name)),
            (
                "LABELS".to_owned(),
                Value {
                    kind: Some(Kind::StructValue(labels)),
                },
            ),
        ]);
        if let Some(group) = &self.auto_register_group {
            fields.insert("AUTO_REGISTER_GROUP".to_owned(), string(group));
        }
        let locality = self.locality.as_deref().map(|l| {
            let mut parts = l.splitn(3, '/').map(str::to_owned);
            Locality {
                region: parts.next().unwrap_or_default(),
                zone: parts.next().unwrap_or_default(),
                sub_zone: parts.next().unwrap_or_default(),
            }
        });
        Node {
            id: self.id(),
            cluster: self.name.clone(),
            metadata: Some(Struct { fields }),
            locality,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_and_metadata_follow_istio() {
        let n = NodeIdentity {
            ip: IpAddr::from([10, 0, 0, 5]),
            instance_ips: vec![],
            name: "vm-1".into(),
            namespace: "demo".into(),
            domain: "cluster.local".into(),
            labels: BTreeMap::from([("app".into(), "bill".into())]),
            auto_register_group: Some("bill".into()),
            locality: Some("eu/eu-1".into()),
        };
        let node = n.node();
        assert_eq!(node.id, "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local");
        let meta = node.metadata.unwrap_or_default().fields;
        assert_eq!(meta["NAMESPACE"], string("demo"));
        assert_eq!(meta["INSTANCE_IPS"], string("10.0.0.5"));
        assert_eq!(meta["AUTO_REGISTER_GROUP"], string("bill"));
        let Some(Kind::StructValue(labels)) = &meta["LABELS"].kind else {
            panic!("LABELS is a struct");
        };
        assert_eq!(labels.fields["app"], string("bill"));
        let l = node.locality.unwrap_or_default();
        assert_eq!(
            (l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()),
            ("eu", "eu-1", "")
        );
    }
}

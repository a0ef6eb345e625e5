//! The contract between the translation of the model and the ADS server.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use hostmesh_ca::SpiffeId;

use crate::model::Snapshot;

/// Type URLs of the resources hostmesh serves.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// Istio's DNS name table, delivered over the same ADS stream.
    pub const NAME_TABLE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";

    /// Every type, in the order Envoy wants them pushed (clusters before endpoints, listeners
    /// before routes).
    pub const ALL: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, NAME_TABLE];
}

/// One named, encoded resource. Its version is a hash of its encoding, so two translations
/// that produce the same bytes produce the same version and nothing is re-sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub version: String,
    pub body: Arc<Any>,
}

impl Resource {
    pub fn new(name: impl Into<String>, body: Any) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.type_url.hash(&mut hasher);
        body.value.hash(&mut hasher);
        Self {
            name: name.into(),
            version: format!("{:016x}", hasher.finish()),
            body: Arc::new(body),
        }
    }

    pub fn type_url(&self) -> &str {
        &self.body.type_url
    }
}

/// Resources by type URL, then by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    by_type: BTreeMap<String, BTreeMap<String, Resource>>,
}

impl ResourceSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a resource under its own type URL.
    pub fn insert(&mut self, resource: Resource) {
        self.by_type
            .entry(resource.type_url().to_owned())
            .or_default()
            .insert(resource.name.clone(), resource);
    }

    /// Adds every resource of `other`, replacing same-named ones.
    pub fn extend(&mut self, other: ResourceSet) {
        for (_, resources) in other.by_type {
            for (_, r) in resources {
                self.insert(r);
            }
        }
    }

    /// The resources of one type, by name (empty when there are none).
    pub fn of_type(&self, type_url: &str) -> impl Iterator<Item = &Resource> {
        self.by_type
            .get(type_url)
            .into_iter()
            .flat_map(|m| m.values())
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.by_type.get(type_url).and_then(|m| m.get(name))
    }

    pub fn names(&self, type_url: &str) -> BTreeSet<&str> {
        self.of_type(type_url).map(|r| r.name.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.by_type.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the control server knows of a connected agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Envoy node id, Istio style: `sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local`.
    pub id: String,
    /// The identity proven by the agent's client certificate.
    pub identity: SpiffeId,
    /// The host's address (from the node id or `INSTANCE_IPS`).
    pub ip: Option<IpAddr>,
    /// Workload labels from node metadata (`LABELS`).
    pub labels: BTreeMap<String, String>,
    /// The `WorkloadGroup` to auto-register in (`AUTO_REGISTER_GROUP`), if any.
    pub workload_group: Option<String>,
    /// The workload's name (`WORKLOAD_NAME`), if given.
    pub workload_name: Option<String>,
    /// The node's network (`NETWORK`), if given.
    pub network: Option<String>,
    /// The node's locality (`region[/zone[/subzone]]` from `Node.locality`), if given.
    pub locality: Option<String>,
}

impl NodeInfo {
    /// The node's namespace: its identity's.
    pub fn namespace(&self) -> &str {
        self.identity.namespace()
    }
}

/// Turns model snapshots into resources. Resources that every node receives are computed once
/// per snapshot ([`Translator::shared`]); the few that depend on the node (its inbound
/// listener) per node ([`Translator::for_node`]). A node's full view is the union; names in
/// the two sets never collide.
pub trait Translator: Send + Sync + 'static {
    fn shared(&self, snapshot: &Snapshot) -> ResourceSet;
    fn for_node(&self, snapshot: &Snapshot, node: &NodeInfo) -> ResourceSet;
}

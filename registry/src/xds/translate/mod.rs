//! The translation of a model [`Snapshot`] into Envoy v3 resources: pure, snapshot in,
//! resources out. [`MeshTranslator`] implements [`Translator`].
//!
//! What every node gets ([`Translator::shared`]):
//! - clusters `outbound|PORT||HOST` and `outbound|PORT|SUBSET|HOST` with load balancing,
//!   connect timeout, HTTP/2 and Istio mTLS from the `DestinationRule` and the endpoints
//!   ([`cluster`]), plus `PassthroughCluster` and `BlackHoleCluster`;
//! - a `ClusterLoadAssignment` per EDS cluster ([`endpoint`]);
//! - the outbound listener `virtualOutbound` ([`outbound`]);
//! - a route configuration per HTTP port, with `VirtualService` HTTP routing ([`route`]);
//! - Istio's DNS name table, with virtual IPs allocated to services without addresses
//!   ([`name_table`], [`vip`]).
//!
//! What depends on the node ([`Translator::for_node`]): the inbound listener `virtualInbound`
//! and its `inbound|PORT||` clusters ([`inbound`]); the assignments of clusters with locality
//! load balancing (priorities from the node's locality) and the route configurations of ports
//! whose `VirtualService`s match on `sourceLabels`/`sourceNamespace` ([`per_node`]; these are
//! then left out of the shared set).
//!
//! Not translated yet (a later issue): `VirtualService` features listed in [`route`] and
//! [`l4_route`]; `DestinationRule` connection pools (but the connect timeout), outlier
//! detection, consistent hashing, locality load balancing and `SIMPLE`/`MUTUAL` TLS
//! origination; `exportTo` (everything is visible to every node); `AuthorizationPolicy`;
//! `Gateway`s; `sidecar`-scoped visibility.
//!
//! For large meshes (256 clusters or more) [`Translator::shared`] builds the clusters and
//! their assignments on every core, beside the mesh-wide resources; the output is the same.
//!
//! Resource versions are hashes of the encoding ([`Resource::new`]), so the encoding must be
//! deterministic: every protobuf map the builders fill holds at most one entry (prost encodes
//! `HashMap`s in iteration order), and the name table uses a `BTreeMap`.

mod cluster;
mod endpoint;
mod fallback;
mod filters;
mod inbound;
mod l4_route;
mod load_balancing;
mod name_table;
mod names;
mod outbound;
mod per_node;
mod policy;
mod proto;
mod resilience;
mod route;
mod route_l7;
mod route_policy;
mod tls;
mod view;
mod vip;

use std::time::Duration;

use envoy_types::util::pack_any;

pub use name_table::{NAME_TABLE_RESOURCE, NameInfo, NameTable};

use self::view::View;
use super::resources::{NodeInfo, Resource, ResourceSet, Translator};
use crate::model::types::DEFAULT_DOMAIN_SUFFIX;
use crate::model::{Snapshot, TrustDomain};

/// Istio's `outboundTrafficPolicy.mode`: what happens to traffic for destinations the
/// registry does not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutboundPolicy {
    /// Forward it to its original destination (`PassthroughCluster`).
    #[default]
    AllowAny,
    /// Refuse it (`BlackHoleCluster`).
    RegistryOnly,
}

/// Mesh-wide settings of the translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatorConfig {
    pub trust_domain: TrustDomain,
    pub outbound_policy: OutboundPolicy,
    /// DNS suffix of in-mesh names (`cluster.local`).
    pub domain_suffix: String,
    /// The namespace whose namespace-wide policies apply to the whole mesh.
    pub root_namespace: String,
    /// Connect timeout of clusters whose `DestinationRule` sets none (Istio: 10 s).
    pub connect_timeout: Duration,
}

impl Default for TranslatorConfig {
    fn default() -> Self {
        Self {
            trust_domain: TrustDomain::default(),
            outbound_policy: OutboundPolicy::default(),
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.to_owned(),
            root_namespace: "istio-system".to_owned(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Translates snapshots into Envoy v3 resources. The same snapshot always gives the same
/// resources (and versions); the only state is a cache of the per-node outbound resources of
/// the latest snapshot, by what they depend on ([`per_node::Cache`]).
#[derive(Debug, Clone, Default)]
pub struct MeshTranslator {
    config: TranslatorConfig,
    per_node: per_node::Cache,
}

impl MeshTranslator {
    pub fn new(config: TranslatorConfig) -> Self {
        Self {
            config,
            per_node: per_node::Cache::default(),
        }
    }

    pub fn config(&self) -> &TranslatorConfig {
        &self.config
    }
}

impl Translator for MeshTranslator {
    fn shared(&self, snapshot: &Snapshot) -> ResourceSet {
        let view = View::new(snapshot, &self.config);
        let plans = cluster::plans(&view);
        // The clusters and their assignments are most of the work and independent of each
        // other: large meshes spread them over the cores, beside the mesh-wide resources.
        let chunk = plans.len().div_ceil(workers(plans.len())).max(1);
        let (clusters, mesh_wide) = std::thread::scope(|s| {
            let mesh_wide = s.spawn(|| mesh_wide_resources(&view));
            let others: Vec<_> = plans
                .chunks(chunk)
                .skip(1)
                .map(|part| s.spawn(|| cluster_resources(&view, part)))
                .collect();
            let mut clusters = plans
                .chunks(chunk)
                .next()
                .map(|part| cluster_resources(&view, part))
                .unwrap_or_default();
            for part in others {
                clusters.extend(joined(part.join()));
            }
            (clusters, joined(mesh_wide.join()))
        });
        let mut set = ResourceSet::new();
        for r in clusters.into_iter().chain(mesh_wide) {
            set.insert(r);
        }
        set
    }

    fn for_node(&self, snapshot: &Snapshot, node: &NodeInfo) -> ResourceSet {
        let (listener, clusters) = inbound::build(snapshot, &self.config, node);
        let mut set = ResourceSet::new();
        set.insert(Resource::new(listener.name.clone(), pack_any(listener)));
        for c in clusters {
            set.insert(Resource::new(c.name.clone(), pack_any(c)));
        }
        set.extend(self.per_node.get(snapshot, &self.config, node));
        set
    }
}

/// Threads for the clusters of a mesh with `plans` clusters: one for small meshes, else as
/// many as the machine has cores (at most 8).
fn workers(plans: usize) -> usize {
    if plans < 256 {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// A scoped thread's result; its panic goes on in the caller (a bug in the translation,
/// reported as it would have been without the thread).
fn joined<T>(result: std::thread::Result<T>) -> T {
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The clusters of `plans` and the assignments of those served over EDS to every node.
fn cluster_resources(view: &View<'_>, plans: &[cluster::ClusterPlan<'_>]) -> Vec<Resource> {
    let mut out = Vec::with_capacity(plans.len() * 2);
    for plan in plans {
        out.push(Resource::new(
            plan.name.clone(),
            pack_any(cluster::outbound(view, plan)),
        ));
        if cluster::uses_eds(plan) && !per_node::assignment_is_per_node(view, plan) {
            out.push(Resource::new(
                plan.name.clone(),
                pack_any(endpoint::eds(view, plan)),
            ));
        }
    }
    out
}

/// The passthrough and black-hole clusters, the outbound listener, the route configurations
/// and the name table.
fn mesh_wide_resources(view: &View<'_>) -> Vec<Resource> {
    let mut out = Vec::new();
    for c in [cluster::passthrough(view), cluster::blackhole(view)] {
        out.push(Resource::new(c.name.clone(), pack_any(c)));
    }
    let listener = outbound::listener(view);
    out.push(Resource::new(listener.name.clone(), pack_any(listener)));
    for rc in route::route_configs(view, None) {
        out.push(Resource::new(rc.name.clone(), pack_any(rc)));
    }
    out.push(Resource::new(
        NAME_TABLE_RESOURCE,
        pack_any(name_table::build(view)),
    ));
    out
}

#[cfg(test)]
mod tests;

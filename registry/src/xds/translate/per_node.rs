//! The outbound resources that depend on who asks: a cluster's assignment when locality load
//! balancing applies to it (priorities follow the node's locality), and the route
//! configuration of a port when a `VirtualService` on it matches on `sourceLabels` or
//! `sourceNamespace` (matches for other sources are left out). The shared set leaves these
//! out; each node gets its own under the same names.
//!
//! Cost: only when the snapshot has such rules does a node's translation build a [`View`]
//! (the whole-mesh work of the shared translation), once per snapshot for each distinct
//! (locality, labels, namespace) among the nodes: [`Cache`] keeps the results of the latest
//! snapshot, as nodes of one group share them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use envoy_types::util::pack_any;

use super::TranslatorConfig;
use super::cluster::{self, ClusterPlan};
use super::endpoint;
use super::load_balancing::locality_enabled;
use super::policy::cluster_policy;
use super::route::{self, Source};
use super::view::View;
use crate::model::Snapshot;
use crate::model::types::Locality;
use crate::xds::resources::{NodeInfo, Resource, ResourceSet};

/// What a node's per-node resources depend on: its locality, labels and namespace.
type ClientKey = (Option<String>, BTreeMap<String, String>, String);

/// At most this many distinct clients are cached for one snapshot (then it starts over).
const MAX_CACHED_CLIENTS: usize = 4096;

/// The per-node resources of the latest snapshot, by client.
#[derive(Debug, Clone, Default)]
pub struct Cache(Arc<Mutex<CacheState>>);

#[derive(Debug, Default)]
struct CacheState {
    /// The snapshot the entries belong to: its version and address.
    snapshot: Option<(u64, usize)>,
    by_client: HashMap<ClientKey, ResourceSet>,
}

impl Cache {
    /// [`resources`] for the node, from the cache when a node with the same locality, labels
    /// and namespace asked about the same snapshot.
    pub fn get(
        &self,
        snapshot: &Snapshot,
        config: &TranslatorConfig,
        node: &NodeInfo,
    ) -> ResourceSet {
        let id = (snapshot.version(), std::ptr::from_ref(snapshot) as usize);
        let key: ClientKey = (
            node.locality.clone(),
            node.labels.clone(),
            node.namespace().to_owned(),
        );
        {
            let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if state.snapshot != Some(id) {
                state.snapshot = Some(id);
                state.by_client.clear();
            }
            if let Some(set) = state.by_client.get(&key) {
                return set.clone();
            }
        }
        let set = resources(snapshot, config, node);
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.snapshot == Some(id) {
            if state.by_client.len() >= MAX_CACHED_CLIENTS {
                state.by_client.clear();
            }
            state.by_client.insert(key, set.clone());
        }
        set
    }
}

/// Is the plan's assignment translated per node (locality load balancing applies)?
pub fn assignment_is_per_node(view: &View<'_>, plan: &ClusterPlan<'_>) -> bool {
    let host = plan.service.hostname.as_str();
    let policy = cluster_policy(
        view.destination_rule(host),
        plan.port.number,
        plan.subset_name(),
        view.config.connect_timeout,
    );
    locality_enabled(&policy)
}

/// Could anything in the snapshot depend on the node? A cheap look before building a view.
fn anything_per_node(snapshot: &Snapshot) -> bool {
    let outlier = snapshot.destination_rules().any(|dr| {
        let spec = &dr.spec;
        let tp = |t: &crate::model::istio::networking::TrafficPolicy| {
            t.outlier_detection.is_some()
                || t.port_level_settings
                    .iter()
                    .any(|p| p.outlier_detection.is_some())
        };
        spec.traffic_policy.as_ref().is_some_and(tp)
            || spec
                .subsets
                .iter()
                .any(|s| s.traffic_policy.as_ref().is_some_and(tp))
    });
    outlier || snapshot.virtual_services().any(route::source_dependent)
}

/// The node's own assignments and route configurations.
pub fn resources(snapshot: &Snapshot, config: &TranslatorConfig, node: &NodeInfo) -> ResourceSet {
    let mut set = ResourceSet::new();
    if !anything_per_node(snapshot) {
        return set;
    }
    let view = View::new(snapshot, config);
    let client = node
        .locality
        .as_deref()
        .and_then(|l| Locality::parse(l).ok());
    for plan in cluster::plans(&view) {
        if !cluster::uses_eds(&plan) || !assignment_is_per_node(&view, &plan) {
            continue;
        }
        let setting = cluster_policy(
            view.destination_rule(plan.service.hostname.as_str()),
            plan.port.number,
            plan.subset_name(),
            config.connect_timeout,
        )
        .locality;
        let cla = endpoint::eds_for(&view, &plan, client.as_ref().map(|c| (c, setting.as_ref())));
        set.insert(Resource::new(plan.name.clone(), pack_any(cla)));
    }
    let source = Source {
        labels: &node.labels,
        namespace: node.namespace(),
    };
    for rc in route::route_configs(&view, Some(&source)) {
        set.insert(Resource::new(rc.name.clone(), pack_any(rc)));
    }
    set
}

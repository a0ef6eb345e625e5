//! The decoded xDS resources the proxy holds, by type and name, with the version the server
//! gave each. Decoding happens once, when a response arrives; conversion reads from here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::name_table::NameTable;
use super::wire::unpack;

/// The resource types the proxy subscribes to, in the order a server pushes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    NameTable,
}

impl ResourceType {
    pub const ALL: [Self; 5] = [
        Self::Cluster,
        Self::Endpoint,
        Self::Listener,
        Self::Route,
        Self::NameTable,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            Self::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Self::Endpoint => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            Self::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Self::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            Self::NameTable => "type.googleapis.com/istio.networking.nds.v1.NameTable",
        }
    }

    pub fn from_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Subscribed to as a whole (wildcard) rather than by name.
    pub fn wildcard(self) -> bool {
        matches!(self, Self::Cluster | Self::Listener | Self::NameTable)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cluster => "CDS",
            Self::Endpoint => "EDS",
            Self::Listener => "LDS",
            Self::Route => "RDS",
            Self::NameTable => "NDS",
        })
    }
}

/// A decoded resource, its version, and the resource as received (kept so that the agent can
/// store the last good config byte for byte and replay it through the same conversion).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub version: String,
    pub body: Arc<T>,
    pub raw: Arc<Any>,
}

/// One held resource as it came from the control server.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    pub ty: ResourceType,
    pub name: String,
    pub version: String,
    pub any: Arc<Any>,
}

/// Every resource held, by type and name.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub clusters: BTreeMap<String, Versioned<Cluster>>,
    pub endpoints: BTreeMap<String, Versioned<ClusterLoadAssignment>>,
    pub listeners: BTreeMap<String, Versioned<Listener>>,
    pub routes: BTreeMap<String, Versioned<RouteConfiguration>>,
    pub name_tables: BTreeMap<String, Versioned<NameTable>>,
}

fn put<T: Message + Name + Default>(
    map: &mut BTreeMap<String, Versioned<T>>,
    name: Option<String>,
    own_name: impl Fn(&T) -> String,
    version: String,
    any: &Any,
) -> Result<String, String> {
    let body: T = unpack(any)?;
    let name = name.unwrap_or_else(|| own_name(&body));
    map.insert(
        name.clone(),
        Versioned {
            version,
            body: Arc::new(body),
            raw: Arc::new(any.clone()),
        },
    );
    Ok(name)
}

impl Resources {
    /// Decodes and stores one resource; `name` defaults to the one inside the resource.
    /// Returns the name stored under.
    pub fn insert(
        &mut self,
        ty: ResourceType,
        name: Option<String>,
        version: String,
        any: &Any,
    ) -> Result<String, String> {
        match ty {
            ResourceType::Cluster => {
                put(&mut self.clusters, name, |c| c.name.clone(), version, any)
            }
            ResourceType::Endpoint => put(
                &mut self.endpoints,
                name,
                |c| c.cluster_name.clone(),
                version,
                any,
            ),
            ResourceType::Listener => {
                put(&mut self.listeners, name, |l| l.name.clone(), version, any)
            }
            ResourceType::Route => put(&mut self.routes, name, |r| r.name.clone(), version, any),
            ResourceType::NameTable => {
                put(&mut self.name_tables, name, |_| String::new(), version, any)
            }
        }
    }

    pub fn remove(&mut self, ty: ResourceType, name: &str) {
        match ty {
            ResourceType::Cluster => self.clusters.remove(name).map(drop),
            ResourceType::Endpoint => self.endpoints.remove(name).map(drop),
            ResourceType::Listener => self.listeners.remove(name).map(drop),
            ResourceType::Route => self.routes.remove(name).map(drop),
            ResourceType::NameTable => self.name_tables.remove(name).map(drop),
        };
    }

    /// Keeps only the resources of `ty` for which `keep` holds.
    pub fn retain(&mut self, ty: ResourceType, keep: impl Fn(&str) -> bool) {
        match ty {
            ResourceType::Cluster => self.clusters.retain(|n, _| keep(n)),
            ResourceType::Endpoint => self.endpoints.retain(|n, _| keep(n)),
            ResourceType::Listener => self.listeners.retain(|n, _| keep(n)),
            ResourceType::Route => self.routes.retain(|n, _| keep(n)),
            ResourceType::NameTable => self.name_tables.retain(|n, _| keep(n)),
        }
    }

    /// Name → version of every resource of `ty` (a delta client's `initial_resource_versions`).
    pub fn versions(&self, ty: ResourceType) -> HashMap<String, String> {
        fn of<T>(m: &BTreeMap<String, Versioned<T>>) -> HashMap<String, String> {
            m.iter()
                .map(|(n, v)| (n.clone(), v.version.clone()))
                .collect()
        }
        match ty {
            ResourceType::Cluster => of(&self.clusters),
            ResourceType::Endpoint => of(&self.endpoints),
            ResourceType::Listener => of(&self.listeners),
            ResourceType::Route => of(&self.routes),
            ResourceType::NameTable => of(&self.name_tables),
        }
    }

    /// Every resource held, as received, in [`ResourceType::ALL`] order then by name.
    pub fn raw(&self) -> Vec<RawResource> {
        fn of<T>(ty: ResourceType, m: &BTreeMap<String, Versioned<T>>, out: &mut Vec<RawResource>) {
            out.extend(m.iter().map(|(name, v)| RawResource {
                ty,
                name: name.clone(),
                version: v.version.clone(),
                any: v.raw.clone(),
            }));
        }
        let mut out = Vec::new();
        of(ResourceType::Cluster, &self.clusters, &mut out);
        of(ResourceType::Endpoint, &self.endpoints, &mut out);
        of(ResourceType::Listener, &self.listeners, &mut out);
        of(ResourceType::Route, &self.routes, &mut out);
        of(ResourceType::NameTable, &self.name_tables, &mut out);
        out
    }

    /// The assignments the EDS clusters need.
    pub fn eds_names(&self) -> BTreeSet<String> {
        self.clusters
            .iter()
            .filter(|(_, c)| {
                c.body.cluster_discovery_type
                    == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
            })
            .map(|(name, c)| {
                c.body
                    .eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| name.clone())
            })
            .collect()
    }

    /// The route configurations the listeners name (RDS).
    pub fn rds_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let chains = self.listeners.values().flat_map(|l| {
            l.body
                .filter_chains
                .iter()
                .chain(l.body.default_filter_chain.iter())
        });
        for f in chains.flat_map(|c| c.filters.iter()) {
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if let Ok(hcm) = unpack::<HttpConnectionManager>(any)
                && let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier
            {
                out.insert(rds.route_config_name);
            }
        }
        out
    }

    /// The names a subscription of `ty` should hold: none for wildcard types.
    pub fn wanted(&self, ty: ResourceType) -> BTreeSet<String> {
        match ty {
            ResourceType::Endpoint => self.eds_names(),
            ResourceType::Route => self.rds_names(),
            _ => BTreeSet::new(),
        }
    }
}

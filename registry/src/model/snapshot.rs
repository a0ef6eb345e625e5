//! The immutable [`Snapshot`] of the mesh: services (ServiceEntry hosts × ports) with their
//! endpoints (inline `endpoints` and the `WorkloadEntry`s selected by `workloadSelector` in
//! the same namespace), plus every config object, under one version. Cheap to clone: the
//! contents sit behind an `Arc`, and each service behind its own `Arc` so that a merge of
//! several sources shares the services it did not change.
//!
//! Every service and endpoint carries its [`Provenance`]. [`Snapshot::build`] stamps the
//! static registry's; [`Snapshot::assemble`] takes services already built by their sources
//! (the merge's way in).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::config::{
    Address, AuthorizationPolicy, ConfigObject, DestinationRule, Gateway, Kind, MeshLocation,
    ObjectKey, PeerAuthentication, Resolution, ServiceEntry, ServicePort, VirtualService, Workload,
    WorkloadEntry, WorkloadGroup,
};
use super::provenance::{Provenance, SourceName};
use super::types::{
    Hostname, Identity, Labels, Locality, Namespace, Network, PortNumber, ServiceAccount,
    TrustDomain, Weight,
};

/// One instance of a service on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The service port this endpoint serves.
    pub service_port: PortNumber,
    pub address: Address,
    /// The port on the workload.
    pub port: PortNumber,
    pub labels: Labels,
    pub locality: Option<Locality>,
    pub network: Option<Network>,
    pub weight: Weight,
    pub identity: Identity,
    /// The object the endpoint comes from: the `WorkloadEntry`, or the `ServiceEntry` for an
    /// inline endpoint. Sources without Istio objects (Consul) name a synthetic
    /// `ServiceEntry` of the service.
    pub origin: ObjectKey,
    /// The source, object and revision the endpoint came from.
    pub provenance: Provenance,
}

/// A service: one host of a `ServiceEntry`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub hostname: Hostname,
    pub namespace: Namespace,
    pub ports: Vec<ServicePort>,
    pub addresses: Vec<String>,
    pub resolution: Resolution,
    pub location: MeshLocation,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
    /// Sorted by service port, then address.
    pub endpoints: Vec<Endpoint>,
    /// The `ServiceEntry` that declared the service.
    pub origin: ObjectKey,
    /// The source, object and revision the service came from.
    pub provenance: Provenance,
}

impl Service {
    /// The endpoints serving one port.
    pub fn endpoints_for(&self, port: PortNumber) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(move |e| e.service_port == port)
    }
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    services: Vec<Arc<Service>>,
    objects: Arc<BTreeMap<ObjectKey, ConfigObject>>,
    /// The first key of each kind present: keys sort by kind first, so the objects of one
    /// kind are one range of `objects`.
    kind_starts: BTreeMap<Kind, ObjectKey>,
    /// Endpoints, as (service index, endpoint index), by address and by origin object.
    endpoints_by_address: HashMap<Address, Vec<(usize, usize)>>,
    endpoints_by_origin: HashMap<ObjectKey, Vec<(usize, usize)>>,
}

/// An immutable, versioned view of the mesh. Clone it freely.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(Arc<Inner>);

impl Snapshot {
    /// Builds a snapshot from validated objects. When two objects share a key the later one
    /// wins; sources report such duplicates before they get here. Provenance: source
    /// `static`, the object's key, revision `version`.
    pub fn build(
        version: u64,
        objects: impl IntoIterator<Item = ConfigObject>,
        trust_domain: &TrustDomain,
    ) -> Snapshot {
        let objects: BTreeMap<ObjectKey, ConfigObject> =
            objects.into_iter().map(|o| (o.key(), o)).collect();
        let source = SourceName::new(SourceName::STATIC);
        let selectable = WorkloadIndex::new(&objects);
        let mut services = Vec::new();
        for object in objects.values() {
            if let ConfigObject::ServiceEntry(se) = object {
                services.extend(
                    services_of(se, &selectable, trust_domain, &source, version)
                        .into_iter()
                        .map(Arc::new),
                );
            }
        }
        Self::assemble(version, services, Arc::new(objects))
    }

    /// A snapshot of services built elsewhere (sorted here by host name, then namespace) and
    /// config objects.
    pub fn assemble(
        version: u64,
        mut services: Vec<Arc<Service>>,
        objects: Arc<BTreeMap<ObjectKey, ConfigObject>>,
    ) -> Snapshot {
        services.sort_by(|a, b| (&a.hostname, &a.namespace).cmp(&(&b.hostname, &b.namespace)));
        let mut kind_starts = BTreeMap::new();
        for key in objects.keys() {
            kind_starts.entry(key.kind).or_insert_with(|| key.clone());
        }
        let mut endpoints_by_address: HashMap<Address, Vec<(usize, usize)>> = HashMap::new();
        let mut endpoints_by_origin: HashMap<ObjectKey, Vec<(usize, usize)>> = HashMap::new();
        for (si, service) in services.iter().enumerate() {
            for (ei, e) in service.endpoints.iter().enumerate() {
                endpoints_by_address
                    .entry(e.address.clone())
                    .or_default()
                    .push((si, ei));
                endpoints_by_origin
                    .entry(e.origin.clone())
                    .or_default()
                    .push((si, ei));
            }
        }
        Snapshot(Arc::new(Inner {
            version,
            services,
            objects,
            kind_starts,
            endpoints_by_address,
            endpoints_by_origin,
        }))
    }

    /// The config objects, shared.
    pub fn object_map(&self) -> &Arc<BTreeMap<ObjectKey, ConfigObject>> {
        &self.0.objects
    }

    pub fn version(&self) -> u64 {
        self.0.version
    }

    /// Every service, sorted by host name then namespace.
    pub fn services(&self) -> &[Arc<Service>] {
        &self.0.services
    }

    /// The services with this host name (one per namespace that declares it).
    pub fn services_named<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.0
            .services
            .iter()
            .filter(move |s| s.hostname.as_str() == host)
            .map(|s| &**s)
    }

    pub fn object(&self, key: &ObjectKey) -> Option<&ConfigObject> {
        self.0.objects.get(key)
    }

    /// Every object, sorted by key.
    pub fn objects(&self) -> impl Iterator<Item = &ConfigObject> {
        self.0.objects.values()
    }

    /// The objects of one kind, in key order, without walking the others.
    pub fn objects_of(&self, kind: Kind) -> impl Iterator<Item = &ConfigObject> {
        self.0
            .kind_starts
            .get(&kind)
            .into_iter()
            .flat_map(move |start| {
                self.0
                    .objects
                    .range(start..)
                    .take_while(move |(key, _)| key.kind == kind)
                    .map(|(_, o)| o)
            })
    }

    /// The endpoints (with their service) at one address.
    pub fn endpoints_at(&self, address: &Address) -> impl Iterator<Item = (&Service, &Endpoint)> {
        self.indexed(self.0.endpoints_by_address.get(address))
    }

    /// The endpoints (with their service) made from one object.
    pub fn endpoints_from(
        &self,
        origin: &ObjectKey,
    ) -> impl Iterator<Item = (&Service, &Endpoint)> {
        self.indexed(self.0.endpoints_by_origin.get(origin))
    }

    fn indexed<'a>(
        &'a self,
        at: Option<&'a Vec<(usize, usize)>>,
    ) -> impl Iterator<Item = (&'a Service, &'a Endpoint)> + 'a {
        at.into_iter().flatten().filter_map(|&(si, ei)| {
            let service: &Service = self.0.services.get(si)?;
            Some((service, service.endpoints.get(ei)?))
        })
    }

    pub fn virtual_services(&self) -> impl Iterator<Item = &VirtualService> {
        self.objects_of(Kind::VirtualService)
            .filter_map(|o| match o {
                ConfigObject::VirtualService(v) => Some(v),
                _ => None,
            })
    }

    pub fn destination_rules(&self) -> impl Iterator<Item = &DestinationRule> {
        self.objects_of(Kind::DestinationRule)
            .filter_map(|o| match o {
                ConfigObject::DestinationRule(v) => Some(v),
                _ => None,
            })
    }

    pub fn gateways(&self) -> impl Iterator<Item = &Gateway> {
        self.objects_of(Kind::Gateway).filter_map(|o| match o {
            ConfigObject::Gateway(v) => Some(v),
            _ => None,
        })
    }

    pub fn workload_groups(&self) -> impl Iterator<Item = &WorkloadGroup> {
        self.objects_of(Kind::WorkloadGroup)
            .filter_map(|o| match o {
                ConfigObject::WorkloadGroup(v) => Some(v),
                _ => None,
            })
    }

    pub fn peer_authentications(&self) -> impl Iterator<Item = &PeerAuthentication> {
        self.objects_of(Kind::PeerAuthentication)
            .filter_map(|o| match o {
                ConfigObject::PeerAuthentication(v) => Some(v),
                _ => None,
            })
    }

    pub fn authorization_policies(&self) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.objects_of(Kind::AuthorizationPolicy)
            .filter_map(|o| match o {
                ConfigObject::AuthorizationPolicy(v) => Some(v),
                _ => None,
            })
    }
}

/// WorkloadEntries by namespace and by each of their labels, so that a `workloadSelector`
/// looks only at the entries that carry its first label.
struct WorkloadIndex<'a> {
    by_namespace: HashMap<&'a Namespace, Vec<Selectable<'a>>>,
    by_label: HashMap<(&'a Namespace, &'a str, &'a str), Vec<Selectable<'a>>>,
}

/// A WorkloadEntry and its key.
type Selectable<'a> = (&'a WorkloadEntry, &'a ObjectKey);

impl<'a> WorkloadIndex<'a> {
    fn new(objects: &'a BTreeMap<ObjectKey, ConfigObject>) -> Self {
        let mut index = Self {
            by_namespace: HashMap::new(),
            by_label: HashMap::new(),
        };
        for (key, object) in objects {
            let ConfigObject::WorkloadEntry(we) = object else {
                continue;
            };
            let ns = &we.meta.namespace;
            index.by_namespace.entry(ns).or_default().push((we, key));
            for (k, v) in we.workload.labels.iter() {
                index
                    .by_label
                    .entry((ns, k, v))
                    .or_default()
                    .push((we, key));
            }
        }
        index
    }

    /// The entries of `namespace` that `selector` selects, in key order.
    fn select<'s>(
        &'s self,
        namespace: &'a Namespace,
        selector: &'s Labels,
    ) -> impl Iterator<Item = (&'a WorkloadEntry, &'a ObjectKey)> + 's {
        let candidates = match selector.iter().next() {
            Some((k, v)) => self.by_label.get(&(namespace, k, v)),
            None => self.by_namespace.get(namespace),
        };
        candidates
            .into_iter()
            .flatten()
            .copied()
            .filter(move |(we, _)| selector.selects(&we.workload.labels))
    }
}

fn services_of(
    se: &ServiceEntry,
    selectable: &WorkloadIndex<'_>,
    trust_domain: &TrustDomain,
    source: &SourceName,
    version: u64,
) -> Vec<Service> {
    let stamp = |key: &ObjectKey| Provenance::new(source.clone(), key.to_string(), version);
    let origin = ObjectKey {
        kind: super::config::Kind::ServiceEntry,
        namespace: se.meta.namespace.clone(),
        name: se.meta.name.clone(),
    };
    let mut workloads: Vec<(&Workload, ObjectKey)> =
        se.endpoints.iter().map(|w| (w, origin.clone())).collect();
    if let Some(selector) = &se.workload_selector {
        for (we, key) in selectable.select(&se.meta.namespace, selector) {
            workloads.push((&we.workload, key.clone()));
        }
    }
    let mut endpoints = Vec::new();
    for port in &se.ports {
        for (w, from) in &workloads {
            if let Some(e) = endpoint(port, w, from, trust_domain, stamp(from)) {
                endpoints.push(e);
            }
        }
    }
    endpoints.sort_by(|a, b| (a.service_port, &a.address).cmp(&(b.service_port, &b.address)));
    se.hosts
        .iter()
        .map(|h| Service {
            hostname: h.clone(),
            namespace: se.meta.namespace.clone(),
            ports: se.ports.clone(),
            addresses: se.addresses.clone(),
            resolution: se.resolution,
            location: se.location,
            export_to: se.export_to.clone(),
            subject_alt_names: se.subject_alt_names.clone(),
            endpoints: endpoints.clone(),
            origin: origin.clone(),
            provenance: stamp(&origin),
        })
        .collect()
}

/// The endpoint of a workload for one service port. Istio's port rule: the workload's port
/// of the same name, else the service port's target port, else the service port itself.
pub(crate) fn endpoint(
    port: &ServicePort,
    w: &Workload,
    origin: &ObjectKey,
    trust_domain: &TrustDomain,
    provenance: Provenance,
) -> Option<Endpoint> {
    let address = w.address.clone()?;
    let target = w
        .ports
        .get(&port.name)
        .copied()
        .or(port.target_port)
        .unwrap_or(port.number);
    Some(Endpoint {
        service_port: port.number,
        address,
        port: target,
        labels: w.labels.clone(),
        locality: w.locality.clone(),
        network: w.network.clone(),
        weight: w.weight,
        // Namespaces and service accounts were validated as DNS-1123 names, which SPIFFE IDs
        // accept; `ok()?` cannot drop an endpoint that validation let through.
        identity: Identity::new(
            trust_domain.clone(),
            origin.namespace.as_str(),
            w.service_account
                .clone()
                .unwrap_or_else(ServiceAccount::default_account)
                .as_str(),
        )
        .ok()?,
        origin: origin.clone(),
        provenance,
    })
}

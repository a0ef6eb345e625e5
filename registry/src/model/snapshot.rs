//! The immutable [`Snapshot`] of the mesh: services (ServiceEntry hosts × ports) with their
//! endpoints (inline `endpoints` and the `WorkloadEntry`s selected by `workloadSelector` in
//! the same namespace), plus every config object, under one version. Cheap to clone: the
//! contents sit behind an `Arc`, and each service behind its own `Arc` so that a merge of
//! several sources shares the services it did not change.
//!
//! Every service and endpoint carries its [`Provenance`]. [`Snapshot::build`] stamps the
//! static registry's; [`Snapshot::assemble`] takes services already built by their sources
//! (the merge's way in).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::{
    Address, AuthorizationPolicy, ConfigObject, DestinationRule, Gateway, MeshLocation, ObjectKey,
    PeerAuthentication, Resolution, ServiceEntry, ServicePort, VirtualService, Workload,
    WorkloadGroup,
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
        let mut services = Vec::new();
        for object in objects.values() {
            if let ConfigObject::ServiceEntry(se) = object {
                services.extend(
                    services_of(se, &objects, trust_domain, &source, version)
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
        Snapshot(Arc::new(Inner {
            version,
            services,
            objects,
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

    pub fn virtual_services(&self) -> impl Iterator<Item = &VirtualService> {
        self.objects().filter_map(|o| match o {
            ConfigObject::VirtualService(v) => Some(v),
            _ => None,
        })
    }

    pub fn destination_rules(&self) -> impl Iterator<Item = &DestinationRule> {
        self.objects().filter_map(|o| match o {
            ConfigObject::DestinationRule(v) => Some(v),
            _ => None,
        })
    }

    pub fn gateways(&self) -> impl Iterator<Item = &Gateway> {
        self.objects().filter_map(|o| match o {
            ConfigObject::Gateway(v) => Some(v),
            _ => None,
        })
    }

    pub fn workload_groups(&self) -> impl Iterator<Item = &WorkloadGroup> {
        self.objects().filter_map(|o| match o {
            ConfigObject::WorkloadGroup(v) => Some(v),
            _ => None,
        })
    }

    pub fn peer_authentications(&self) -> impl Iterator<Item = &PeerAuthentication> {
        self.objects().filter_map(|o| match o {
            ConfigObject::PeerAuthentication(v) => Some(v),
            _ => None,
        })
    }

    pub fn authorization_policies(&self) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.objects().filter_map(|o| match o {
            ConfigObject::AuthorizationPolicy(v) => Some(v),
            _ => None,
        })
    }
}

fn services_of(
    se: &ServiceEntry,
    objects: &BTreeMap<ObjectKey, ConfigObject>,
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
        for (key, object) in objects {
            if let ConfigObject::WorkloadEntry(we) = object
                && we.meta.namespace == se.meta.namespace
                && selector.selects(&we.workload.labels)
            {
                workloads.push((&we.workload, key.clone()));
            }
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
fn endpoint(
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

//! Pure: a Kubernetes `Service` and the `EndpointSlice`s that name it (label
//! `kubernetes.io/service-name`) → a mesh service, or the reason it was rejected alone.
//!
//! - The host is `<svc>.<ns>.svc.<clusterDomain>`, in the service's namespace, location
//!   `MESH_INTERNAL`, resolution `STATIC` (its endpoints' IPs).
//! - Ports: each TCP port; the protocol by Istio's rules (`appProtocol`, else the port
//!   name's prefix: `http-web` → HTTP, unknown → TCP). UDP and SCTP ports are left out (the
//!   mesh carries TCP).
//! - The declared address is the ClusterIP (all of `clusterIPs`); headless services have none.
//! - Endpoints: the slices' endpoints whose `conditions.ready` is not false (unset means
//!   ready, as the API documents), one per address and matching slice port (matched by port
//!   name, as kube-proxy does). `addressType: FQDN` slices are rejected alone.
//! - Labels: the service's labels, on every endpoint. The workload identity's service
//!   account is the annotation `hostmesh.io/service-account` when set, else `default`; the
//!   endpoints speak Istio mTLS (`security.istio.io/tlsMode: istio`) only when the service
//!   is annotated `hostmesh.io/meshed: "true"`, since a slice does not say whether its pods
//!   carry a sidecar.
//! - Provenance: `Service ns/name` at its `resourceVersion`; each endpoint `EndpointSlice
//!   ns/name` at the slice's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::merge::Rejection;
use crate::model::config::{Address, MeshLocation, Resolution, ServicePort};
use crate::model::types::{Labels, Locality, ObjectName, ServiceAccount, Weight};
use crate::model::{
    Endpoint, Hostname, Identity, Kind, Namespace, ObjectKey, PortNumber, Protocol, Provenance,
    Service, SourceName, TrustDomain,
};

/// The label that joins an `EndpointSlice` to its `Service`.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation: the pods' service account (their mesh identity).
pub const ANNOTATION_SERVICE_ACCOUNT: &str = "hostmesh.io/service-account";
/// Annotation: `"true"` when the pods speak Istio mTLS.
pub const ANNOTATION_MESHED: &str = "hostmesh.io/meshed";
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The outcome for one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    pub service: Option<Service>,
    pub rejected: Vec<Rejection>,
}

fn reject(object: String, reason: String) -> Rejection {
    Rejection {
        source: SourceName::KUBERNETES.to_owned(),
        object,
        reason,
    }
}

/// Converts `service` with the slices that name it.
pub fn convert(
    service: &KubeService,
    slices: &[&EndpointSlice],
    cluster_domain: &str,
    trust_domain: &TrustDomain,
) -> Converted {
    let meta = &service.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let ns = meta.namespace.clone().unwrap_or_default();
    let object = format!("Service {ns}/{name}");
    let mut out = Converted::default();
    let built = build(service, &name, &ns, &object, cluster_domain, trust_domain);
    let Ok((mut svc, identity, labels)) =
        built.map_err(|reason| out.rejected.push(reject(object.clone(), reason)))
    else {
        return out;
    };
    let source = SourceName::new(SourceName::KUBERNETES);
    let mut endpoints = Vec::new();
    for slice in slices {
        let slice_name = format!(
            "EndpointSlice {ns}/{}",
            slice.metadata.name.as_deref().unwrap_or_default()
        );
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            out.rejected.push(reject(
                slice_name,
                format!(
                    "addressType {:?} is not supported (only IPv4 and IPv6 endpoints)",
                    slice.address_type
                ),
            ));
            continue;
        }
        let revision = slice.metadata.resource_version.clone().unwrap_or_default();
        let slice_ports = slice.ports.as_deref().unwrap_or_default();
        match slice_endpoints(&svc, slice, slice_ports, &identity, &labels) {
            Ok(found) => endpoints.extend(found.into_iter().map(|e| Endpoint {
                provenance: Provenance::new(source.clone(), slice_name.clone(), &revision),
                ..e
            })),
            Err(reason) => out.rejected.push(reject(slice_name, reason)),
        }
    }
    endpoints.sort_by(|a, b| {
        (a.service_port, &a.address, &a.provenance).cmp(&(
            b.service_port,
            &b.address,
            &b.provenance,
        ))
    });
    endpoints.dedup_by(|a, b| {
        a.service_port == b.service_port && a.address == b.address && a.port == b.port
    });
    svc.endpoints = endpoints;
    out.service = Some(svc);
    out
}

/// The service without endpoints, the identity and labels its endpoints get; or why not.
fn build(
    service: &KubeService,
    name: &str,
    ns: &str,
    object: &str,
    cluster_domain: &str,
    trust_domain: &TrustDomain,
) -> Result<(Service, Identity, Labels), String> {
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err("type ExternalName is not supported (it has no endpoints to mesh)".into());
    }
    let namespace = Namespace::new(ns).map_err(|e| format!("namespace: {e}"))?;
    let object_name = ObjectName::new(name).map_err(|e| format!("name: {e}"))?;
    let host = format!("{name}.{ns}.svc.{cluster_domain}");
    let hostname = Hostname::new(&host).map_err(|e| format!("host {host:?}: {e}"))?;
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        if p.protocol.as_deref().is_some_and(|proto| proto != "TCP") {
            continue;
        }
        let number = u32::try_from(p.port)
            .ok()
            .and_then(|n| PortNumber::new(n).ok())
            .ok_or_else(|| format!("spec.ports[{i}].port: {} is not a valid port", p.port))?;
        let port_name = p.name.clone().unwrap_or_default();
        ports.push(ServicePort {
            number,
            protocol: Protocol::select(None, p.app_protocol.as_deref(), &port_name),
            name: port_name,
            target_port: None,
        });
    }
    let annotations = service.metadata.annotations.clone().unwrap_or_default();
    let account = match annotations.get(ANNOTATION_SERVICE_ACCOUNT) {
        None => ServiceAccount::default_account(),
        Some(sa) => ServiceAccount::new(sa)
            .map_err(|e| format!("annotation {ANNOTATION_SERVICE_ACCOUNT}: {e}"))?,
    };
    let identity = Identity::new(trust_domain.clone(), ns, account.as_str())
        .map_err(|e| format!("identity: {e}"))?;
    let mut label_map: BTreeMap<String, String> =
        service.metadata.labels.clone().unwrap_or_default();
    if annotations
        .get(ANNOTATION_MESHED)
        .is_some_and(|v| v == "true")
    {
        label_map.insert(TLS_MODE_LABEL.to_owned(), "istio".to_owned());
    }
    let labels = Labels::new(label_map).map_err(|e| format!("metadata.labels: {e}"))?;
    let mut addresses: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if let Some(ip) = &spec.cluster_ip
        && !addresses.contains(ip)
    {
        addresses.insert(0, ip.clone());
    }
    addresses.retain(|a| a != "None" && !a.is_empty());
    for a in &addresses {
        a.parse::<IpAddr>()
            .map_err(|_| format!("spec.clusterIP {a:?} is not an IP address"))?;
    }
    let revision = service
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    let origin = ObjectKey {
        kind: Kind::ServiceEntry,
        namespace: namespace.clone(),
        name: object_name,
    };
    let svc = Service {
        hostname,
        namespace,
        ports,
        addresses,
        resolution: Resolution::Static,
        location: MeshLocation::Internal,
        export_to: Vec::new(),
        subject_alt_names: Vec::new(),
        endpoints: Vec::new(),
        origin,
        provenance: Provenance::new(SourceName::new(SourceName::KUBERNETES), object, revision),
    };
    Ok((svc, identity, labels))
}

/// The ready endpoints of one slice, for the service's ports.
fn slice_endpoints(
    svc: &Service,
    slice: &EndpointSlice,
    slice_ports: &[k8s_openapi::api::discovery::v1::EndpointPort],
    identity: &Identity,
    labels: &Labels,
) -> Result<Vec<Endpoint>, String> {
    let mut out = Vec::new();
    for (i, e) in slice.endpoints.iter().enumerate() {
        if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        let locality = e.zone.as_deref().and_then(|z| Locality::parse(z).ok());
        for (j, text) in e.addresses.iter().enumerate() {
            let ip: IpAddr = text.parse().map_err(|_| {
                format!("endpoints[{i}].addresses[{j}]: {text:?} is not an IP address")
            })?;
            for sp in &svc.ports {
                let Some(port) = slice_ports
                    .iter()
                    .find(|p| p.name.as_deref().unwrap_or_default() == sp.name)
                    .and_then(|p| p.port)
                else {
                    continue;
                };
                let port = u32::try_from(port)
                    .ok()
                    .and_then(|n| PortNumber::new(n).ok())
                    .ok_or_else(|| format!("ports: {port} is not a valid port"))?;
                out.push(Endpoint {
                    service_port: sp.number,
                    address: Address::Ip(ip),
                    port,
                    labels: labels.clone(),
                    locality: locality.clone(),
                    network: None,
                    weight: Weight::from_istio(1),
                    identity: identity.clone(),
                    origin: svc.origin.clone(),
                    provenance: svc.provenance.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

//! Pure: one Consul service's healthy instances → a mesh service, and the instances
//! rejected (each alone, with the reason).
//!
//! - The host is `<service>.<domainSuffix>` (`web.service.consul`), in the configured
//!   namespace. Each distinct instance port is a service port; an instance serves only its
//!   own port.
//! - The address is the instance's `Service.Address`, else its node's `Address`; it must be
//!   an IP.
//! - Labels: node meta, then service meta, then tags (`key=value` → `key: value`, a bare
//!   tag `t` → `t: ""`); later ones win; keys or values that are not valid labels are left
//!   out.
//! - Plaintext and `MESH_EXTERNAL` unless every instance says it is meshed
//!   (`hostmesh-meshed: "true"` in its service meta); then `MESH_INTERNAL` with Istio mTLS,
//!   the identity's service account from `hostmesh-service-account` (else `default`).
//!   `hostmesh-protocol` (`http`, `grpc`, …) sets the port protocol (else TCP).
//! - The datacenter becomes the endpoint's locality region; `Weights.Passing` its weight.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::api::HealthEntry;
use super::settings::ConsulSettings;
use crate::merge::Rejection;
use crate::model::config::{Address, MeshLocation, Resolution, ServicePort};
use crate::model::types::{Labels, Locality, ObjectName, ServiceAccount, Weight};
use crate::model::{
    Endpoint, Hostname, Identity, Kind, ObjectKey, PortNumber, Protocol, Provenance, Service,
    SourceName,
};

/// Service meta keys hostmesh reads (Consul meta keys allow only letters, digits, `-`, `_`).
pub const META_MESHED: &str = "hostmesh-meshed";
pub const META_SERVICE_ACCOUNT: &str = "hostmesh-service-account";
pub const META_PROTOCOL: &str = "hostmesh-protocol";
/// Istio's workload label for endpoints that speak Istio mTLS.
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The outcome for one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    /// `None` when no instance was usable: without instances, the ports are unknown.
    pub service: Option<Service>,
    pub rejected: Vec<Rejection>,
}

/// Converts the healthy instances of `name` (as of Consul index `index`).
pub fn convert(
    name: &str,
    entries: &[HealthEntry],
    index: u64,
    settings: &ConsulSettings,
) -> Converted {
    let source = SourceName::new(SourceName::CONSUL);
    let service_object = format!("consul service {name}");
    let reject = |object: String, reason: String| Rejection {
        source: SourceName::CONSUL.to_owned(),
        object,
        reason,
    };
    let host = format!("{name}.{}", settings.domain_suffix);
    let (hostname, object_name) = match (Hostname::new(&host), ObjectName::new(name)) {
        (Ok(h), Ok(n)) if !h.is_wildcard() => (h, n),
        _ => {
            return Converted {
                service: None,
                rejected: vec![reject(
                    service_object,
                    format!("{host:?} is not a valid mesh host name (lower-case DNS labels only)"),
                )],
            };
        }
    };
    let origin = ObjectKey {
        kind: Kind::ServiceEntry,
        namespace: settings.namespace.clone(),
        name: object_name,
    };
    let mut out = Converted::default();
    let mut ports: BTreeMap<PortNumber, Protocol> = BTreeMap::new();
    let mut endpoints = Vec::new();
    let mut all_meshed = true;
    for entry in entries {
        let object = format!(
            "consul service {name}, instance {} on node {}",
            entry.service.id, entry.node.node
        );
        match instance(entry, &origin, settings) {
            Ok((endpoint, protocol, meshed)) => {
                all_meshed &= meshed;
                ports.entry(endpoint.port).or_insert(protocol);
                endpoints.push(Endpoint {
                    provenance: Provenance::new(source.clone(), object, entry.service.modify_index),
                    ..endpoint
                });
            }
            Err(reason) => out.rejected.push(reject(object, reason)),
        }
    }
    if endpoints.is_empty() {
        return out;
    }
    endpoints.sort_by(|a, b| {
        (a.service_port, &a.address, &a.provenance).cmp(&(
            b.service_port,
            &b.address,
            &b.provenance,
        ))
    });
    let location = if all_meshed {
        MeshLocation::Internal
    } else {
        MeshLocation::External
    };
    if !all_meshed {
        for e in &mut endpoints {
            // Mixed: nobody gets mTLS (a plaintext instance cannot answer it).
            if e.labels.get(TLS_MODE_LABEL).is_some() {
                e.labels = without(&e.labels, TLS_MODE_LABEL);
            }
        }
    }
    out.service = Some(Service {
        hostname,
        namespace: settings.namespace.clone(),
        ports: ports
            .into_iter()
            .map(|(number, protocol)| ServicePort {
                number,
                name: format!("{}-{number}", protocol.as_str().to_ascii_lowercase()),
                protocol,
                target_port: None,
            })
            .collect(),
        addresses: Vec::new(),
        resolution: Resolution::Static,
        location,
        export_to: Vec::new(),
        subject_alt_names: Vec::new(),
        endpoints,
        origin,
        provenance: Provenance::new(source, service_object, index),
    });
    out
}

/// One instance → its endpoint, port protocol and whether it is meshed; or why not.
fn instance(
    entry: &HealthEntry,
    origin: &ObjectKey,
    settings: &ConsulSettings,
) -> Result<(Endpoint, Protocol, bool), String> {
    let svc = &entry.service;
    let text = if svc.address.is_empty() {
        &entry.node.address
    } else {
        &svc.address
    };
    if text.is_empty() {
        return Err("no address: neither Service.Address nor the node's Address is set".into());
    }
    let ip: IpAddr = text.parse().map_err(|_| {
        format!("address {text:?} is not an IP address (hostmesh needs IP endpoints)")
    })?;
    let port =
        PortNumber::new(svc.port).map_err(|_| format!("port {} is not a valid port", svc.port))?;
    let meshed = svc.meta.get(META_MESHED).is_some_and(|v| v == "true");
    let protocol = match svc.meta.get(META_PROTOCOL) {
        None => Protocol::Tcp,
        Some(p) => {
            Protocol::parse(p).ok_or_else(|| format!("{META_PROTOCOL} {p:?} is not a protocol"))?
        }
    };
    let account = match svc.meta.get(META_SERVICE_ACCOUNT) {
        None => ServiceAccount::default_account(),
        Some(sa) => ServiceAccount::new(sa).map_err(|e| format!("{META_SERVICE_ACCOUNT}: {e}"))?,
    };
    let identity = Identity::new(
        settings.trust_domain.clone(),
        origin.namespace.as_str(),
        account.as_str(),
    )
    .map_err(|e| format!("identity: {e}"))?;
    let mut labels = labels(entry);
    if meshed {
        labels.insert(TLS_MODE_LABEL.to_owned(), "istio".to_owned());
    }
    let labels = Labels::new(labels).map_err(|e| e.to_string())?;
    let locality = Some(entry.node.datacenter.as_str())
        .filter(|dc| !dc.is_empty())
        .and_then(|dc| Locality::parse(dc).ok());
    let endpoint = Endpoint {
        service_port: port,
        address: Address::Ip(ip),
        port,
        labels,
        locality,
        network: None,
        weight: Weight::from_istio(svc.weights.map_or(1, |w| w.passing)),
        identity,
        origin: origin.clone(),
        provenance: Provenance::new(SourceName::new(SourceName::CONSUL), "", 0),
    };
    Ok((endpoint, protocol, meshed))
}

/// Node meta, then service meta, then tags; only valid label keys and values.
fn labels(entry: &HealthEntry) -> BTreeMap<String, String> {
    let tags = entry.service.tags.iter().map(|t| match t.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (t.clone(), String::new()),
    });
    let mut out = BTreeMap::new();
    for (k, v) in entry
        .node
        .meta
        .iter()
        .chain(entry.service.meta.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(tags)
    {
        let one = BTreeMap::from([(k.clone(), v.clone())]);
        if Labels::new(one).is_ok() {
            out.insert(k, v);
        }
    }
    out
}

fn without(labels: &Labels, key: &str) -> Labels {
    let map: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Labels::new(map).unwrap_or_default()
}

#[cfg(test)]
mod tests;

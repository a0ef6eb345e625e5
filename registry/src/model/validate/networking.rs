//! Validation of the service and workload objects of `networking.istio.io`:
//! `ServiceEntry`, `WorkloadEntry` and `WorkloadGroup`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Context, Errors, FieldError, host, is_ip_or_cidr, labels, one_of, port};
use crate::model::config::{
    Address, MeshLocation, Meta, Resolution, ServiceEntry, ServicePort, Workload, WorkloadEntry,
    WorkloadGroup,
};
use crate::model::istio::networking::{ServiceEntrySpec, WorkloadEntrySpec, WorkloadGroupSpec};
use crate::model::protocol::Protocol;
use crate::model::types::{Hostname, Locality, Network, ServiceAccount, Weight, is_dns1123_label};

pub(super) const PROTOCOLS: &str =
    "HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, MYSQL, REDIS, TCP, TLS, UDP";

/// What kind of workload is being checked: the rules for `address` differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkloadUse {
    Entry,
    Endpoint(Resolution),
    Template,
}

fn workload(errs: &mut Errors, path: &str, w: &WorkloadEntrySpec, used: WorkloadUse) -> Workload {
    let address = match (w.address.as_deref(), used) {
        (Some(a), WorkloadUse::Template) if !a.is_empty() => {
            errs.push(
                format!("{path}.address"),
                "must not be set in a WorkloadGroup template",
            );
            None
        }
        (None | Some(""), WorkloadUse::Entry) if w.network.is_none() => {
            errs.push(format!("{path}.address"), "is required");
            None
        }
        (None | Some(""), WorkloadUse::Endpoint(_)) => {
            errs.push(format!("{path}.address"), "is required");
            None
        }
        (None | Some(""), _) => None,
        (Some(a), used) => address(errs, &format!("{path}.address"), a, used),
    };
    let mut ports = std::collections::BTreeMap::new();
    for (name, n) in &w.ports {
        if let Some(p) = port(errs, &format!("{path}.ports.{name}"), *n) {
            ports.insert(name.clone(), p);
        }
    }
    let labels = labels(errs, &format!("{path}.labels"), &w.labels).unwrap_or_default();
    let network = w
        .network
        .as_deref()
        .filter(|n| !n.is_empty())
        .and_then(|n| errs.check(format!("{path}.network"), Network::new(n)));
    let locality = w
        .locality
        .as_deref()
        .filter(|l| !l.is_empty())
        .and_then(|l| errs.check(format!("{path}.locality"), Locality::parse(l)));
    let service_account = w
        .service_account
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| errs.check(format!("{path}.serviceAccount"), ServiceAccount::new(s)));
    Workload {
        address,
        ports,
        labels,
        network,
        locality,
        weight: Weight::from_istio(w.weight.unwrap_or(0)),
        service_account,
    }
}

fn address(errs: &mut Errors, path: &str, a: &str, used: WorkloadUse) -> Option<Address> {
    if let Some(socket) = a.strip_prefix("unix://") {
        if socket.is_empty() {
            errs.push(path, "unix socket path is empty");
            return None;
        }
        return Some(Address::Unix(socket.to_owned()));
    }
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Some(Address::Ip(ip));
    }
    if used == WorkloadUse::Endpoint(Resolution::Static) {
        errs.push(
            path,
            format!("{a:?} is not a valid IP address (resolution STATIC)"),
        );
        return None;
    }
    match Hostname::new(a) {
        Ok(h) if !h.is_wildcard() => Some(Address::Hostname(h)),
        _ => {
            errs.push(
                path,
                format!("{a:?} is not a valid IP address or host name"),
            );
            None
        }
    }
}

/// Validates a `ServiceEntry`.
pub fn service_entry(
    meta: Meta,
    spec: &ServiceEntrySpec,
    _ctx: &Context,
) -> Result<ServiceEntry, Vec<FieldError>> {
    let mut errs = Errors::default();
    if spec.hosts.is_empty() {
        errs.push("spec.hosts", "a ServiceEntry needs at least one host");
    }
    let mut hosts = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        if h == "*" {
            errs.push(path, "\"*\" is not allowed in a ServiceEntry");
        } else if let Some(h) = host(&mut errs, &path, h) {
            hosts.push(h);
        }
    }
    for (i, a) in spec.addresses.iter().enumerate() {
        if !is_ip_or_cidr(a) {
            errs.push(
                format!("spec.addresses[{i}]"),
                format!("{a:?} is not a valid IP address or CIDR block"),
            );
        }
    }
    let location = match one_of(
        &mut errs,
        "spec.location",
        spec.location.as_deref(),
        &["MESH_EXTERNAL", "MESH_INTERNAL"],
    ) {
        Some("MESH_INTERNAL") => MeshLocation::Internal,
        _ => MeshLocation::External,
    };
    let resolution = match one_of(
        &mut errs,
        "spec.resolution",
        spec.resolution.as_deref(),
        &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"],
    ) {
        Some("STATIC") => Resolution::Static,
        Some("DNS") => Resolution::Dns,
        Some("DNS_ROUND_ROBIN") => Resolution::DnsRoundRobin,
        _ => Resolution::None,
    };
    let ports = service_ports(&mut errs, spec);
    let port_names: BTreeSet<&str> = ports.iter().map(|p| p.name.as_str()).collect();

    let selector = spec
        .workload_selector
        .as_ref()
        .and_then(|s| labels(&mut errs, "spec.workloadSelector.labels", &s.labels));
    if selector.is_some() && !spec.endpoints.is_empty() {
        errs.push(
            "spec.workloadSelector",
            "only one of workloadSelector and endpoints may be set",
        );
    }
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        let w = workload(&mut errs, &path, e, WorkloadUse::Endpoint(resolution));
        for name in e.ports.keys() {
            if !port_names.contains(name.as_str()) {
                errs.push(
                    format!("{path}.ports.{name}"),
                    format!("port {name:?} is not a port of this ServiceEntry"),
                );
            }
        }
        endpoints.push(w);
    }
    match resolution {
        Resolution::None if !spec.endpoints.is_empty() => {
            errs.push(
                "spec.endpoints",
                "endpoints must not be set with resolution NONE",
            );
        }
        Resolution::Static if spec.endpoints.is_empty() && selector.is_none() => {
            errs.push(
                "spec.resolution",
                "resolution STATIC needs endpoints or a workloadSelector",
            );
        }
        Resolution::Dns | Resolution::DnsRoundRobin if spec.endpoints.is_empty() => {
            for (i, h) in hosts.iter().enumerate() {
                if h.is_wildcard() {
                    errs.push(
                        format!("spec.hosts[{i}]"),
                        format!("wildcard host {h} needs endpoints with resolution DNS"),
                    );
                }
            }
        }
        _ => {}
    }
    if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
        errs.push(
            "spec.endpoints",
            "resolution DNS_ROUND_ROBIN allows at most one endpoint",
        );
    }
    errs.finish(ServiceEntry {
        meta,
        hosts,
        addresses: spec.addresses.clone(),
        ports,
        location,
        resolution,
        endpoints,
        workload_selector: selector,
        export_to: spec.export_to.clone(),
        subject_alt_names: spec.subject_alt_names.clone(),
    })
}

fn service_ports(errs: &mut Errors, spec: &ServiceEntrySpec) -> Vec<ServicePort> {
    let mut ports = Vec::new();
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let number = port(errs, &format!("{path}.number"), p.number);
        if number.is_some() && !numbers.insert(p.number) {
            errs.push(
                format!("{path}.number"),
                format!("port {} is used twice", p.number),
            );
        }
        let name = p.name.clone().unwrap_or_default();
        if name.is_empty() {
            errs.push(format!("{path}.name"), "is required");
        } else if !is_dns1123_label(&name) {
            errs.push(
                format!("{path}.name"),
                format!("{name:?} is not a valid port name (a DNS label)"),
            );
        } else if !names.insert(name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("port name {name:?} is used twice"),
            );
        }
        let protocol = match p.protocol.as_deref() {
            Some(proto) => match Protocol::parse(proto) {
                Some(proto) => Some(proto),
                None => {
                    errs.push(
                        format!("{path}.protocol"),
                        format!("{proto:?} is not one of {PROTOCOLS}"),
                    );
                    None
                }
            },
            None => Some(Protocol::from_port_name(&name)),
        };
        let target_port = p
            .target_port
            .and_then(|t| port(errs, &format!("{path}.targetPort"), t));
        if let (Some(number), Some(protocol)) = (number, protocol) {
            ports.push(ServicePort {
                number,
                name,
                protocol,
                target_port,
            });
        }
    }
    ports
}

/// Validates a `WorkloadEntry`.
pub fn workload_entry(
    meta: Meta,
    spec: &WorkloadEntrySpec,
    _ctx: &Context,
) -> Result<WorkloadEntry, Vec<FieldError>> {
    let mut errs = Errors::default();
    let workload = workload(&mut errs, "spec", spec, WorkloadUse::Entry);
    errs.finish(WorkloadEntry { meta, workload })
}

/// Validates a `WorkloadGroup`.
pub fn workload_group(
    meta: Meta,
    spec: &WorkloadGroupSpec,
    _ctx: &Context,
) -> Result<WorkloadGroup, Vec<FieldError>> {
    let mut errs = Errors::default();
    let (group_labels, annotations) = match &spec.metadata {
        Some(m) => (
            labels(&mut errs, "spec.metadata.labels", &m.labels).unwrap_or_default(),
            m.annotations.clone(),
        ),
        None => Default::default(),
    };
    let template = match &spec.template {
        Some(t) => workload(&mut errs, "spec.template", t, WorkloadUse::Template),
        None => {
            errs.push("spec.template", "is required");
            Workload::default()
        }
    };
    if let Some(probe) = &spec.probe {
        let kinds = [
            probe.http_get.as_ref().map(|h| ("httpGet", h.port)),
            probe.tcp_socket.as_ref().map(|t| ("tcpSocket", t.port)),
            probe.grpc.as_ref().map(|g| ("grpc", g.port)),
        ];
        let set = kinds.iter().flatten().count() + usize::from(probe.exec.is_some());
        if set != 1 {
            errs.push(
                "spec.probe",
                "exactly one of httpGet, tcpSocket, exec and grpc must be set",
            );
        }
        for (field, p) in kinds.iter().flatten() {
            port(&mut errs, &format!("spec.probe.{field}.port"), *p);
        }
        if probe.exec.as_ref().is_some_and(|e| e.command.is_empty()) {
            errs.push("spec.probe.exec.command", "must not be empty");
        }
    }
    errs.finish(WorkloadGroup {
        meta,
        labels: group_labels,
        annotations,
        template,
        probe: spec.probe.clone().map(Arc::new),
    })
}

//! The validated configuration objects of the mesh, one type per Istio kind, and
//! [`ConfigObject`] that holds any of them. Each is built only by [`crate::model::validate`],
//! so a value of these types has passed Istio's checks.
//!
//! Services and workloads are fully typed. Routing and policy objects keep their Istio spec
//! (checked, but not yet translated) next to the typed parts the model needs today.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::istio::networking::DestinationRuleSpec;
use super::istio::networking::{GatewaySpec, ReadinessProbe, VirtualServiceSpec};
use super::istio::security::AuthorizationPolicySpec;
use super::protocol::Protocol;
use super::types::{
    Hostname, Labels, Locality, Namespace, Network, ObjectName, PortNumber, ServiceAccount, Weight,
};

/// The kinds of objects hostmesh reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ServiceEntry,
    WorkloadEntry,
    WorkloadGroup,
    VirtualService,
    DestinationRule,
    Gateway,
    PeerAuthentication,
    AuthorizationPolicy,
}

impl Kind {
    /// All kinds, in a stable order.
    pub const ALL: [Kind; 8] = [
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::WorkloadGroup,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The API group of the kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => "security.istio.io",
            _ => "networking.istio.io",
        }
    }

    /// The API versions accepted for the kind.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => &["v1", "v1beta1"],
            Kind::WorkloadGroup => &["v1", "v1beta1", "v1alpha3"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    /// Is `api_version` (`group/version`) accepted for this kind?
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        api_version
            .split_once('/')
            .is_some_and(|(g, v)| g == self.group() && self.versions().contains(&v))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies an object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Namespace,
    pub name: ObjectName,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Validated `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub name: ObjectName,
    pub namespace: Namespace,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
}

/// `ServiceEntry.spec.location`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MeshLocation {
    #[default]
    External,
    Internal,
}

/// `ServiceEntry.spec.resolution`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Connect to the address the client asked for.
    #[default]
    None,
    /// Use the endpoints' IP addresses.
    Static,
    /// Resolve the hosts (or the endpoints' names) with DNS, all addresses used.
    Dns,
    /// Resolve with DNS, use the first address only.
    DnsRoundRobin,
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub number: PortNumber,
    pub name: String,
    pub protocol: Protocol,
    pub target_port: Option<PortNumber>,
}

/// Where a workload is reached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Ip(IpAddr),
    Hostname(Hostname),
    /// `unix://` followed by a socket path.
    Unix(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Hostname(h) => h.fmt(f),
            Address::Unix(p) => write!(f, "unix://{p}"),
        }
    }
}

/// A workload: a `WorkloadEntry`'s spec, an inline `ServiceEntry` endpoint or a
/// `WorkloadGroup` template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Absent only in a `WorkloadGroup` template.
    pub address: Option<Address>,
    /// Port name → port on the workload.
    pub ports: BTreeMap<String, PortNumber>,
    pub labels: Labels,
    pub network: Option<Network>,
    pub locality: Option<Locality>,
    pub weight: Weight,
    pub service_account: Option<ServiceAccount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub meta: Meta,
    pub hosts: Vec<Hostname>,
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub location: MeshLocation,
    pub resolution: Resolution,
    pub endpoints: Vec<Workload>,
    pub workload_selector: Option<Labels>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadEntry {
    pub meta: Meta,
    pub workload: Workload,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadGroup {
    pub meta: Meta,
    /// Labels given to each entry made from this group.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// The template; its address is always absent.
    pub template: Workload,
    pub probe: Option<Arc<ReadinessProbe>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    pub meta: Meta,
    /// Hosts, short names qualified in the object's namespace.
    pub hosts: Vec<Hostname>,
    pub gateways: Vec<String>,
    /// The checked spec, as written (shared: specs are large and never change).
    pub spec: Arc<VirtualServiceSpec>,
}

/// A named subset of a destination's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    pub meta: Meta,
    /// The host, qualified in the object's namespace.
    pub host: Hostname,
    pub subsets: Vec<Subset>,
    pub spec: Arc<DestinationRuleSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub meta: Meta,
    pub selector: Labels,
    pub spec: Arc<GatewaySpec>,
}

/// `PeerAuthentication` mutual TLS mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Inherit from the parent scope (namespace, then mesh).
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthentication {
    pub meta: Meta,
    /// `None` applies to the whole namespace (or mesh, in the root namespace).
    pub selector: Option<Labels>,
    pub mode: MtlsMode,
    pub port_level: BTreeMap<PortNumber, MtlsMode>,
}

/// `AuthorizationPolicy.spec.action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AuthorizationAction {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationPolicy {
    pub meta: Meta,
    pub selector: Option<Labels>,
    pub action: AuthorizationAction,
    /// The extension provider of a CUSTOM policy.
    pub provider: Option<String>,
    pub spec: Arc<AuthorizationPolicySpec>,
}

/// Any validated object.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigObject {
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    WorkloadGroup(WorkloadGroup),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    Gateway(Gateway),
    PeerAuthentication(PeerAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
}

impl ConfigObject {
    pub fn meta(&self) -> &Meta {
        match self {
            ConfigObject::ServiceEntry(o) => &o.meta,
            ConfigObject::WorkloadEntry(o) => &o.meta,
            ConfigObject::WorkloadGroup(o) => &o.meta,
            ConfigObject::VirtualService(o) => &o.meta,
            ConfigObject::DestinationRule(o) => &o.meta,
            ConfigObject::Gateway(o) => &o.meta,
            ConfigObject::PeerAuthentication(o) => &o.meta,
            ConfigObject::AuthorizationPolicy(o) => &o.meta,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            ConfigObject::ServiceEntry(_) => Kind::ServiceEntry,
            ConfigObject::WorkloadEntry(_) => Kind::WorkloadEntry,
            ConfigObject::WorkloadGroup(_) => Kind::WorkloadGroup,
            ConfigObject::VirtualService(_) => Kind::VirtualService,
            ConfigObject::DestinationRule(_) => Kind::DestinationRule,
            ConfigObject::Gateway(_) => Kind::Gateway,
            ConfigObject::PeerAuthentication(_) => Kind::PeerAuthentication,
            ConfigObject::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        ObjectKey {
            kind: self.kind(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        }
    }
}

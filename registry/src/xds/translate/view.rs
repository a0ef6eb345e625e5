//! What the builders share about one snapshot: the services by host name (one per host), the
//! addresses clients use to reach them (declared or allocated), and which routing objects
//! apply to a host.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::TranslatorConfig;
use super::vip;
use crate::model::config::{DestinationRule, Resolution, VirtualService};
use crate::model::{Service, Snapshot};

/// A snapshot prepared for translation.
pub struct View<'a> {
    pub snapshot: &'a Snapshot,
    pub config: &'a TranslatorConfig,
    /// One service per host name. When several namespaces declare the same host, the first
    /// namespace in sorted order wins (the snapshot keeps services sorted that way).
    pub services: Vec<&'a Service>,
    /// Allocated addresses of services that declare none (see [`vip`]).
    pub vips: BTreeMap<String, Ipv4Addr>,
    by_host: HashMap<&'a str, &'a Service>,
}

impl<'a> View<'a> {
    pub fn new(snapshot: &'a Snapshot, config: &'a TranslatorConfig) -> Self {
        let mut services: Vec<&Service> = Vec::new();
        for s in snapshot.services() {
            if services.last().is_some_and(|l| l.hostname == s.hostname) {
                tracing::debug!(host = %s.hostname, namespace = %s.namespace, "host declared in several namespaces; the first one is used");
                continue;
            }
            services.push(s);
        }
        let vips = vip::allocate(
            services
                .iter()
                .filter(|s| needs_vip(s))
                .map(|s| s.hostname.as_str()),
        );
        let by_host = services.iter().map(|s| (s.hostname.as_str(), *s)).collect();
        Self {
            snapshot,
            config,
            services,
            vips,
            by_host,
        }
    }

    pub fn service(&self, host: &str) -> Option<&'a Service> {
        self.by_host.get(host).copied()
    }

    /// The addresses clients dial for the service: its declared addresses (IPs or CIDR
    /// blocks), else its allocated virtual IP, else none.
    pub fn addresses(&self, service: &Service) -> Vec<String> {
        if !service.addresses.is_empty() {
            return service.addresses.clone();
        }
        self.vips
            .get(service.hostname.as_str())
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default()
    }

    /// The `DestinationRule` for a host: exact host match; the first by key when several.
    pub fn destination_rule(&self, host: &str) -> Option<&'a DestinationRule> {
        self.snapshot
            .destination_rules()
            .find(|dr| dr.host.as_str() == host)
    }

    /// The `VirtualService` that routes a host for sidecars (no `gateways`, or `mesh` among
    /// them): exact host match; the first by key when several.
    pub fn virtual_service(&self, host: &str) -> Option<&'a VirtualService> {
        self.snapshot.virtual_services().find(|vs| {
            (vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh"))
                && vs.hosts.iter().any(|h| h.as_str() == host)
        })
    }
}

/// Istio's rule: a service gets an automatic address when it declares none, its host is not
/// a wildcard, and its resolution is not `NONE` (clients of a `NONE` service dial the real
/// address of the host, which an allocated one would hide).
fn needs_vip(service: &Service) -> bool {
    service.addresses.is_empty()
        && !service.hostname.is_wildcard()
        && service.resolution != Resolution::None
}

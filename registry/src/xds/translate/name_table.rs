//! Istio's DNS name table (`istio.networking.nds.v1.NameTable`), which the agent's DNS proxy
//! answers from: each service host → its addresses (declared IPs, or the allocated virtual
//! IP). envoy-types does not carry this message, so it is declared here with Istio's field
//! numbers.
//!
//! Istio sends the whole table as one resource with an empty name (its agent subscribes to
//! the type without naming resources), so the resource is named `""` here too. `registry` is
//! `External` (every service comes from a `ServiceEntry` today); `shortname` and `namespace`
//! are filled for `NAME.NS.svc.<suffix>` hosts so that an agent can answer `NAME.NS` and, in
//! its own namespace, `NAME`. Hosts with no address (wildcards, `NONE` services without
//! addresses) are not in the table; CIDR blocks are not addresses a name can resolve to.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::view::View;

/// The resource name of the table.
pub const NAME_TABLE_RESOURCE: &str = "";

/// `istio.networking.nds.v1.NameTable`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameTable {
    /// Host name → what it resolves to. A `BTreeMap` so that the encoding is deterministic.
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: BTreeMap<String, NameInfo>,
}

/// `istio.networking.nds.v1.NameTable.NameInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameInfo {
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    #[prost(string, tag = "2")]
    pub registry: String,
    #[prost(string, tag = "3")]
    pub shortname: String,
    #[prost(string, tag = "4")]
    pub namespace: String,
}

impl prost::Name for NameTable {
    const NAME: &'static str = "NameTable";
    const PACKAGE: &'static str = "istio.networking.nds.v1";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

pub fn build(view: &View<'_>) -> NameTable {
    let mut table = BTreeMap::new();
    let svc_suffix = format!(".svc.{}", view.config.domain_suffix);
    for service in &view.services {
        let host = service.hostname.as_str();
        if service.hostname.is_wildcard() {
            continue;
        }
        let ips: Vec<String> = view
            .addresses(service)
            .into_iter()
            .filter(|a| a.parse::<IpAddr>().is_ok())
            .collect();
        if ips.is_empty() {
            continue;
        }
        let (shortname, namespace) = host
            .strip_suffix(&svc_suffix)
            .and_then(|stem| stem.split_once('.'))
            .filter(|(_, ns)| !ns.contains('.'))
            .map(|(n, ns)| (n.to_owned(), ns.to_owned()))
            .unwrap_or_default();
        table.insert(
            host.to_owned(),
            NameInfo {
                ips,
                registry: "External".to_owned(),
                shortname,
                namespace,
            },
        );
    }
    NameTable { table }
}

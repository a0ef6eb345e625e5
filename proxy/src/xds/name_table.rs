//! Istio's DNS name table (`istio.networking.nds.v1.NameTable`), as it travels over ADS, and
//! the checked form the agent's DNS proxy reads ([`MeshNames`]).
//!
//! The message is a small copy of Istio's wire type (field numbers from
//! `istio/api` `networking/nds/v1/nds.proto`): the proxy must not depend on the control
//! server's crate.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::wire::Problems;

/// `istio.networking.nds.v1.NameTable`: host name → addresses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameTable {
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

    fn full_name() -> String {
        "istio.networking.nds.v1.NameTable".to_owned()
    }

    fn type_url() -> String {
        "type.googleapis.com/istio.networking.nds.v1.NameTable".to_owned()
    }
}

/// One mesh name as the DNS proxy answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshName {
    pub ips: Vec<IpAddr>,
    /// The short name (`bill-service`), answered within `namespace` too.
    pub shortname: Option<String>,
    pub namespace: Option<String>,
    /// Which registry the name came from (informational).
    pub registry: String,
}

/// Every mesh name the control server published, lower-cased fully qualified name → addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshNames {
    pub names: BTreeMap<String, MeshName>,
}

impl MeshNames {
    /// The addresses of `name` (a fully qualified host name, case-insensitive, without the
    /// trailing dot).
    pub fn lookup(&self, name: &str) -> Option<&MeshName> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.get(&name)
    }
}

/// Checks every table (all resources of the type; normally one, named `""`) and merges them.
pub fn convert<'a>(
    tables: impl Iterator<Item = (&'a String, &'a NameTable)>,
    out: &mut Vec<super::Rejection>,
) -> MeshNames {
    let mut names = MeshNames::default();
    for (resource, table) in tables {
        let mut problems = Problems::new("NameTable", resource.clone(), out);
        for (host, info) in &table.table {
            let mut ips = Vec::with_capacity(info.ips.len());
            for ip in &info.ips {
                match ip.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => problems.add(format!("table[{host:?}].ips: {ip:?} is not an IP")),
                }
            }
            let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            names.names.insert(
                host.trim_end_matches('.').to_ascii_lowercase(),
                MeshName {
                    ips,
                    shortname: non_empty(&info.shortname),
                    namespace: non_empty(&info.namespace),
                    registry: info.registry.clone(),
                },
            );
        }
    }
    names
}

//! The mesh's names and how a query finds one.
//!
//! A [`NameTable`] maps fully qualified host names to their addresses (Istio's `NameTable`).
//! It is held in an [`ArcSwap`] ([`SharedNameTable`]) so that a new table from the control
//! server takes effect for the next query, without a restart and without a lock on the query
//! path.
//!
//! A query name matches, in this order ([`NameTable::resolve`]):
//! 1. exactly (`bill-service.demo.svc.cluster.local.`), answered under that name;
//! 2. as a mesh name with a search domain appended, as resolvers do with `ndots`
//!    (`bill-service.demo.svc.cluster.local.demo.svc.cluster.local.`), answered with a CNAME to
//!    the mesh name followed by its addresses;
//! 3. as a short name that a search domain completes (`bill-service.` with search domain
//!    `demo.svc.cluster.local`), answered under the short name, as Istio's alternate host
//!    names are.
//!
//! Search domains are tried in the order of `/etc/resolv.conf`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;

/// The table the DNS proxy reads; swap in a new [`NameTable`] with `store`.
pub type SharedNameTable = Arc<ArcSwap<NameTable>>;

/// A host name the table cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a valid DNS name: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: String,
}

/// Mesh host names (lower case, fully qualified) and their addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameTable {
    hosts: HashMap<Name, Vec<IpAddr>>,
}

/// How a query name matched the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshAnswer<'a> {
    /// Answer with these addresses under the queried name.
    Direct(&'a [IpAddr]),
    /// Answer with a CNAME from the queried name to `target`, then `target`'s addresses.
    Alias { target: Name, ips: &'a [IpAddr] },
}

impl NameTable {
    /// Builds a table; names may be written with or without the final dot, in any case.
    pub fn new<S: AsRef<str>>(
        hosts: impl IntoIterator<Item = (S, Vec<IpAddr>)>,
    ) -> Result<Self, InvalidName> {
        let mut table = HashMap::new();
        for (name, ips) in hosts {
            let key = fqdn(name.as_ref())?;
            let entry: &mut Vec<IpAddr> = table.entry(key).or_default();
            for ip in ips {
                if !entry.contains(&ip) {
                    entry.push(ip);
                }
            }
        }
        Ok(Self { hosts: table })
    }

    /// A new shared table.
    pub fn shared(self) -> SharedNameTable {
        Arc::new(ArcSwap::from_pointee(self))
    }

    /// The addresses of exactly this name.
    pub fn get(&self, name: &Name) -> Option<&[IpAddr]> {
        self.hosts.get(&normalize(name)).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Finds `query` in the table, using `search` domains as described in the module docs.
    /// `None` means the name is not the mesh's and the query must be forwarded.
    pub fn resolve(&self, query: &Name, search: &[Name]) -> Option<MeshAnswer<'_>> {
        let query = normalize(query);
        if let Some(ips) = self.hosts.get(&query) {
            return Some(MeshAnswer::Direct(ips));
        }
        for domain in search {
            if let Some(target) = strip_suffix(&query, domain)
                && let Some(ips) = self.hosts.get(&target)
            {
                return Some(MeshAnswer::Alias { target, ips });
            }
        }
        for domain in search {
            let Ok(candidate) = query.clone().append_domain(domain) else {
                continue;
            };
            if let Some(ips) = self.hosts.get(&candidate) {
                return Some(MeshAnswer::Direct(ips));
            }
        }
        None
    }
}

/// Parses a name for the table or the search list: lower case, fully qualified.
pub fn fqdn(name: &str) -> Result<Name, InvalidName> {
    let parsed = Name::from_utf8(name).map_err(|e| InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    if parsed.is_root() {
        return Err(InvalidName {
            name: name.to_owned(),
            reason: "the root is not a host name".to_owned(),
        });
    }
    Ok(normalize(&parsed))
}

fn normalize(name: &Name) -> Name {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name
}

/// `name` less the trailing `domain`, if `name` is longer than `domain` and ends with it.
fn strip_suffix(name: &Name, domain: &Name) -> Option<Name> {
    let (labels, domain_labels) = (usize::from(name.num_labels()), domain.num_labels());
    if labels <= usize::from(domain_labels) || !domain.zone_of(name) {
        return None;
    }
    let mut prefix =
        Name::from_labels(name.iter().take(labels - usize::from(domain_labels))).ok()?;
    prefix.set_fqdn(true);
    Some(prefix)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table() -> NameTable {
        NameTable::new([
            (
                "Bill-Service.demo.svc.cluster.local",
                vec!["240.240.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            ),
            ("db.example.internal.", vec!["10.0.0.9".parse().unwrap()]),
        ])
        .unwrap()
    }

    fn search() -> Vec<Name> {
        [
            "demo.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .iter()
        .map(|d| fqdn(d).unwrap())
        .collect()
    }

    fn name(s: &str) -> Name {
        Name::from_utf8(s).unwrap()
    }

    #[test]
    fn exact_names_match_in_any_case() {
        let t = table();
        let hit = t.resolve(&name("bill-service.DEMO.svc.cluster.local."), &search());
        assert!(
            matches!(hit, Some(MeshAnswer::Direct(ips)) if ips.len() == 2),
            "{hit:?}"
        );
        assert!(t.resolve(&name("db.example.internal"), &[]).is_some());
    }

    #[test]
    fn short_names_complete_through_search_domains() {
        let t = table();
        for short in [
            "bill-service.",
            "bill-service.demo.",
            "bill-service.demo.svc.",
        ] {
            let hit = t.resolve(&name(short), &search());
            assert!(
                matches!(hit, Some(MeshAnswer::Direct(_))),
                "{short}: {hit:?}"
            );
        }
        assert_eq!(t.resolve(&name("bill-service."), &[]), None);
    }

    #[test]
    fn search_expanded_mesh_names_alias_the_mesh_name() {
        let t = table();
        let q = name("bill-service.demo.svc.cluster.local.svc.cluster.local.");
        match t.resolve(&q, &search()) {
            Some(MeshAnswer::Alias { target, .. }) => {
                assert_eq!(target, name("bill-service.demo.svc.cluster.local."))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_names_are_not_the_mesh_s() {
        let t = table();
        assert_eq!(t.resolve(&name("example.com."), &search()), None);
        assert_eq!(t.resolve(&name("cluster.local."), &search()), None);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(NameTable::new([(".", vec![])]).is_err());
        assert!(NameTable::new([("a..b", vec![])]).is_err());
    }
}

//! HTTP route tables: virtual hosts chosen by authority, routes matched by path and headers,
//! and the weighted clusters a route sends to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use rand::Rng;
use regex::Regex;

use super::Cluster;

/// Virtual hosts of one service, looked up by the request's authority.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    hosts: Vec<VirtualHost>,
    /// Lower-cased exact domain → index in `hosts`.
    exact: HashMap<String, usize>,
    /// `*.suffix` as (".suffix", index), longest first.
    suffixes: Vec<(String, usize)>,
    /// `prefix.*` as ("prefix.", index), longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl RouteTable {
    pub(crate) fn new(name: String, hosts: Vec<VirtualHost>) -> Self {
        let mut table = Self {
            name,
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            any: None,
            hosts: Vec::new(),
        };
        for (i, host) in hosts.iter().enumerate() {
            for domain in &host.domains {
                let d = domain.to_ascii_lowercase();
                if d == "*" {
                    table.any.get_or_insert(i);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    table.suffixes.push((suffix.to_owned(), i));
                } else if let Some(prefix) = d.strip_suffix('*') {
                    table.prefixes.push((prefix.to_owned(), i));
                } else {
                    table.exact.entry(d).or_insert(i);
                }
            }
        }
        table
            .suffixes
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        table
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table.hosts = hosts;
        table
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.hosts
    }

    /// The virtual host for `authority`: exact, then `*.suffix`, then `prefix.*`, then `*`,
    /// first with the port and then without it (Envoy's order).
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let authority = authority.to_ascii_lowercase();
        let without_port = strip_port(&authority);
        [authority.as_str(), without_port]
            .into_iter()
            .find_map(|a| self.lookup(a))
            .or(self.any)
            .map(|i| &self.hosts[i])
    }

    fn lookup(&self, authority: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(authority) {
            return Some(*i);
        }
        let suffix = self
            .suffixes
            .iter()
            .find(|(s, _)| authority.len() > s.len() && authority.ends_with(s.as_str()));
        let prefix = || {
            self.prefixes
                .iter()
                .find(|(p, _)| authority.len() > p.len() && authority.starts_with(p.as_str()))
        };
        suffix.or_else(prefix).map(|(_, i)| *i)
    }

    /// The first route of the matching virtual host that matches the request.
    pub fn route(&self, authority: &str, path: &str, headers: &HeaderMap) -> Option<&Route> {
        self.virtual_host(authority)?
            .routes
            .iter()
            .find(|r| r.matches(path, headers))
    }
}

fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        // Not the inside of a bare IPv6 literal such as "[::1]".
        Some((host, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

#[derive(Debug)]
pub struct VirtualHost {
    pub(crate) name: String,
    pub(crate) domains: Vec<String>,
    pub(crate) routes: Vec<Route>,
}

impl VirtualHost {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[derive(Debug)]
pub struct Route {
    pub(crate) name: String,
    pub(crate) path: PathMatch,
    pub(crate) headers: Vec<HeaderMatch>,
    pub(crate) clusters: WeightedClusters,
    pub(crate) timeout: Option<Duration>,
}

impl Route {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn clusters(&self) -> &WeightedClusters {
        &self.clusters
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// `path` is the request's path without the query.
    pub fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        self.path.matches(path) && self.headers.iter().all(|h| h.matches(headers))
    }
}

#[derive(Debug)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored at both ends.
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(path),
        }
    }
}

#[derive(Debug)]
pub enum HeaderValueMatch {
    Present,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub(crate) name: http::HeaderName,
    pub(crate) value: HeaderValueMatch,
    pub(crate) invert: bool,
}

impl HeaderMatch {
    /// Multiple values of one header are matched as their comma-joined list, like Envoy.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let values: Vec<&str> = headers
            .get_all(&self.name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let found = if values.is_empty() {
            false
        } else {
            let joined = values.join(",");
            match &self.value {
                HeaderValueMatch::Present => true,
                HeaderValueMatch::Exact(v) => joined == *v,
                HeaderValueMatch::Prefix(p) => joined.starts_with(p.as_str()),
                HeaderValueMatch::Regex(r) => r.is_match(&joined),
            }
        };
        found != self.invert
    }
}

/// One or more clusters with weights summing above zero.
#[derive(Debug)]
pub struct WeightedClusters {
    clusters: Vec<(Arc<Cluster>, u32)>,
    total: u64,
}

impl WeightedClusters {
    pub(crate) fn new(clusters: Vec<(Arc<Cluster>, u32)>) -> Self {
        let total = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
        Self { clusters, total }
    }

    pub fn clusters(&self) -> &[(Arc<Cluster>, u32)] {
        &self.clusters
    }

    /// Chooses a cluster at random in proportion to the weights.
    pub fn pick(&self) -> &Arc<Cluster> {
        let mut ticket = rand::rng().random_range(0..self.total.max(1));
        for (cluster, weight) in &self.clusters {
            if ticket < u64::from(*weight) {
                return cluster;
            }
            ticket -= u64::from(*weight);
        }
        // Unreachable by construction (ticket < total); the last cluster is a safe answer.
        &self.clusters[self.clusters.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn host(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![],
        }
    }

    #[test]
    fn authority_lookup_follows_envoy_order() {
        let t = RouteTable::new(
            "t".into(),
            vec![
                host("exact", &["bill.demo.svc.cluster.local", "bill:9999"]),
                host("suffix", &["*.demo.svc.cluster.local"]),
                host("longer-suffix", &["*.bill.demo.svc.cluster.local"]),
                host("prefix", &["api.*"]),
                host("any", &["*"]),
            ],
        );
        let name = |a: &str| t.virtual_host(a).map(|h| h.name.clone()).unwrap();
        assert_eq!(name("bill.demo.svc.cluster.local"), "exact");
        assert_eq!(name("BILL.demo.svc.cluster.local:9999"), "exact");
        assert_eq!(name("bill:9999"), "exact");
        assert_eq!(name("x.bill.demo.svc.cluster.local"), "longer-suffix");
        assert_eq!(name("front.demo.svc.cluster.local"), "suffix");
        assert_eq!(name("api.example.com"), "prefix");
        assert_eq!(name("10.0.0.1:80"), "any");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn header_matches_join_values_and_invert() {
        let mut headers = HeaderMap::new();
        headers.append("x-v", "a".parse().unwrap());
        headers.append("x-v", "b".parse().unwrap());
        let m = |value, invert| HeaderMatch {
            name: http::HeaderName::from_static("x-v"),
            value,
            invert,
        };
        assert!(m(HeaderValueMatch::Exact("a,b".into()), false).matches(&headers));
        assert!(m(HeaderValueMatch::Prefix("a".into()), false).matches(&headers));
        assert!(!m(HeaderValueMatch::Present, true).matches(&headers));
        assert!(m(HeaderValueMatch::Present, true).matches(&HeaderMap::new()));
        let re = Regex::new("^(?:a,.*)$").unwrap();
        assert!(m(HeaderValueMatch::Regex(re), false).matches(&headers));
    }
}

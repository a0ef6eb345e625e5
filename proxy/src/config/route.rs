//! HTTP route tables: virtual hosts chosen by authority, routes matched by path and headers,
//! and the weighted clusters a route sends to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use rand::Rng;
use regex::Regex;

use super::Cluster;
use super::policy::RoutePolicy;
use super::rate_limit::TokenBucket;

/// What route matching looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a http::Method,
    pub authority: &'a str,
    pub scheme: &'a str,
    /// Without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

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

    /// The first route of the matching virtual host that matches a GET of `path` with
    /// `headers`.
    pub fn route(&self, authority: &str, path: &str, headers: &HeaderMap) -> Option<&Route> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        self.find(&RequestInfo {
            method: &http::Method::GET,
            authority,
            scheme: "http",
            path,
            query,
            headers,
        })
    }

    /// The first route of the matching virtual host that matches the request.
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<&Route> {
        self.virtual_host(req.authority)?
            .routes
            .iter()
            .find(|r| r.matches_request(req))
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
    /// Empty only when the route redirects.
    pub(crate) clusters: WeightedClusters,
    pub(crate) timeout: Option<Duration>,
    pub(crate) policy: RoutePolicy,
    /// The virtual host's bucket, shared by its routes.
    pub(crate) rate_limit: Option<Arc<TokenBucket>>,
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

    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    pub fn rate_limit(&self) -> Option<&TokenBucket> {
        self.rate_limit.as_deref()
    }

    /// The prefix the route matched on, for prefix rewrites and redirects (the whole path
    /// for an exact match).
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => Some(p),
            PathMatch::Regex(_) => None,
        }
    }

    /// `path` is the request's path without the query.
    pub fn matches(&self, path: &str, headers: &HeaderMap) -> bool {
        self.path.matches(path) && self.headers.iter().all(|h| h.matches(headers))
    }

    pub fn matches_request(&self, req: &RequestInfo<'_>) -> bool {
        self.path.matches(req.path)
            && self.headers.iter().all(|h| h.matches_request(req))
            && self.policy.query.iter().all(|q| q.matches(req.query))
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

impl HeaderValueMatch {
    pub fn matches_str(&self, value: &str) -> bool {
        match self {
            Self::Present => true,
            Self::Exact(v) => value == v,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(value),
        }
    }
}

/// What a header matcher reads: a header, or one of HTTP/2's pseudo-headers (which the
/// request carries outside its header map).
#[derive(Debug, Clone)]
pub enum HeaderSource {
    Header(http::HeaderName),
    Method,
    Authority,
    Scheme,
    Path,
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub(crate) source: HeaderSource,
    pub(crate) value: HeaderValueMatch,
    pub(crate) invert: bool,
}

impl HeaderMatch {
    /// Multiple values of one header are matched as their comma-joined list, like Envoy.
    /// Pseudo-headers count as absent here; [`Self::matches_request`] sees them.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let found = match &self.source {
            HeaderSource::Header(name) => header_matches(headers, name, &self.value),
            _ => false,
        };
        found != self.invert
    }

    pub fn matches_request(&self, req: &RequestInfo<'_>) -> bool {
        let found = match &self.source {
            HeaderSource::Header(name) => header_matches(req.headers, name, &self.value),
            HeaderSource::Method => self.value.matches_str(req.method.as_str()),
            HeaderSource::Authority => self.value.matches_str(req.authority),
            HeaderSource::Scheme => self.value.matches_str(req.scheme),
            HeaderSource::Path => self.value.matches_str(req.path),
        };
        found != self.invert
    }
}

/// Does `value` match the comma-joined values of header `name` (absent: no)?
fn header_matches(headers: &HeaderMap, name: &http::HeaderName, value: &HeaderValueMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(Ok(first)) = values.next().map(|v| v.to_str()) else {
        return false;
    };
    match values.next() {
        // One value (the usual case): no joining, no allocation.
        None => value.matches_str(first),
        Some(second) => {
            let mut joined = format!("{first},{}", second.to_str().unwrap_or_default());
            for v in values.filter_map(|v| v.to_str().ok()) {
                joined.push(',');
                joined.push_str(v);
            }
            value.matches_str(&joined)
        }
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
            source: HeaderSource::Header(http::HeaderName::from_static("x-v")),
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

//! Outbound L4 routes of one destination (Envoy's TCP proxy `weighted_clusters` and filter
//! chains told apart by `server_names`): weighted splits of opaque TCP, and TLS routes chosen by
//! the server name of the client's `ClientHello`, which the proxy reads without terminating.
//! Owns the choice only; reading the `ClientHello` and copying bytes are the data path's.

use super::WeightedClusters;

/// A server name a TLS route matches: exact, or `*.suffix` (any name ending in `.suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    Exact(String),
    /// `*.example.com` is kept as `.example.com`.
    Wildcard(String),
}

impl ServerName {
    /// Lower-cased; `*.` makes a wildcard.
    pub fn parse(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => Self::Wildcard(suffix.to_owned()),
            _ => Self::Exact(name),
        }
    }
}

/// One TLS route: the names it serves and where their connections go.
#[derive(Debug)]
pub struct SniRoute {
    pub(crate) names: Vec<ServerName>,
    pub(crate) clusters: WeightedClusters,
}

/// The L4 routes of one destination address.
#[derive(Debug)]
pub struct L4Routes {
    pub(crate) sni: Vec<SniRoute>,
    /// Connections no TLS route takes (or every connection when there are none).
    pub(crate) default: Option<WeightedClusters>,
}

impl L4Routes {
    /// Whether the route depends on the `ClientHello` (so the proxy must read it first).
    pub fn needs_server_name(&self) -> bool {
        !self.sni.is_empty()
    }

    /// Where a connection goes, by the server name it asked for (`None`: not TLS, or no SNI).
    /// As Envoy chooses among filter chains: an exact name first, then the longest matching
    /// wildcard, then the route without names. `None`: no route takes it (the listener's
    /// default then applies).
    pub fn choose(&self, server_name: Option<&str>) -> Option<&WeightedClusters> {
        let by_name = server_name.and_then(|sni| {
            let sni = sni.to_ascii_lowercase();
            let exact = self.sni.iter().find(|r| {
                r.names
                    .iter()
                    .any(|n| matches!(n, ServerName::Exact(e) if *e == sni))
            });
            exact.or_else(|| {
                self.sni
                    .iter()
                    .flat_map(|r| r.names.iter().map(move |n| (n, r)))
                    .filter_map(|(n, r)| match n {
                        ServerName::Wildcard(s) if sni.ends_with(s.as_str()) => Some((s.len(), r)),
                        _ => None,
                    })
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, r)| r)
            })
        });
        by_name.map(|r| &r.clusters).or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{Cluster, LbPolicy, UpstreamTls};

    fn to(name: &str) -> WeightedClusters {
        let c = Cluster::new(
            name.into(),
            vec![],
            LbPolicy::RoundRobin,
            UpstreamTls::Plaintext,
            Duration::from_secs(1),
            false,
        );
        WeightedClusters::new(vec![(Arc::new(c), 1)])
    }

    fn route(names: &[&str], cluster: &str) -> SniRoute {
        SniRoute {
            names: names.iter().map(|n| ServerName::parse(n)).collect(),
            clusters: to(cluster),
        }
    }

    fn chosen(r: &L4Routes, sni: Option<&str>) -> Option<String> {
        r.choose(sni).map(|w| w.clusters()[0].0.name().to_owned())
    }

    #[test]
    fn exact_names_beat_wildcards_and_the_longest_wildcard_wins() {
        let r = L4Routes {
            sni: vec![
                route(&["*.example.com"], "wide"),
                route(&["*.api.example.com"], "narrow"),
                route(&["Pay.Example.com"], "exact"),
            ],
            default: Some(to("default")),
        };
        assert!(r.needs_server_name());
        assert_eq!(chosen(&r, Some("pay.example.com")).unwrap(), "exact");
        assert_eq!(chosen(&r, Some("PAY.example.com")).unwrap(), "exact");
        assert_eq!(chosen(&r, Some("v1.api.example.com")).unwrap(), "narrow");
        assert_eq!(chosen(&r, Some("www.example.com")).unwrap(), "wide");
        assert_eq!(chosen(&r, Some("example.com")).unwrap(), "default");
        assert_eq!(chosen(&r, None).unwrap(), "default");
    }

    #[test]
    fn without_a_default_an_unknown_name_has_no_route() {
        let r = L4Routes {
            sni: vec![route(&["a.test"], "a")],
            default: None,
        };
        assert_eq!(chosen(&r, Some("b.test")), None);
        assert_eq!(chosen(&r, None), None);
        assert_eq!(ServerName::parse("*"), ServerName::Exact("*".into()));
    }
}

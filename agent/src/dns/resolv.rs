//! Reads `/etc/resolv.conf`: the upstream resolvers and the search domains.
//!
//! Only `nameserver`, `search` and `domain` matter here. As in glibc, the last `search` or
//! `domain` line wins; `nameserver` lines add up in order. Addresses with an IPv6 zone
//! (`fe80::1%eth0`) are skipped with a warning.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;

use super::table::fqdn;

/// The host's resolver settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<Name>,
}

/// `/etc/resolv.conf` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("could not read the resolver configuration {path}")]
pub struct ResolvConfError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl ResolvConf {
    pub fn read(path: &Path) -> Result<Self, ResolvConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResolvConfError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses the text; lines it does not understand are ignored, as the C library does.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => match words.next().map(str::parse::<IpAddr>) {
                    Some(Ok(ip)) => conf.nameservers.push(ip),
                    other => tracing::warn!(
                        line,
                        parsed = ?other,
                        "ignoring a nameserver line the DNS proxy cannot use"
                    ),
                },
                Some("search" | "domain") => {
                    conf.search = words
                        .filter_map(|d| match fqdn(d) {
                            Ok(name) => Some(name),
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring a search domain");
                                None
                            }
                        })
                        .collect();
                }
                _ => {}
            }
        }
        conf
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_and_the_last_search_line() {
        let conf = ResolvConf::parse(
            "# generated\ndomain old.example\nnameserver 10.0.0.2\nnameserver fd00::53 # v6\n\
             nameserver fe80::1%eth0\noptions ndots:5\n\
             search demo.svc.cluster.local svc.cluster.local cluster.local\n",
        );
        assert_eq!(
            conf.nameservers,
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::53".parse().unwrap()
            ]
        );
        let search: Vec<String> = conf.search.iter().map(ToString::to_string).collect();
        assert_eq!(
            search,
            [
                "demo.svc.cluster.local.",
                "svc.cluster.local.",
                "cluster.local."
            ]
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = ResolvConf::read(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/resolv.conf"),
            "{err}"
        );
    }
}

//! The `consul:` settings of `control.yaml`, as written ([`RawConsulSettings`]) and checked
//! ([`ConsulSettings`]). Every bad key is reported at once, named `consul.<key>`.

use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;
use serde::Deserialize;

use crate::model::types::{Hostname, is_dns1123_label};
use crate::model::{Namespace, TrustDomain};

/// The default suffix of Consul services' mesh names: `<service>.service.consul`.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "service.consul";
/// Consul's own default and the longest wait it accepts is 10 minutes.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// As written in `control.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConsulSettings {
    /// `http://host:8500` or `https://host:8501`.
    pub address: Option<String>,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Only services (and instances) with this tag.
    pub tag: Option<String>,
    pub domain_suffix: Option<String>,
    /// The mesh namespace of Consul services [default: default].
    pub namespace: Option<String>,
    /// Blocking query wait, e.g. `5m` [default: 5m, at most 10m].
    pub wait: Option<String>,
}

/// Files for TLS to Consul: the private CA, and optionally a client certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct ConsulSettings {
    pub address: Uri,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    pub tls: Option<TlsFiles>,
    pub tag: Option<String>,
    pub domain_suffix: String,
    pub namespace: Namespace,
    pub trust_domain: TrustDomain,
    pub wait: Duration,
    /// The longest pause between retries after an error.
    pub max_backoff: Duration,
}

impl ConsulSettings {
    /// Settings for `address` with every default (tests and tools).
    pub fn new(address: Uri, trust_domain: TrustDomain) -> Self {
        Self {
            address,
            token: None,
            datacenter: None,
            tls: None,
            tag: None,
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.to_owned(),
            namespace: Namespace::default_namespace(),
            trust_domain,
            wait: DEFAULT_WAIT,
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RawConsulSettings {
    /// `self` where set, else `base`.
    pub fn over(self, base: RawConsulSettings) -> RawConsulSettings {
        RawConsulSettings {
            address: self.address.or(base.address),
            token: self.token.or(base.token),
            datacenter: self.datacenter.or(base.datacenter),
            ca_file: self.ca_file.or(base.ca_file),
            cert_file: self.cert_file.or(base.cert_file),
            key_file: self.key_file.or(base.key_file),
            tag: self.tag.or(base.tag),
            domain_suffix: self.domain_suffix.or(base.domain_suffix),
            namespace: self.namespace.or(base.namespace),
            wait: self.wait.or(base.wait),
        }
    }

    /// Checks every key; problems are pushed to `errors` as `consul.<key>: …`.
    pub fn validate(
        self,
        trust_domain: &TrustDomain,
        errors: &mut Vec<String>,
    ) -> Option<ConsulSettings> {
        let before = errors.len();
        let mut err = |m: String| errors.push(format!("consul.{m}"));
        let address = match self.address.as_deref() {
            None => {
                err(
                    "address: required when consul is configured (e.g. http://127.0.0.1:8500)"
                        .into(),
                );
                None
            }
            Some(text) => match text.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some()
                        && uri.path_and_query().is_none_or(|p| p.as_str() == "/") =>
                {
                    Some(uri)
                }
                _ => {
                    err(format!("address: {text:?} is not http(s)://HOST[:PORT]"));
                    None
                }
            },
        };
        let https = address
            .as_ref()
            .is_some_and(|a| a.scheme_str() == Some("https"));
        let tls = match (self.ca_file, self.cert_file, self.key_file) {
            (None, None, None) if https => {
                err("caFile: required for an https address (the CA that signed Consul's certificate)".into());
                None
            }
            (None, None, None) => None,
            (Some(ca), cert, key) => {
                if !https {
                    err("caFile: TLS files are set but the address is not https".into());
                }
                match (cert, key) {
                    (Some(c), Some(k)) => Some(TlsFiles {
                        ca_file: ca,
                        client: Some((c, k)),
                    }),
                    (None, None) => Some(TlsFiles {
                        ca_file: ca,
                        client: None,
                    }),
                    _ => {
                        err("certFile: certFile and keyFile go together".into());
                        None
                    }
                }
            }
            (None, _, _) => {
                err("caFile: required with certFile/keyFile".into());
                None
            }
        };
        if let Some(token) = &self.token
            && (token.is_empty() || token.chars().any(|c| c.is_control() || c == ' '))
        {
            err("token: must be non-empty, without spaces or control characters".into());
        }
        if let Some(dc) = &self.datacenter
            && (dc.is_empty()
                || !dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            err(format!("datacenter: {dc:?} is not a datacenter name"));
        }
        if let Some(tag) = &self.tag
            && tag.is_empty()
        {
            err("tag: must not be empty".into());
        }
        let domain_suffix = self
            .domain_suffix
            .unwrap_or_else(|| DEFAULT_DOMAIN_SUFFIX.to_owned());
        if Hostname::new(&format!("x.{domain_suffix}")).is_err() || domain_suffix.starts_with('*') {
            err(format!(
                "domainSuffix: {domain_suffix:?} is not a DNS suffix"
            ));
        }
        let namespace = match self.namespace.as_deref() {
            None => Namespace::default_namespace(),
            Some(ns) if is_dns1123_label(ns) => {
                Namespace::new(ns).unwrap_or_else(|_| Namespace::default_namespace())
            }
            Some(ns) => {
                err(format!("namespace: {ns:?} is not a namespace name"));
                Namespace::default_namespace()
            }
        };
        let wait = match self.wait.as_deref().map(humantime::parse_duration) {
            None => DEFAULT_WAIT,
            Some(Ok(w)) if w >= Duration::from_secs(1) && w <= Duration::from_secs(600) => w,
            Some(_) => {
                err("wait: must be a duration from 1s to 10m (Consul's limit)".into());
                DEFAULT_WAIT
            }
        };
        if errors.len() > before {
            return None;
        }
        Some(ConsulSettings {
            address: address?,
            token: self.token,
            datacenter: self.datacenter,
            tls,
            tag: self.tag,
            domain_suffix,
            namespace,
            trust_domain: trust_domain.clone(),
            wait,
            max_backoff: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_every_error_at_once() {
        let td = TrustDomain::default();
        let mut errors = Vec::new();
        let ok = RawConsulSettings {
            address: Some("http://127.0.0.1:8500".into()),
            ..Default::default()
        }
        .validate(&td, &mut errors)
        .unwrap();
        assert!(errors.is_empty());
        assert_eq!(ok.domain_suffix, "service.consul");
        assert_eq!(ok.wait, DEFAULT_WAIT);
        let bad = RawConsulSettings {
            address: Some("https://consul:8501/v1".into()),
            cert_file: Some("c.pem".into()),
            datacenter: Some("dc 1".into()),
            domain_suffix: Some("Not_A.Suffix".into()),
            wait: Some("1h".into()),
            ..Default::default()
        }
        .validate(&td, &mut errors);
        assert!(bad.is_none());
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "consul.address",
                "consul.caFile",
                "consul.datacenter",
                "consul.domainSuffix",
                "consul.wait"
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn https_needs_a_ca() {
        let mut errors = Vec::new();
        let _ = RawConsulSettings {
            address: Some("https://consul.example:8501".into()),
            ..Default::default()
        }
        .validate(&TrustDomain::default(), &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("consul.caFile: required for an https address"));
    }
}

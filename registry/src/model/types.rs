//! Small value types of the model, each validated once when built so that the rest of the
//! code never sees an invalid one: [`Hostname`], [`PortNumber`], [`Labels`], [`Namespace`],
//! [`ObjectName`], [`Locality`], [`Network`], [`Weight`], [`ServiceAccount`], [`TrustDomain`]
//! and the workload [`Identity`] (a SPIFFE ID, re-exported from `hostmesh-ca`).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

/// Why a value was refused. The text is meant for an operator and names the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// The DNS suffix of in-mesh names, as in Kubernetes (`<name>.<ns>.svc.cluster.local`).
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// Is `s` a DNS-1123 label: 1 to 63 lower-case alphanumerics or `-`, starting and ending
/// with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS host name, possibly with a leading wildcard label (`*.example.com`), or the bare
/// wildcard `*`. Lower case, labels of at most 63 characters, at most 253 in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Validates a host name as Istio does for `hosts` fields.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if s == "*" {
            return Ok(Self(s.to_owned()));
        }
        let rest = s.strip_prefix("*.").unwrap_or(s);
        if rest.is_empty() || s.len() > 253 {
            return Err(invalid(format!("{s:?} is not a valid host name")));
        }
        for label in rest.split('.') {
            if !is_dns1123_label(label) {
                return Err(invalid(format!(
                    "{s:?} is not a valid host name (label {label:?} must be 1-63 lower-case letters, digits or '-')"
                )));
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Qualifies a short name the way Istio does for names in routing config: a name without a
    /// dot (and not `*`) becomes `<name>.<namespace>.svc.<domain_suffix>`; anything else is
    /// kept as written.
    pub fn qualify(&self, namespace: &Namespace, domain_suffix: &str) -> Hostname {
        if self.0 == "*" || self.0.contains('.') {
            self.clone()
        } else {
            Hostname(format!("{}.{}.svc.{}", self.0, namespace, domain_suffix))
        }
    }

    /// Does the name start with a wildcard label?
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with('*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP/UDP port number, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortNumber(u16);

impl PortNumber {
    pub fn new(n: u32) -> Result<Self, InvalidValue> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Self(p)),
            _ => Err(invalid(format!("{n} is not a valid port"))),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for PortNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A Kubernetes namespace name (a DNS-1123 label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace of an object whose `metadata.namespace` is absent.
    pub fn default_namespace() -> Self {
        Self("default".to_owned())
    }

    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if is_dns1123_label(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "{s:?} is not a valid namespace (1-63 lower-case letters, digits or '-')"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object name (`metadata.name`): a DNS-1123 subdomain (labels joined by dots).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if s.len() <= 253 && s.split('.').all(is_dns1123_label) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "{s:?} is not a valid name (lower-case letters, digits, '-' and '.')"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of Kubernetes-style labels with valid keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Validates every key (`[prefix/]name`) and value; the first bad one is reported.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, InvalidValue> {
        for (k, v) in &map {
            check_label_key(k)?;
            if !is_label_value(v) {
                return Err(invalid(format!(
                    "label {k}: {v:?} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
                )));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Does `self`, used as a selector, select `other`: every key of `self` is in `other`
    /// with the same value. An empty selector selects everything.
    pub fn selects(&self, other: &Labels) -> bool {
        self.0.iter().all(|(k, v)| other.0.get(k) == Some(v))
    }

    /// `self` with the keys of `other` added (values of `self` win).
    pub fn merged_under(&self, other: &Labels) -> Labels {
        let mut map = other.0.clone();
        map.extend(self.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Labels(map)
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

fn check_label_key(k: &str) -> Result<(), InvalidValue> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns1123_label));
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(invalid(format!("{k:?} is not a valid label key")))
    }
}

/// Where a workload runs: `region[/zone[/subzone]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(invalid(format!(
                "{s:?} is not a valid locality (region/zone/subzone)"
            )));
        }
        let part = |i: usize| parts.get(i).map(|p| (*p).to_owned()).unwrap_or_default();
        Ok(Self {
            region: part(0),
            zone: part(1),
            subzone: part(2),
        })
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.region)?;
        for p in [&self.zone, &self.subzone] {
            if !p.is_empty() {
                write!(f, "/{p}")?;
            }
        }
        Ok(())
    }
}

/// The name of a network: endpoints on the same network reach each other directly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network(String);

impl Network {
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() || s.len() > 253 || s.chars().any(char::is_whitespace) {
            Err(invalid(format!("{s:?} is not a valid network name")))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A load-balancing weight; Istio treats 0 (unset) as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(NonZeroU32);

impl Weight {
    pub fn from_istio(n: u32) -> Self {
        Self(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self(NonZeroU32::MIN)
    }
}

/// A service account name (a DNS-1123 subdomain); `default` when none is given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount(String);

impl ServiceAccount {
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        if s.len() <= 253 && s.split('.').all(is_dns1123_label) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(format!(
                "{s:?} is not a valid service account name"
            )))
        }
    }

    pub fn default_account() -> Self {
        Self("default".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trust domains and workload identities are the CA's types: one definition of a SPIFFE ID.
pub use hostmesh_ca::{SpiffeId as Identity, TrustDomain};

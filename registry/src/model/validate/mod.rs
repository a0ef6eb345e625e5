//! Istio's validation rules: from the wire shapes of [`crate::model::istio`] to the typed
//! objects of [`crate::model::config`]. Pure functions; every problem of an object is
//! reported at once as a [`FieldError`] naming the field by its path in the document
//! (`spec.ports[0].number`), so that a source can point at the line.

mod load_balancing;
mod networking;
mod routing;
mod security;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use networking::{service_entry, workload_entry, workload_group};
pub use routing::{destination_rule, gateway, virtual_service};
pub use security::{authorization_policy, peer_authentication};

use super::config::Meta;
use super::istio::ObjectMeta;
use super::types::{Hostname, Labels, Namespace, ObjectName, PortNumber};

/// One problem with one field of a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Path of the field from the document root, e.g. `spec.ports[0].number`.
    pub path: String,
    pub message: String,
}

/// Settings that validation needs from the environment.
#[derive(Debug, Clone)]
pub struct Context {
    /// Namespace of objects that do not name one.
    pub default_namespace: Namespace,
    /// DNS suffix used to qualify short host names.
    pub domain_suffix: String,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            default_namespace: Namespace::default_namespace(),
            domain_suffix: super::types::DEFAULT_DOMAIN_SUFFIX.to_owned(),
        }
    }
}

/// Collects the errors of one object.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Keeps the value if it is valid, records the error otherwise.
    pub(crate) fn check<T, E: std::fmt::Display>(
        &mut self,
        path: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// Validates `metadata`, giving the context's default namespace when none is named.
pub fn meta(m: &ObjectMeta, ctx: &Context) -> Result<Meta, Vec<FieldError>> {
    let mut errs = Errors::default();
    let name = match m.name.as_deref() {
        None | Some("") => {
            errs.push("metadata.name", "is required");
            None
        }
        Some(n) => errs.check("metadata.name", ObjectName::new(n)),
    };
    let namespace = match m.namespace.as_deref() {
        None | Some("") => Some(ctx.default_namespace.clone()),
        Some(ns) => errs.check("metadata.namespace", Namespace::new(ns)),
    };
    let labels = errs.check("metadata.labels", Labels::new(m.labels.clone()));
    match (name, namespace, labels) {
        (Some(name), Some(namespace), Some(labels)) => errs.finish(Meta {
            name,
            namespace,
            labels,
            annotations: m.annotations.clone(),
        }),
        _ => Err(errs.0),
    }
}

pub(crate) fn labels(
    errs: &mut Errors,
    path: &str,
    map: &BTreeMap<String, String>,
) -> Option<Labels> {
    errs.check(path, Labels::new(map.clone()))
}

pub(crate) fn port(errs: &mut Errors, path: &str, n: u32) -> Option<PortNumber> {
    errs.check(path, PortNumber::new(n))
}

pub(crate) fn host(errs: &mut Errors, path: &str, h: &str) -> Option<Hostname> {
    errs.check(path, Hostname::new(h))
}

/// An IP address or a CIDR block (`10.0.0.0/8`).
pub(crate) fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
            (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
            _ => false,
        },
    }
}

/// A Go-style duration as protobuf JSON allows: `1s`, `0.5s`, `100ms`, `1h30m`.
pub(crate) fn is_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.parse::<f64>().is_err() {
            return false;
        }
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| tail.starts_with(u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &tail[u.len()..],
            None => return false,
        }
    }
    true
}

pub(crate) fn duration(errs: &mut Errors, path: &str, d: Option<&str>) {
    if let Some(d) = d
        && !is_duration(d)
    {
        errs.push(
            path,
            format!("{d:?} is not a valid duration (e.g. 1s, 500ms)"),
        );
    }
}

pub(crate) fn percent(errs: &mut Errors, path: &str, v: Option<f64>) {
    if let Some(v) = v
        && !(0.0..=100.0).contains(&v)
    {
        errs.push(path, format!("{v} is not a percentage between 0 and 100"));
    }
}

/// Checks one of Istio's enum fields; returns the value when valid.
pub(crate) fn one_of<'a>(
    errs: &mut Errors,
    path: &str,
    value: Option<&'a str>,
    allowed: &[&str],
) -> Option<&'a str> {
    let v = value?;
    if allowed.contains(&v) {
        Some(v)
    } else {
        errs.push(path, format!("{v:?} is not one of {}", allowed.join(", ")));
        None
    }
}

#[cfg(test)]
mod tests;

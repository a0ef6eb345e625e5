//! Every key the agent's config file accepts, what shape its value has, and the environment
//! variable that overrides it (`HOSTMESH_` and the key path in capitals:
//! `interception.failMode` → `HOSTMESH_INTERCEPTION_FAIL_MODE`).
//!
//! [`collect`] walks the parsed file against this table (an unknown key stops there, named
//! with its line), then lays the environment over it. What comes out is text with where it
//! came from; [`super::validate`] turns it into types.

use std::collections::BTreeMap;
use std::fmt;

use super::file::{Node, Value};

/// The shape of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Scalar,
    /// In the environment: comma-separated.
    List,
    /// In the environment: `key=value` pairs, comma-separated.
    Map,
}

/// Every key, by its path in the file.
pub(super) const KEYS: &[(&str, Kind)] = &[
    ("controlAddress", Kind::Scalar),
    ("trustDomain", Kind::Scalar),
    ("namespace", Kind::Scalar),
    ("serviceAccount", Kind::Scalar),
    ("workloadName", Kind::Scalar),
    ("labels", Kind::Map),
    ("workloadGroup", Kind::Scalar),
    ("locality", Kind::Scalar),
    ("hostIP", Kind::Scalar),
    ("inboundPorts", Kind::Map),
    ("stateDir", Kind::Scalar),
    ("joinTokenPath", Kind::Scalar),
    ("rootCertPath", Kind::Scalar),
    ("certificateTtl", Kind::Scalar),
    ("firstConfigTimeout", Kind::Scalar),
    ("adminPort", Kind::Scalar),
    ("healthPort", Kind::Scalar),
    ("logLevel", Kind::Scalar),
    ("proxyThreads", Kind::Scalar),
    ("listeners.outbound", Kind::Scalar),
    ("listeners.inbound", Kind::Scalar),
    ("interception.enabled", Kind::Scalar),
    ("interception.excludedPorts", Kind::List),
    ("interception.excludedCidrs", Kind::List),
    ("interception.agentUid", Kind::Scalar),
    ("interception.mark", Kind::Scalar),
    ("interception.failMode", Kind::Scalar),
    ("interception.dnsCapture", Kind::Scalar),
    ("interception.nft", Kind::Scalar),
    ("dns.enabled", Kind::Scalar),
    ("dns.listen", Kind::Scalar),
    ("dns.resolvConf", Kind::Scalar),
];

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    Line(u64),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Env(var) => write!(f, "${var}"),
        }
    }
}

/// One scalar with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text {
    pub text: String,
    pub origin: Origin,
}

/// A key's value, shaped by its [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Setting {
    Scalar(Text),
    List(Vec<Text>),
    Map(Vec<(Text, Text)>),
}

/// The environment variable of a key path.
pub(super) fn env_var(path: &str) -> String {
    let mut out = String::from("HOSTMESH_");
    let mut previous_lower = false;
    for c in path.chars() {
        match c {
            '.' => out.push('_'),
            c if c.is_ascii_uppercase() && previous_lower => {
                out.push('_');
                out.push(c);
            }
            c => out.push(c.to_ascii_uppercase()),
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    out
}

/// Walks the file against [`KEYS`], then applies the environment. Unknown keys and values of
/// the wrong shape are all reported, each with its line.
pub(super) fn collect(
    root: Node,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<&'static str, Setting>, Vec<String>> {
    let mut settings = BTreeMap::new();
    let mut errors = Vec::new();
    walk(root, "", &mut settings, &mut errors);
    for &(path, kind) in KEYS {
        let var = env_var(path);
        if let Some(text) = env(&var) {
            settings.insert(path, from_env(&text, kind, Origin::Env(var)));
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

fn walk(
    node: Node,
    prefix: &str,
    settings: &mut BTreeMap<&'static str, Setting>,
    errors: &mut Vec<String>,
) {
    let Value::Map(entries) = node.value else {
        let what = if prefix.is_empty() {
            "the file"
        } else {
            prefix
        };
        errors.push(format!(
            "line {}: {what} must be a map of keys, not {}",
            node.line,
            node.value.kind()
        ));
        return;
    };
    for (key, value) in entries {
        let Value::Scalar(name) = &key.value else {
            errors.push(format!("line {}: a key must be a name", key.line));
            continue;
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(&(known, kind)) = KEYS.iter().find(|(k, _)| *k == path) {
            if value.value != Value::Null {
                match shape(value, kind) {
                    Ok(setting) => {
                        settings.insert(known, setting);
                    }
                    Err(e) => errors.push(format!("line {}: {path}: {e}", key.line)),
                }
            }
        } else if KEYS.iter().any(|(k, _)| k.starts_with(&format!("{path}."))) {
            if value.value != Value::Null {
                walk(value, &path, settings, errors);
            }
        } else {
            errors.push(format!(
                "line {}: unknown key `{path}`; known keys here: {}",
                key.line,
                known_under(prefix)
            ));
        }
    }
}

/// The keys (and sections) directly under `prefix`.
fn known_under(prefix: &str) -> String {
    let mut names: Vec<&str> = KEYS
        .iter()
        .filter_map(|(k, _)| {
            let rest = if prefix.is_empty() {
                Some(*k)
            } else {
                k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.'))
            }?;
            Some(rest.split('.').next().unwrap_or(rest))
        })
        .collect();
    names.dedup();
    names.join(", ")
}

fn scalar(node: Node) -> Result<Text, String> {
    match node.value {
        Value::Scalar(text) => Ok(Text {
            text,
            origin: Origin::Line(node.line),
        }),
        other => Err(format!("expected a single value, found {}", other.kind())),
    }
}

fn shape(node: Node, kind: Kind) -> Result<Setting, String> {
    match (kind, node.value) {
        (Kind::Scalar, value) => scalar(Node {
            line: node.line,
            value,
        })
        .map(Setting::Scalar),
        (Kind::List, Value::List(items)) => items
            .into_iter()
            .map(scalar)
            .collect::<Result<_, _>>()
            .map(Setting::List),
        (Kind::Map, Value::Map(entries)) => entries
            .into_iter()
            .map(|(k, v)| Ok((scalar(k)?, scalar(v)?)))
            .collect::<Result<_, String>>()
            .map(Setting::Map),
        (Kind::List, other) => Err(format!("expected a list, found {}", other.kind())),
        (Kind::Map, other) => Err(format!("expected a map, found {}", other.kind())),
    }
}

fn from_env(text: &str, kind: Kind, origin: Origin) -> Setting {
    let text_of = |t: &str| Text {
        text: t.trim().to_owned(),
        origin: origin.clone(),
    };
    let items = || text.split(',').map(str::trim).filter(|t| !t.is_empty());
    match kind {
        Kind::Scalar => Setting::Scalar(text_of(text)),
        Kind::List => Setting::List(items().map(text_of).collect()),
        Kind::Map => Setting::Map(
            items()
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (text_of(k), text_of(v)),
                    None => (text_of(pair), text_of("")),
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_follow_the_key_path() {
        assert_eq!(
            env_var("controlAddress"),
            "HOSTMESH_CONTROL_ADDRESS".to_owned()
        );
        assert_eq!(
            env_var("interception.failMode"),
            "HOSTMESH_INTERCEPTION_FAIL_MODE"
        );
        assert_eq!(env_var("hostIP"), "HOSTMESH_HOST_IP");
        assert_eq!(env_var("dns.resolvConf"), "HOSTMESH_DNS_RESOLV_CONF");
    }
}

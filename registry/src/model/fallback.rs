//! Our extension for service degradation: the `DestinationRule` annotation
//! `traffic.hostmesh.io/fallback` holds a JSON object
//! `{"status": 200, "headers": {"content-type": "application/json"}, "body": "{\"items\":[]}"}`.
//! When a request for the rule's host finds the circuit breaker open (response flag `UO`) or
//! no healthy endpoint (`UH`, every endpoint ejected or none there), the client proxy answers
//! with this status, these headers and this body instead of its error page. Parsed once here:
//! validation refuses a malformed value, naming the field; the translation carries it to the
//! proxy (`xds::translate::fallback`). Must not know about xDS.

use std::collections::BTreeMap;

use hyper::http::{HeaderName, HeaderValue};
use serde::Deserialize;

pub const FALLBACK_ANNOTATION: &str = "traffic.hostmesh.io/fallback";

/// Largest static body accepted (it travels in every client's cluster resource).
pub const MAX_BODY: usize = 64 * 1024;

/// Headers the proxy sets itself from the body and framing.
const RESERVED: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

/// A fallback answer, valid by construction: status 200–599, header names lower-case tokens
/// (not framing headers), values visible ASCII, body at most [`MAX_BODY`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub status: u16,
    /// Sorted by name.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Fallback {
    /// Parses the annotation's JSON; the error names the field at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| {
            format!(
                "{e} (expected {{\"status\": <200-599>, \"headers\": {{<name>: <value>}}, \"body\": <text>}})"
            )
        })?;
        if !(200..=599).contains(&wire.status) {
            return Err(format!("status: {} is not within 200-599", wire.status));
        }
        let mut headers = Vec::with_capacity(wire.headers.len());
        for (name, value) in wire.headers {
            let lower = name.to_ascii_lowercase();
            if HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(format!("headers: {name:?} is not a header name"));
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(format!("headers: {name:?} is set by the proxy itself"));
            }
            if HeaderValue::from_str(&value).is_err() {
                return Err(format!("headers.{name}: {value:?} is not a header value"));
            }
            headers.push((lower, value));
        }
        headers.sort();
        headers.dedup_by(|a, b| a.0 == b.0);
        if wire.body.len() > MAX_BODY {
            return Err(format!(
                "body: {} bytes is more than {MAX_BODY}",
                wire.body.len()
            ));
        }
        Ok(Self {
            status: wire.status,
            headers,
            body: wire.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_parse_and_bad_ones_name_the_field() {
        let f = Fallback::parse(
            r#"{"status": 200, "headers": {"Content-Type": "application/json"}, "body": "[]"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.status, 200);
        assert_eq!(
            f.headers,
            [("content-type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(f.body, "[]");
        let f = Fallback::parse(r#"{"status": 503}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.headers.is_empty() && f.body.is_empty());
        for (bad, says) in [
            ("200", "expected"),
            (r#"{"body": "x"}"#, "status"),
            (r#"{"status": 99}"#, "status: 99"),
            (r#"{"status": 200, "colour": 1}"#, "colour"),
            (
                r#"{"status": 200, "headers": {"bad name": "x"}}"#,
                "headers",
            ),
            (
                r#"{"status": 200, "headers": {"x-a": "line\nbreak"}}"#,
                "headers.x-a",
            ),
            (
                r#"{"status": 200, "headers": {"content-length": "3"}}"#,
                "proxy",
            ),
        ] {
            match Fallback::parse(bad) {
                Ok(f) => panic!("{bad} parsed as {f:?}"),
                Err(e) => assert!(e.contains(says), "{bad}: {e}"),
            }
        }
        let big = format!(
            r#"{{"status": 200, "body": "{}"}}"#,
            "x".repeat(MAX_BODY + 1)
        );
        assert!(Fallback::parse(&big).is_err_and(|e| e.starts_with("body:")));
    }
}

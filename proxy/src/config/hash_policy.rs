//! What a request hashes on for consistent-hash clusters (Envoy's `RouteAction.hash_policy`):
//! a header, a cookie, the downstream source IP or a query parameter. Several policies combine
//! as Envoy combines them (rotate the hash so far by one bit, then xor the next); a `terminal`
//! one that produced a hash ends the list. A cookie policy with a `ttl` generates the cookie
//! when the request has none and asks for it to be set on the response, so the client sticks
//! to the endpoint from its next request on.
//!
//! Owns the key computation only; the table that maps the hash to an endpoint is
//! `config::hash_lb`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::hash_lb::hash64;

/// One hash policy.
#[derive(Debug, Clone)]
pub enum HashOn {
    Header(HeaderName),
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    SourceIp,
    QueryParameter(String),
}

/// A route's hash policies, in order.
#[derive(Debug, Clone, Default)]
pub struct HashPolicy {
    pub(crate) entries: Vec<(HashOn, bool)>,
}

/// The hash of one request and, when a cookie was generated, the `Set-Cookie` to answer with.
#[derive(Debug, Default)]
pub struct RequestHash {
    pub hash: Option<u64>,
    pub set_cookie: Option<HeaderValue>,
}

impl HashPolicy {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The request's hash from its headers, URI query and downstream address.
    pub fn hash(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        source: Option<IpAddr>,
    ) -> RequestHash {
        let mut out = RequestHash::default();
        for (on, terminal) in &self.entries {
            let h = match on {
                HashOn::Header(name) => {
                    let values: Vec<&[u8]> = headers
                        .get_all(name)
                        .iter()
                        .map(HeaderValue::as_bytes)
                        .collect();
                    (!values.is_empty()).then(|| hash64(&values.join(&b","[..])))
                }
                HashOn::SourceIp => source.map(|ip| hash64(ip.to_string().as_bytes())),
                HashOn::QueryParameter(name) => {
                    query_value(query, name).map(|v| hash64(v.as_bytes()))
                }
                HashOn::Cookie { name, path, ttl } => match cookie(headers, name) {
                    Some(v) => Some(hash64(v.as_bytes())),
                    None => ttl.map(|ttl| {
                        let value = generated_value(source);
                        out.set_cookie = set_cookie(name, &value, path.as_deref(), ttl);
                        hash64(value.as_bytes())
                    }),
                },
            };
            if let Some(h) = h {
                out.hash = Some(match out.hash {
                    Some(acc) => acc.rotate_left(1) ^ h,
                    None => h,
                });
                if *terminal {
                    break;
                }
            }
        }
        out
    }
}

/// The first value of query parameter `name` (raw, not decoded: Envoy hashes it as sent).
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in the request's `Cookie` headers (quotes removed).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_owned())
        })
}

/// A new cookie value: unique per proxy run and request (a counter mixed with the source
/// address and the time), as hex.
fn generated_value(source: Option<IpAddr>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{source:?}|{now}|{n}");
    format!("{:016x}", hash64(seed.as_bytes()))
}

/// `name="value"; Max-Age=N; Path=P; HttpOnly`, as Envoy sets it (a zero TTL gives a session
/// cookie, without `Max-Age`).
fn set_cookie(name: &str, value: &str, path: Option<&str>, ttl: Duration) -> Option<HeaderValue> {
    let mut s = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        s.push_str(&format!("; Path={p}"));
    }
    s.push_str("; HttpOnly");
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(on: HashOn) -> HashPolicy {
        HashPolicy {
            entries: vec![(on, false)],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_header_gives_a_stable_hash_and_no_header_none() {
        let p = policy(HashOn::Header(HeaderName::from_static("x-user")));
        let a = p.hash(&headers(&[("x-user", "alice")]), None, None).hash;
        assert!(a.is_some());
        assert_eq!(a, p.hash(&headers(&[("x-user", "alice")]), None, None).hash);
        assert_ne!(a, p.hash(&headers(&[("x-user", "bob")]), None, None).hash);
        assert_eq!(p.hash(&HeaderMap::new(), None, None).hash, None);
    }

    #[test]
    fn a_cookie_with_a_ttl_is_generated_when_absent_and_hashes_like_the_returned_cookie() {
        let p = policy(HashOn::Cookie {
            name: "sticky".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(60)),
        });
        let first = p.hash(&HeaderMap::new(), None, None);
        let set = first.set_cookie.unwrap();
        let set = set.to_str().unwrap();
        assert!(
            set.starts_with("sticky=\"") && set.ends_with("; Max-Age=60; Path=/; HttpOnly"),
            "{set}"
        );
        let value = set.split(';').next().unwrap().trim_start_matches("sticky=");
        let again = p.hash(
            &headers(&[("cookie", &format!("a=b; sticky={value}"))]),
            None,
            None,
        );
        assert_eq!(again.hash, first.hash);
        assert!(again.set_cookie.is_none());
        // Without a ttl nothing is generated.
        let p = policy(HashOn::Cookie {
            name: "s".into(),
            path: None,
            ttl: None,
        });
        let r = p.hash(&HeaderMap::new(), None, None);
        assert!(r.hash.is_none() && r.set_cookie.is_none());
    }

    #[test]
    fn source_ip_and_query_parameter() {
        let p = policy(HashOn::SourceIp);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            p.hash(&HeaderMap::new(), None, ip("10.0.0.1")).hash,
            p.hash(&HeaderMap::new(), None, ip("10.0.0.1")).hash
        );
        assert_ne!(
            p.hash(&HeaderMap::new(), None, ip("10.0.0.1")).hash,
            p.hash(&HeaderMap::new(), None, ip("10.0.0.2")).hash
        );
        let q = policy(HashOn::QueryParameter("user".into()));
        assert_eq!(
            q.hash(&HeaderMap::new(), Some("a=1&user=7"), None).hash,
            Some(hash64(b"7"))
        );
        assert_eq!(q.hash(&HeaderMap::new(), Some("a=1"), None).hash, None);
    }
}

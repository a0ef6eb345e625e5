//! Validated route policies: retries, faults, redirects, rewrites, header edits, query
//! matches, CORS and mirrors (`super::l7`), in the form the data path applies them (parsed header names, compiled regexes,
//! retry conditions as bits). Built by `build`; applied by `crate::route_exec`.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use regex::Regex;

use super::l7::{Cors, Mirror};
use super::route::HeaderValueMatch;

/// Everything a route does beyond choosing a cluster.
#[derive(Debug, Default)]
pub struct RoutePolicy {
    pub(crate) query: Vec<QueryMatch>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) fault: Option<Fault>,
    pub(crate) redirect: Option<Redirect>,
    pub(crate) rewrite: Rewrite,
    pub(crate) request_headers: HeaderEdits,
    pub(crate) response_headers: HeaderEdits,
    pub(crate) cors: Option<Cors>,
    pub(crate) mirrors: Vec<Mirror>,
}

impl RoutePolicy {
    pub fn cors(&self) -> Option<&Cors> {
        self.cors.as_ref()
    }

    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }

    pub fn retry(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }

    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }

    pub fn redirect(&self) -> Option<&Redirect> {
        self.redirect.as_ref()
    }

    pub fn rewrite(&self) -> &Rewrite {
        &self.rewrite
    }

    pub fn request_headers(&self) -> &HeaderEdits {
        &self.request_headers
    }

    pub fn response_headers(&self) -> &HeaderEdits {
        &self.response_headers
    }
}

/// A query parameter that must be present (and match) in the request's query string.
#[derive(Debug)]
pub struct QueryMatch {
    pub(crate) name: String,
    pub(crate) value: HeaderValueMatch,
}

impl QueryMatch {
    /// `query` is the raw query string (without `?`); names and values are compared
    /// percent-decoded.
    pub fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            decode(name) == self.name && self.value.matches_str(&decode(value))
        })
    }
}

/// Percent-decoding (`%41` → `A`); invalid escapes stay as they are.
fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                // Two hex digits: at most 255.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

/// Retry conditions (Envoy's `retry_on`), as bits.
pub mod retry_on {
    pub const SERVER_ERROR: u32 = 1; // 5xx
    pub const GATEWAY_ERROR: u32 = 1 << 1; // 502, 503, 504
    pub const RESET: u32 = 1 << 2;
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    pub const RETRIABLE_4XX: u32 = 1 << 4; // 409
    pub const REFUSED_STREAM: u32 = 1 << 5;
    pub const STATUS_CODES: u32 = 1 << 6;
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 7;
    pub const GRPC_CANCELLED: u32 = 1 << 8;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 9;
    pub const GRPC_INTERNAL: u32 = 1 << 10;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 11;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 12;

    /// The bit of one of Envoy's condition names.
    pub fn parse(name: &str) -> Option<u32> {
        Some(match name {
            "5xx" => SERVER_ERROR,
            "gateway-error" => GATEWAY_ERROR,
            "reset" => RESET,
            "reset-before-request" => RESET_BEFORE_REQUEST,
            "connect-failure" => CONNECT_FAILURE,
            "retriable-4xx" => RETRIABLE_4XX,
            "refused-stream" => REFUSED_STREAM,
            "retriable-status-codes" => STATUS_CODES,
            "cancelled" => GRPC_CANCELLED,
            "deadline-exceeded" => GRPC_DEADLINE_EXCEEDED,
            "internal" => GRPC_INTERNAL,
            "resource-exhausted" => GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => GRPC_UNAVAILABLE,
            // Only meaningful over HTTP/3, which the proxy does not speak upstream.
            "http3-post-connect-failure" => 0,
            _ => return None,
        })
    }
}

/// How one attempt ended, for retry and outlier decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Response headers arrived with this status (and gRPC status, when a trailers-only
    /// answer carried one in its headers).
    Response(StatusCode, Option<u32>),
    /// No connection could be made.
    ConnectFailure,
    /// The connection broke before response headers arrived.
    Reset,
    /// The per-try timeout passed.
    Timeout,
}

#[derive(Debug)]
pub struct RetryPolicy {
    pub(crate) on: u32,
    pub(crate) codes: Vec<u16>,
    pub(crate) retries: u32,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) avoid_previous_hosts: bool,
    pub(crate) host_selection_attempts: u32,
}

impl RetryPolicy {
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn per_try_timeout(&self) -> Option<Duration> {
        self.per_try_timeout
    }

    /// Does this outcome call for another attempt (Envoy's conditions)?
    pub fn should_retry(&self, outcome: AttemptOutcome) -> bool {
        use retry_on::*;
        let on = |bit| self.on & bit != 0;
        match outcome {
            AttemptOutcome::ConnectFailure => {
                on(CONNECT_FAILURE | RESET | SERVER_ERROR | GATEWAY_ERROR | RESET_BEFORE_REQUEST)
            }
            AttemptOutcome::Reset => on(RESET | SERVER_ERROR | GATEWAY_ERROR),
            // A per-try timeout counts as a 504.
            AttemptOutcome::Timeout => on(SERVER_ERROR | GATEWAY_ERROR),
            AttemptOutcome::Response(status, grpc) => {
                let code = status.as_u16();
                let grpc_hit = grpc.is_some_and(|g| match g {
                    1 => on(GRPC_CANCELLED),
                    4 => on(GRPC_DEADLINE_EXCEEDED),
                    8 => on(GRPC_RESOURCE_EXHAUSTED),
                    13 => on(GRPC_INTERNAL),
                    14 => on(GRPC_UNAVAILABLE),
                    _ => false,
                });
                grpc_hit
                    || (on(SERVER_ERROR) && status.is_server_error())
                    || (on(GATEWAY_ERROR) && matches!(code, 502..=504))
                    || (on(RETRIABLE_4XX) && code == 409)
                    || (on(STATUS_CODES) && self.codes.contains(&code))
            }
        }
    }

    /// Picks tried to find an endpoint not used before by this request.
    pub fn host_selection_attempts(&self) -> u32 {
        if self.avoid_previous_hosts {
            self.host_selection_attempts.max(1)
        } else {
            1
        }
    }
}

/// The fault filter's config of a route; fractions in millionths.
#[derive(Debug)]
pub struct Fault {
    pub(crate) delay: Option<(Duration, u32)>,
    pub(crate) abort: Option<(StatusCode, u32)>,
}

impl Fault {
    pub fn delay(&self) -> Option<(Duration, u32)> {
        self.delay
    }

    pub fn abort(&self) -> Option<(StatusCode, u32)> {
        self.abort
    }
}

/// Where a redirect sends the client; unset parts keep the request's.
#[derive(Debug)]
pub struct Redirect {
    pub(crate) scheme: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) path: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) code: StatusCode,
    pub(crate) strip_query: bool,
}

impl Redirect {
    /// The `Location` for a request to `scheme://authority` with `path_and_query`, matched by
    /// a route whose prefix is `matched_prefix` (for prefix redirects).
    pub fn location(
        &self,
        scheme: &str,
        authority: &str,
        path_and_query: &str,
        matched_prefix: Option<&str>,
    ) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let (req_host, req_port) = split_host_port(authority);
        let host = self.host.as_deref().unwrap_or(req_host);
        let port = match self.port {
            Some(p) => Some(p.to_string()),
            // A scheme change drops the request's port, as Envoy does.
            None if self.scheme.is_some() => None,
            None => req_port.map(str::to_owned),
        };
        let mut path = match (&self.path, &self.prefix, matched_prefix) {
            (Some(p), _, _) => p.clone(),
            (None, Some(new), Some(old)) => format!("{new}{}", &path[old.len().min(path.len())..]),
            _ => path.to_owned(),
        };
        if let (Some(q), false, false) = (query, self.strip_query, path.contains('?')) {
            path.push('?');
            path.push_str(q);
        }
        match port {
            Some(port) => format!("{scheme}://{host}:{port}{path}"),
            None => format!("{scheme}://{host}{path}"),
        }
    }

    pub fn code(&self) -> StatusCode {
        self.code
    }
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    }
}

#[derive(Debug, Default)]
pub struct Rewrite {
    pub(crate) prefix: Option<String>,
    /// Pattern and substitution in the regex crate's form (`${1}`).
    pub(crate) regex: Option<(Regex, String)>,
    pub(crate) host: Option<HeaderValue>,
}

impl Rewrite {
    /// The rewritten path (with its query) or `None` when the path stays.
    pub fn path(&self, path_and_query: &str, matched_prefix: Option<&str>) -> Option<String> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let new = if let (Some(new), Some(old)) = (&self.prefix, matched_prefix) {
            format!("{new}{}", &path[old.len().min(path.len())..])
        } else if let Some((re, with)) = &self.regex {
            re.replace_all(path, with.as_str()).into_owned()
        } else {
            return None;
        };
        Some(match query {
            Some(q) => format!("{new}?{q}"),
            None => new,
        })
    }

    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }
}

/// Headers to set, append and remove.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    pub(crate) add: Vec<(HeaderName, HeaderValue, bool)>,
    pub(crate) remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Removes first, then sets and appends (Envoy's order).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value, append) in &self.add {
            if *append {
                headers.append(name.clone(), value.clone());
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_matches_decode_names_and_values() {
        let m = QueryMatch {
            name: "q".into(),
            value: HeaderValueMatch::Exact("a b".into()),
        };
        assert!(m.matches(Some("x=1&q=a%20b")));
        assert!(!m.matches(Some("q=ab")));
        assert!(!m.matches(None));
        let present = QueryMatch {
            name: "debug".into(),
            value: HeaderValueMatch::Present,
        };
        assert!(present.matches(Some("debug")));
    }

    #[test]
    fn retry_conditions_follow_envoy() {
        let p = |on: &[&str], codes: Vec<u16>| RetryPolicy {
            on: on
                .iter()
                .map(|c| retry_on::parse(c).unwrap())
                .fold(0, |a, b| a | b),
            codes,
            retries: 1,
            per_try_timeout: None,
            avoid_previous_hosts: false,
            host_selection_attempts: 1,
        };
        let resp = |s: u16| AttemptOutcome::Response(StatusCode::from_u16(s).unwrap(), None);
        let gw = p(&["gateway-error"], vec![]);
        assert!(gw.should_retry(resp(503)));
        assert!(!gw.should_retry(resp(500)));
        assert!(gw.should_retry(AttemptOutcome::Timeout));
        let codes = p(&["retriable-status-codes"], vec![418]);
        assert!(codes.should_retry(resp(418)));
        assert!(!codes.should_retry(resp(503)));
        assert!(!codes.should_retry(AttemptOutcome::Reset));
        let cf = p(&["connect-failure"], vec![]);
        assert!(cf.should_retry(AttemptOutcome::ConnectFailure));
        assert!(!cf.should_retry(resp(503)));
        let grpc = p(&["unavailable"], vec![]);
        assert!(grpc.should_retry(AttemptOutcome::Response(StatusCode::OK, Some(14))));
    }

    #[test]
    fn redirects_and_rewrites_build_the_new_uri() {
        let r = Redirect {
            scheme: Some("https".into()),
            host: Some("new.example".into()),
            port: None,
            path: None,
            prefix: Some("/v2/".into()),
            code: StatusCode::FOUND,
            strip_query: false,
        };
        assert_eq!(
            r.location("http", "old:8080", "/v1/items?x=1", Some("/v1/")),
            "https://new.example/v2/items?x=1"
        );
        let rw = Rewrite {
            prefix: None,
            regex: Some((Regex::new("^/r/(.*)$").unwrap(), "/${1}".into())),
            host: None,
        };
        assert_eq!(rw.path("/r/a/b?q", None).unwrap(), "/a/b?q");
        let rw = Rewrite {
            prefix: Some("/".into()),
            ..Default::default()
        };
        assert_eq!(rw.path("/api/x", Some("/api/")).unwrap(), "/x");
    }
}

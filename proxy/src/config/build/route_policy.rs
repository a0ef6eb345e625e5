//! [`RoutePolicySpec`] → [`RoutePolicy`]: retry conditions parsed, regexes compiled, header
//! names and values checked, status codes in range.

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::super::policy::{
    Fault, HeaderEdits, QueryMatch, Redirect, RetryPolicy, Rewrite, RoutePolicy, retry_on,
};
use std::sync::Arc;

use super::super::rate_limit::TokenBucket;
use super::super::spec::{HeaderEditsSpec, RateLimitSpec, RoutePolicySpec};
use super::{Problems, value_match};

pub(super) fn route_policy(
    spec: &RoutePolicySpec,
    at: &str,
    problems: &mut Problems,
) -> Option<RoutePolicy> {
    let before = problems.0.len();
    let query = spec
        .query
        .iter()
        .filter_map(|q| {
            Some(QueryMatch {
                name: q.name.clone(),
                value: value_match(&q.value, at, problems)?,
            })
        })
        .collect();
    let retry = spec.retry.as_ref().map(|r| {
        let mut on = 0;
        for c in &r.retry_on {
            match retry_on::parse(c) {
                Some(bit) => on |= bit,
                None => problems.add(at, format!("retry condition {c:?} is not supported")),
            }
        }
        let codes = r
            .retriable_status_codes
            .iter()
            .filter_map(
                |c| match u16::try_from(*c).ok().filter(|c| (100..600).contains(c)) {
                    Some(c) => Some(c),
                    None => {
                        problems.add(at, format!("retriable status code {c} is not a status"));
                        None
                    }
                },
            )
            .collect();
        RetryPolicy {
            on,
            codes,
            retries: r.num_retries,
            per_try_timeout: r.per_try_timeout.filter(|d| !d.is_zero()),
            avoid_previous_hosts: r.avoid_previous_hosts,
            host_selection_attempts: r.host_selection_attempts,
        }
    });
    let fault = spec.fault.as_ref().map(|f| Fault {
        delay: f.delay,
        abort: f.abort.and_then(|(status, share)| {
            let status = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok());
            if status.is_none() {
                problems.add(at, "fault abort status is not an HTTP status");
            }
            Some((status?, share))
        }),
    });
    let redirect = spec.redirect.as_ref().map(|r| {
        let code = u16::try_from(r.code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(StatusCode::is_redirection)
            .unwrap_or_else(|| {
                problems.add(at, format!("redirect code {} is not 3xx", r.code));
                StatusCode::MOVED_PERMANENTLY
            });
        let port = r.port.map(|p| {
            u16::try_from(p).unwrap_or_else(|_| {
                problems.add(at, format!("redirect port {p} is out of range"));
                0
            })
        });
        Redirect {
            scheme: r.scheme.clone(),
            host: r.host.clone(),
            port,
            path: r.path.clone(),
            prefix: r.prefix.clone(),
            code,
            strip_query: r.strip_query,
        }
    });
    let rewrite = Rewrite {
        prefix: spec.rewrite.prefix.clone(),
        regex: spec.rewrite.regex.as_ref().and_then(|(re, with)| {
            let re = regex::Regex::new(re)
                .map_err(|e| problems.add(at, format!("rewrite regex {re:?}: {e}")))
                .ok()?;
            Some((re, substitution(with)))
        }),
        host: spec.rewrite.host.as_ref().and_then(|h| {
            HeaderValue::from_str(h)
                .map_err(|_| problems.add(at, format!("host rewrite {h:?} is not a header value")))
                .ok()
        }),
    };
    if spec.rewrite.prefix.is_some() && spec.rewrite.regex.is_some() {
        problems.add(at, "both a prefix and a regex rewrite");
    }
    let request_headers = edits(&spec.request_headers, at, problems);
    let response_headers = edits(&spec.response_headers, at, problems);
    let cors = spec
        .cors
        .as_ref()
        .and_then(|c| super::l7::cors(c, at, problems));
    (problems.0.len() == before).then_some(RoutePolicy {
        cors,
        // Resolved by the caller, which knows the clusters.
        mirrors: Vec::new(),
        query,
        retry,
        fault,
        redirect,
        rewrite,
        request_headers,
        response_headers,
    })
}

/// A virtual host's token bucket.
pub(super) fn token_bucket(
    spec: &RateLimitSpec,
    at: &str,
    problems: &mut Problems,
) -> Option<Arc<TokenBucket>> {
    if spec.max_tokens == 0 || spec.tokens_per_fill == 0 {
        problems.add(
            at,
            "rate limit token bucket needs max_tokens and tokens_per_fill above 0",
        );
        return None;
    }
    let headers = edits(&spec.response_headers, at, problems);
    Some(Arc::new(TokenBucket::new(
        spec.max_tokens,
        spec.tokens_per_fill,
        spec.fill_interval,
        headers,
    )))
}

/// Envoy's (RE2's) `\N` capture references in the regex crate's `${N}` form; a literal `$`
/// is escaped.
fn substitution(with: &str) -> String {
    let mut out = String::with_capacity(with.len());
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn edits(spec: &HeaderEditsSpec, at: &str, problems: &mut Problems) -> HeaderEdits {
    let name = |n: &str, problems: &mut Problems| {
        HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| problems.add(at, format!("{n:?} is not a header name")))
            .ok()
    };
    let mut out = HeaderEdits::default();
    for (n, v, append) in &spec.add {
        let value = HeaderValue::from_str(v)
            .map_err(|_| problems.add(at, format!("header {n:?}: {v:?} is not a header value")))
            .ok();
        if let (Some(n), Some(v)) = (name(n, problems), value) {
            out.add.push((n, v, *append));
        }
    }
    for n in &spec.remove {
        if let Some(n) = name(n, problems) {
            out.remove.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::substitution;

    #[test]
    fn capture_references_become_the_regex_crates() {
        assert_eq!(substitution(r"/\1/x\12"), "/${1}/x${12}");
        assert_eq!(substitution("$5"), "$$5");
    }
}

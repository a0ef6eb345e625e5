//! The per-route policies of a `VirtualService` HTTP route, as Envoy route fields: `retries`
//! (Envoy `RetryPolicy`), `fault` (the fault filter's per-route `HTTPFault`), `redirect`
//! (`RedirectAction`), `rewrite` (prefix or regex rewrite, host rewrite), `headers`
//! (request/response headers to add and remove) and query-parameter matches.
//!
//! Semantics are Istio's: without `retries`, Istio's default policy (2 retries on
//! `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` with 503,
//! avoiding previously tried hosts); `attempts: 0` means no retries; numbers in `retryOn` are
//! retriable status codes. A fault `percentage` left unset means every request. Must not look
//! at clusters or listeners (the caller places what this returns).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    QueryParameterMatcher, RedirectAction, RetryPolicy, RouteAction,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::{RetryHostPredicate, retry_host_predicate},
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

use super::names::{FAULT_FILTER, LOCAL_RATE_LIMIT_FILTER, LOCAL_RATE_LIMIT_STATS, PREVIOUS_HOSTS};
use super::proto::{duration, parse_duration, u32_value};
use super::route::{regex, string_matcher};
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit as EnvoyLocalRateLimit;
use envoy_types::pb::envoy::r#type::v3::TokenBucket;

use crate::model::config::VirtualService;
use crate::model::istio::networking::{HeaderOperations, HttpRoute, Percent, StringMatch};
use crate::model::rate_limit::{LOCAL_RATE_LIMIT_ANNOTATION, LocalRateLimit};

/// Istio's retry conditions when a route sets no `retryOn`, and when it sets no `retries`.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_ATTEMPTS: u32 = 2;

/// The route's retry policy: Istio's default without `retries`, none with `attempts: 0`.
pub fn retry_policy(http: &HttpRoute) -> Option<RetryPolicy> {
    let Some(r) = &http.retries else {
        return Some(policy(DEFAULT_ATTEMPTS, DEFAULT_RETRY_ON, vec![503]));
    };
    let attempts = u32::try_from(r.attempts.unwrap_or(0)).unwrap_or(0);
    if attempts == 0 {
        return None;
    }
    let mut p = match r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        None => policy(attempts, DEFAULT_RETRY_ON, vec![503]),
        Some(on) => {
            let mut conditions = Vec::new();
            let mut codes = Vec::new();
            for c in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match c.parse::<u32>() {
                    Ok(code) => codes.push(code),
                    Err(_) => conditions.push(c),
                }
            }
            if !codes.is_empty() && !conditions.contains(&"retriable-status-codes") {
                conditions.push("retriable-status-codes");
            }
            policy(attempts, &conditions.join(","), codes)
        }
    };
    p.per_try_timeout = r
        .per_try_timeout
        .as_deref()
        .and_then(parse_duration)
        .map(duration);
    Some(p)
}

fn policy(attempts: u32, retry_on: &str, codes: Vec<u32>) -> RetryPolicy {
    RetryPolicy {
        retry_on: retry_on.to_owned(),
        num_retries: u32_value(attempts),
        retriable_status_codes: codes,
        retry_host_predicate: vec![RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_owned(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(pack_any(
                PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

/// The fault filter's per-route config (`typed_per_filter_config`), when the route has one.
pub fn fault(http: &HttpRoute) -> Option<HashMap<String, Any>> {
    let f = http.fault.as_ref()?;
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay.as_deref().and_then(parse_duration)?;
        let percentage = match (&d.percentage, d.percent) {
            (Some(p), _) => percent(Some(p)),
            (None, Some(whole)) => fraction(f64::from(whole.clamp(0, 100))),
            (None, None) => percent(None),
        };
        Some(FaultDelay {
            percentage,
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(fixed))),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let status = u32::try_from(a.http_status?).ok()?;
        Some(FaultAbort {
            percentage: percent(a.percentage.as_ref()),
            error_type: Some(ErrorType::HttpStatus(status)),
            ..Default::default()
        })
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    let config = HttpFault {
        delay,
        abort,
        ..Default::default()
    };
    Some(HashMap::from([(FAULT_FILTER.to_owned(), pack_any(config))]))
}

/// Istio's percentage (0–100, fractions allowed) in millionths; unset → every request.
fn percent(p: Option<&Percent>) -> Option<FractionalPercent> {
    fraction(p.and_then(|p| p.value).unwrap_or(100.0))
}

fn fraction(percent: f64) -> Option<FractionalPercent> {
    // Clamped to 0..=100, so the product fits in u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let numerator = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
    Some(FractionalPercent {
        numerator,
        denominator: DenominatorType::Million as i32,
    })
}

/// The route's `redirect` as Envoy's redirect action.
pub fn redirect(http: &HttpRoute) -> Option<RedirectAction> {
    let r = http.redirect.as_ref()?;
    let response_code = match r.redirect_code.unwrap_or(301) {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    Some(RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        port_redirect: r.port.unwrap_or(0),
        response_code: response_code as i32,
        scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: r.uri.clone().map(PathRewriteSpecifier::PathRedirect),
        ..Default::default()
    })
}

/// Applies the route's `rewrite` to its action: a `uri` rewrite replaces the matched prefix
/// (or the whole path of an exact match, as Envoy's `prefix_rewrite` does); `uriRegexRewrite`
/// substitutes; `authority` rewrites the host.
pub fn rewrite(http: &HttpRoute, action: &mut RouteAction) {
    use envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier;
    let Some(rw) = &http.rewrite else { return };
    if let Some(uri) = &rw.uri {
        action.prefix_rewrite = uri.clone();
    } else if let Some(re) = &rw.uri_regex_rewrite
        && let (Some(pattern), Some(substitution)) = (&re.pattern, &re.rewrite)
    {
        action.regex_rewrite = Some(RegexMatchAndSubstitute {
            pattern: Some(regex(pattern)),
            substitution: substitution.clone(),
        });
    }
    if let Some(authority) = &rw.authority {
        action.host_rewrite_specifier =
            Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
    }
}

/// Header edits of one direction: (to add, to remove). `set` overwrites, `add` appends, as
/// Istio translates them.
pub fn header_edits(ops: Option<&HeaderOperations>) -> (Vec<HeaderValueOption>, Vec<String>) {
    let Some(ops) = ops else {
        return (Vec::new(), Vec::new());
    };
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.to_ascii_lowercase(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut add: Vec<HeaderValueOption> = ops
        .set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    add.extend(
        ops.add
            .iter()
            .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
    );
    let remove = ops.remove.iter().map(|h| h.to_ascii_lowercase()).collect();
    (add, remove)
}

/// Query parameter matches (exact, prefix, regex; an empty match means "present").
pub fn query_params(params: &BTreeMap<String, StringMatch>) -> Vec<QueryParameterMatcher> {
    params
        .iter()
        .map(|(name, sm)| {
            let specifier = match string_matcher(sm) {
                Some(m) => QueryParameterMatchSpecifier::StringMatch(m),
                None => QueryParameterMatchSpecifier::PresentMatch(true),
            };
            QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(specifier),
            }
        })
        .collect()
}

/// The virtual host's local rate limit (our `traffic.hostmesh.io/local-rate-limit`
/// annotation on the `VirtualService`): one token bucket per destination in each proxy,
/// refused requests answered 429 with `retry-after`.
pub fn local_rate_limit(vs: &VirtualService) -> Option<HashMap<String, Any>> {
    let text = vs.meta.annotations.get(LOCAL_RATE_LIMIT_ANNOTATION)?;
    // Validation refused malformed values.
    let limit = LocalRateLimit::parse(text).ok()?;
    let always = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: DenominatorType::Hundred as i32,
        }),
        runtime_key: String::new(),
    };
    let config = EnvoyLocalRateLimit {
        stat_prefix: LOCAL_RATE_LIMIT_STATS.to_owned(),
        token_bucket: Some(TokenBucket {
            max_tokens: limit.burst,
            tokens_per_fill: u32_value(limit.tokens),
            fill_interval: Some(duration(limit.interval)),
        }),
        filter_enabled: Some(always()),
        filter_enforced: Some(always()),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "retry-after".to_owned(),
                value: limit.retry_after_secs().to_string(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    Some(HashMap::from([(
        LOCAL_RATE_LIMIT_FILTER.to_owned(),
        pack_any(config),
    )]))
}

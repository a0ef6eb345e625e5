//! The policy fields of an Envoy `Route` → [`RoutePolicySpec`]: the fault filter's per-route
//! config, header edits, query-parameter matches, the retry policy, rewrites and redirects.
//! Each function takes what it understands out of the message; the caller reports whatever
//! is left as unsupported.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    QueryParameterMatcher, RedirectAction, RetryPolicy, Route, RouteAction,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::retry_host_predicate,
    route_action::HostRewriteSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use prost::Name;

use super::super::wire::{Problems, unpack};
use super::cluster::duration;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;

use crate::config::spec::{
    FaultSpec, HeaderEditsSpec, HeaderValueSpec, QueryMatchSpec, RateLimitSpec, RedirectSpec,
    RetrySpec, RewriteSpec,
};

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const LOCAL_RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

/// The route's per-filter configs: only the fault filter's is understood.
pub fn fault(r: &mut Route, at: &str, p: &mut Problems<'_>) -> Option<FaultSpec> {
    let mut out = None;
    for (name, any) in std::mem::take(&mut r.typed_per_filter_config) {
        if name != FAULT_FILTER {
            p.add(format!(
                "{at}: typed_per_filter_config {name:?} is not supported (only {FAULT_FILTER})"
            ));
            continue;
        }
        let mut f = match unpack::<HttpFault>(&any) {
            Ok(f) => f,
            Err(e) => {
                p.add(format!("{at}: typed_per_filter_config {name:?} {e}"));
                continue;
            }
        };
        let at = format!("{at}: fault");
        let mut spec = FaultSpec::default();
        if let Some(mut d) = f.delay.take() {
            let share = millionths(d.percentage.take(), &at, p);
            match d.fault_delay_secifier.take() {
                Some(FaultDelaySecifier::FixedDelay(fixed)) => match duration(&fixed) {
                    Some(fixed) => spec.delay = Some((fixed, share)),
                    None => p.add(format!("{at}.delay.fixed_delay is negative")),
                },
                _ => p.add(format!("{at}.delay: only fixed_delay is supported")),
            }
            p.leftover(&format!("{at}.delay"), &d);
        }
        if let Some(mut a) = f.abort.take() {
            let share = millionths(a.percentage.take(), &at, p);
            match a.error_type.take() {
                Some(ErrorType::HttpStatus(s)) if (200..600).contains(&s) => {
                    spec.abort = Some((s, share));
                }
                _ => p.add(format!(
                    "{at}.abort: only http_status (200-599) is supported"
                )),
            }
            p.leftover(&format!("{at}.abort"), &a);
        }
        p.leftover(&at, &f);
        out = Some(spec);
    }
    out
}

/// Envoy's fractional percent in millionths; unset means every request.
pub(super) fn millionths(f: Option<FractionalPercent>, at: &str, p: &mut Problems<'_>) -> u32 {
    let Some(f) = f else { return 1_000_000 };
    let scale = match DenominatorType::try_from(f.denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => {
            p.add(format!(
                "{at}: percentage denominator {} is unknown",
                f.denominator
            ));
            1
        }
    };
    f.numerator.saturating_mul(scale).min(1_000_000)
}

/// Request and response header edits of the route.
pub fn header_edits(
    r: &mut Route,
    at: &str,
    p: &mut Problems<'_>,
) -> (HeaderEditsSpec, HeaderEditsSpec) {
    let request = edits(
        std::mem::take(&mut r.request_headers_to_add),
        std::mem::take(&mut r.request_headers_to_remove),
        &format!("{at}.request_headers_to_add"),
        p,
    );
    let response = edits(
        std::mem::take(&mut r.response_headers_to_add),
        std::mem::take(&mut r.response_headers_to_remove),
        &format!("{at}.response_headers_to_add"),
        p,
    );
    (request, response)
}

#[allow(deprecated)]
pub(super) fn edits(
    add: Vec<HeaderValueOption>,
    remove: Vec<String>,
    at: &str,
    p: &mut Problems<'_>,
) -> HeaderEditsSpec {
    let mut out = HeaderEditsSpec {
        add: Vec::new(),
        remove,
    };
    for mut o in add {
        let Some(h) = o.header.take() else {
            p.add(format!("{at}: an entry has no header"));
            continue;
        };
        let append = match (
            o.append.take(),
            HeaderAppendAction::try_from(o.append_action),
        ) {
            (Some(a), _) => a.value,
            (None, Ok(HeaderAppendAction::AppendIfExistsOrAdd)) => true,
            (None, Ok(HeaderAppendAction::OverwriteIfExistsOrAdd)) => false,
            _ => {
                p.add(format!(
                    "{at}[{:?}]: append_action {} is not supported",
                    h.key, o.append_action
                ));
                continue;
            }
        };
        o.append_action = 0;
        if !h.raw_value.is_empty() {
            p.add(format!("{at}[{:?}]: raw_value is not supported", h.key));
        }
        if h.value.contains("%") {
            p.add(format!(
                "{at}[{:?}]: header value formatters (%...%) are not supported",
                h.key
            ));
        }
        p.leftover(&format!("{at}[{:?}]", h.key), &o);
        out.add.push((h.key, h.value, append));
    }
    out
}

/// Query parameter matches: string matches (case-sensitive) and presence.
pub fn query(
    params: Vec<QueryParameterMatcher>,
    at: &str,
    p: &mut Problems<'_>,
) -> Vec<QueryMatchSpec> {
    let mut out = Vec::new();
    for q in params {
        let at = format!("{at}.query_parameters[{:?}]", q.name);
        let value = match q.query_parameter_match_specifier {
            Some(QueryParameterMatchSpecifier::PresentMatch(true)) => {
                Some(HeaderValueSpec::Present)
            }
            Some(QueryParameterMatchSpecifier::StringMatch(sm)) if !sm.ignore_case => {
                match sm.match_pattern {
                    Some(MatchPattern::Exact(v)) => Some(HeaderValueSpec::Exact(v)),
                    Some(MatchPattern::Prefix(v)) => Some(HeaderValueSpec::Prefix(v)),
                    Some(MatchPattern::SafeRegex(re)) => Some(HeaderValueSpec::Regex(re.regex)),
                    _ => None,
                }
            }
            _ => None,
        };
        match value {
            Some(value) => out.push(QueryMatchSpec {
                name: q.name,
                value,
            }),
            None => p.add(format!(
                "{at}: only exact, prefix, safe_regex (case-sensitive) and present matches are supported"
            )),
        }
    }
    out
}

/// The route action's retry policy.
pub fn retry(a: &mut RouteAction, at: &str, p: &mut Problems<'_>) -> Option<RetrySpec> {
    let mut r: RetryPolicy = a.retry_policy.take()?;
    let at = format!("{at}.retry_policy");
    let mut spec = RetrySpec {
        retry_on: std::mem::take(&mut r.retry_on)
            .split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
        num_retries: r.num_retries.take().map_or(1, |n| n.value),
        per_try_timeout: r.per_try_timeout.take().and_then(|d| duration(&d)),
        retriable_status_codes: std::mem::take(&mut r.retriable_status_codes),
        avoid_previous_hosts: false,
        host_selection_attempts: u32::try_from(r.host_selection_retry_max_attempts.max(1))
            .unwrap_or(u32::MAX),
    };
    r.host_selection_retry_max_attempts = 0;
    for pred in std::mem::take(&mut r.retry_host_predicate) {
        let ok = pred.name == PREVIOUS_HOSTS
            && match &pred.config_type {
                None => true,
                Some(retry_host_predicate::ConfigType::TypedConfig(any)) => {
                    any.type_url == PreviousHostsPredicate::type_url()
                }
            };
        if ok {
            spec.avoid_previous_hosts = true;
        } else {
            p.add(format!(
                "{at}: retry_host_predicate {:?} is not supported (only {PREVIOUS_HOSTS})",
                pred.name
            ));
        }
    }
    // Envoy's default back-off (25 ms base, 250 ms cap) is what the proxy does.
    r.retry_back_off = None;
    p.leftover(&at, &r);
    Some(spec)
}

/// The route action's rewrites: `prefix_rewrite`, `regex_rewrite`, a literal host rewrite.
pub fn rewrite(a: &mut RouteAction, at: &str, p: &mut Problems<'_>) -> RewriteSpec {
    let prefix = std::mem::take(&mut a.prefix_rewrite);
    let regex = a.regex_rewrite.take().and_then(|re| match re.pattern {
        Some(pattern) => Some((pattern.regex, re.substitution)),
        None => {
            p.add(format!("{at}.regex_rewrite has no pattern"));
            None
        }
    });
    let host = match a.host_rewrite_specifier.take() {
        None => None,
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => Some(h),
        Some(_) => {
            p.add(format!(
                "{at}.host_rewrite_specifier: only host_rewrite_literal is supported"
            ));
            None
        }
    };
    RewriteSpec {
        prefix: (!prefix.is_empty()).then_some(prefix),
        regex,
        host,
    }
}

/// A redirect action.
pub fn redirect(mut r: RedirectAction, at: &str, p: &mut Problems<'_>) -> RedirectSpec {
    let at = format!("{at}.redirect");
    let code = match RedirectResponseCode::try_from(r.response_code) {
        Ok(RedirectResponseCode::MovedPermanently) => 301,
        Ok(RedirectResponseCode::Found) => 302,
        Ok(RedirectResponseCode::SeeOther) => 303,
        Ok(RedirectResponseCode::TemporaryRedirect) => 307,
        Ok(RedirectResponseCode::PermanentRedirect) => 308,
        Err(_) => {
            p.add(format!(
                "{at}: response_code {} is unknown",
                r.response_code
            ));
            301
        }
    };
    r.response_code = 0;
    let scheme = match r.scheme_rewrite_specifier.take() {
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => Some(s),
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(SchemeRewriteSpecifier::HttpsRedirect(false)) | None => None,
    };
    let (path, prefix) = match r.path_rewrite_specifier.take() {
        Some(PathRewriteSpecifier::PathRedirect(s)) => (Some(s), None),
        Some(PathRewriteSpecifier::PrefixRewrite(s)) => (None, Some(s)),
        Some(PathRewriteSpecifier::RegexRewrite(_) | PathRewriteSpecifier::PathRewrite(_)) => {
            p.add(format!(
                "{at}: only path_redirect and prefix_rewrite are supported"
            ));
            (None, None)
        }
        None => (None, None),
    };
    let spec = RedirectSpec {
        scheme,
        host: Some(std::mem::take(&mut r.host_redirect)).filter(|h| !h.is_empty()),
        port: Some(std::mem::take(&mut r.port_redirect)).filter(|p| *p != 0),
        path,
        prefix,
        code,
        strip_query: std::mem::take(&mut r.strip_query),
    };
    p.leftover(&at, &r);
    spec
}

/// A virtual host's per-filter configs: only the local rate limit's is understood.
pub fn rate_limit(
    configs: std::collections::HashMap<String, envoy_types::pb::google::protobuf::Any>,
    at: &str,
    p: &mut Problems<'_>,
) -> Option<RateLimitSpec> {
    let mut out = None;
    for (name, any) in configs {
        if name != LOCAL_RATE_LIMIT_FILTER {
            p.add(format!(
                "{at}: typed_per_filter_config {name:?} is not supported (only {LOCAL_RATE_LIMIT_FILTER})"
            ));
            continue;
        }
        let mut l = match unpack::<LocalRateLimit>(&any) {
            Ok(l) => l,
            Err(e) => {
                p.add(format!("{at}: typed_per_filter_config {name:?} {e}"));
                continue;
            }
        };
        let at = format!("{at}: local_ratelimit");
        l.stat_prefix.clear();
        for f in [l.filter_enabled.take(), l.filter_enforced.take()] {
            let all = f
                .as_ref()
                .and_then(|f| f.default_value.as_ref())
                .is_some_and(|v| millionths(Some(*v), &at, p) == 1_000_000);
            if !all {
                p.add(format!(
                    "{at}: filter_enabled and filter_enforced must be 100%"
                ));
            }
        }
        let Some(bucket) = l.token_bucket.take() else {
            p.add(format!("{at}: token_bucket is required"));
            continue;
        };
        let fill_interval = bucket.fill_interval.as_ref().and_then(duration);
        let Some(fill_interval) = fill_interval.filter(|d| !d.is_zero()) else {
            p.add(format!("{at}: token_bucket.fill_interval must be above 0"));
            continue;
        };
        let headers = edits(
            std::mem::take(&mut l.response_headers_to_add),
            Vec::new(),
            &format!("{at}.response_headers_to_add"),
            p,
        );
        p.leftover(&at, &l);
        out = Some(RateLimitSpec {
            max_tokens: bucket.max_tokens,
            tokens_per_fill: bucket.tokens_per_fill.map_or(1, |t| t.value),
            fill_interval,
            response_headers: headers,
        });
    }
    out
}

//! Three Envoy features beyond routing → specs: the CORS filter's per-route `CorsPolicy`
//! (`typed_per_filter_config` `envoy.filters.http.cors`), a route action's
//! `request_mirror_policies`, and our service-degradation fallback, a local-reply
//! `ResponseMapper` in a cluster's `metadata.typed_filter_metadata["hostmesh.io/fallback"]`.
//! Each function takes what it understands out of the message; the caller reports whatever
//! is left as unsupported.

use envoy_types::pb::envoy::config::accesslog::v3::access_log_filter::FilterSpecifier;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::route::v3::{Route, RouteAction};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::ResponseMapper;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

use super::super::wire::{Problems, unpack};
use super::route_policy::{edits, millionths};
use crate::config::spec::{CorsSpec, FallbackSpec, HeaderValueSpec, MirrorSpec};

pub const CORS_FILTER: &str = "envoy.filters.http.cors";
pub const FALLBACK_METADATA: &str = "hostmesh.io/fallback";
/// The response flags a fallback may answer.
const FALLBACK_FLAGS: [&str; 2] = ["UO", "UH"];

/// Takes the CORS filter's entry out of the route's per-filter configs.
pub fn cors(r: &mut Route, at: &str, p: &mut Problems<'_>) -> Option<CorsSpec> {
    let any = r.typed_per_filter_config.remove(CORS_FILTER)?;
    let at = format!("{at}: cors");
    let mut c = match unpack::<CorsPolicy>(&any) {
        Ok(c) => c,
        Err(e) => {
            p.add(format!("{at} {e}"));
            return None;
        }
    };
    let mut allow_origins = Vec::new();
    for sm in std::mem::take(&mut c.allow_origin_string_match) {
        let value = match sm.match_pattern {
            _ if sm.ignore_case => None,
            Some(MatchPattern::Exact(v)) => Some(HeaderValueSpec::Exact(v)),
            Some(MatchPattern::Prefix(v)) => Some(HeaderValueSpec::Prefix(v)),
            Some(MatchPattern::SafeRegex(re)) => Some(HeaderValueSpec::Regex(re.regex)),
            _ => None,
        };
        match value {
            Some(v) => allow_origins.push(v),
            None => p.add(format!(
                "{at}.allow_origin_string_match: only exact, prefix and safe_regex (case-sensitive) are supported"
            )),
        }
    }
    let enabled = c
        .filter_enabled
        .take()
        .and_then(|f| f.default_value)
        .is_none_or(|v| millionths(Some(v), &at, p) == 1_000_000);
    if !enabled {
        p.add(format!("{at}: filter_enabled must be 100% (or unset)"));
    }
    let spec = CorsSpec {
        allow_origins,
        allow_methods: std::mem::take(&mut c.allow_methods),
        allow_headers: std::mem::take(&mut c.allow_headers),
        expose_headers: std::mem::take(&mut c.expose_headers),
        max_age: std::mem::take(&mut c.max_age),
        allow_credentials: c.allow_credentials.take().is_some_and(|b| b.value),
        forward_not_matching_preflights: c
            .forward_not_matching_preflights
            .take()
            .is_none_or(|b| b.value),
    };
    p.leftover(&at, &c);
    Some(spec)
}

/// Takes the route action's mirror policies.
pub fn mirrors(a: &mut RouteAction, at: &str, p: &mut Problems<'_>) -> Vec<MirrorSpec> {
    let mut out = Vec::new();
    for (i, mut m) in std::mem::take(&mut a.request_mirror_policies)
        .into_iter()
        .enumerate()
    {
        let at = format!("{at}.request_mirror_policies[{i}]");
        let cluster = std::mem::take(&mut m.cluster);
        if cluster.is_empty() {
            p.add(format!(
                "{at}: only a named cluster is supported (not cluster_header)"
            ));
        }
        let share = match m.runtime_fraction.take() {
            None => 1_000_000,
            Some(f) => millionths(f.default_value, &at, p),
        };
        // Tracing is not implemented: the sampling decision changes nothing.
        m.trace_sampled = None;
        p.leftover(&at, &m);
        out.push(MirrorSpec { cluster, share });
    }
    out
}

/// Takes the fallback out of the cluster's typed metadata (the rest of the metadata is
/// informational and left to the caller).
pub fn fallback(c: &mut Cluster, p: &mut Problems<'_>) -> Option<FallbackSpec> {
    let any = c
        .metadata
        .as_mut()?
        .typed_filter_metadata
        .remove(FALLBACK_METADATA)?;
    let at = format!("metadata {FALLBACK_METADATA:?}");
    let mut m = match unpack::<ResponseMapper>(&any) {
        Ok(m) => m,
        Err(e) => {
            p.add(format!("{at} {e}"));
            return None;
        }
    };
    let flags = match m.filter.take().and_then(|f| f.filter_specifier) {
        Some(FilterSpecifier::ResponseFlagFilter(f))
            if !f.flags.is_empty() && f.flags.iter().all(|x| FALLBACK_FLAGS.contains(&x.as_str())) =>
        {
            f.flags
        }
        _ => {
            p.add(format!(
                "{at}: filter must be a response_flag_filter of UO and/or UH"
            ));
            return None;
        }
    };
    let body = match m.body.take().and_then(|b| b.specifier) {
        None => Vec::new(),
        Some(Specifier::InlineString(s)) => s.into_bytes(),
        Some(Specifier::InlineBytes(b)) => b,
        Some(_) => {
            p.add(format!(
                "{at}.body: only inline_string and inline_bytes are supported"
            ));
            Vec::new()
        }
    };
    let headers = edits(
        std::mem::take(&mut m.headers_to_add),
        Vec::new(),
        &format!("{at}.headers_to_add"),
        p,
    );
    let status = m.status_code.take().map(|s| s.value);
    p.leftover(&at, &m);
    Some(FallbackSpec {
        flags,
        status,
        headers,
        body,
    })
}

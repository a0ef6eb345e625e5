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
            if !f.flags.is_empty()
                && f.flags.iter().all(|x| FALLBACK_FLAGS.contains(&x.as_str())) =>
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::accesslog::v3::{AccessLogFilter, ResponseFlagFilter};
    use envoy_types::pb::envoy::config::core::v3::{
        DataSource, Metadata, RuntimeFractionalPercent, SubstitutionFormatString,
    };
    use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
    use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };
    use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
    use envoy_types::util::pack_any;

    use super::*;
    use crate::xds::wire::Rejection;

    fn messages(out: &[Rejection]) -> Vec<String> {
        out.iter().map(ToString::to_string).collect()
    }

    fn exact(v: &str, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            match_pattern: Some(MatchPattern::Exact(v.into())),
            ignore_case,
        }
    }

    #[test]
    fn a_cors_policy_becomes_a_spec_and_unsupported_fields_are_named() {
        let policy = CorsPolicy {
            allow_origin_string_match: vec![exact("https://a.example", false)],
            allow_methods: "GET,POST".into(),
            expose_headers: "x-trace".into(),
            max_age: "600".into(),
            allow_credentials: Some(BoolValue { value: true }),
            ..Default::default()
        };
        let mut r = Route {
            typed_per_filter_config: HashMap::from([(CORS_FILTER.to_owned(), pack_any(policy))]),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut p = Problems::new("RouteConfiguration", "80", &mut out);
        let c = cors(&mut r, "route", &mut p).unwrap();
        assert!(r.typed_per_filter_config.is_empty(), "taken out");
        assert!(
            matches!(&c.allow_origins[..], [HeaderValueSpec::Exact(o)] if o == "https://a.example")
        );
        assert_eq!(
            (c.allow_methods.as_str(), c.max_age.as_str()),
            ("GET,POST", "600")
        );
        assert!(c.allow_credentials && c.forward_not_matching_preflights);
        assert!(out.is_empty(), "{out:?}");

        let policy = CorsPolicy {
            allow_origin_string_match: vec![exact("https://a.example", true)],
            shadow_enabled: Some(RuntimeFractionalPercent::default()),
            forward_not_matching_preflights: Some(BoolValue { value: false }),
            ..Default::default()
        };
        let mut r = Route {
            typed_per_filter_config: HashMap::from([(CORS_FILTER.to_owned(), pack_any(policy))]),
            ..Default::default()
        };
        let mut p = Problems::new("RouteConfiguration", "80", &mut out);
        let c = cors(&mut r, "route", &mut p).unwrap();
        assert!(!c.forward_not_matching_preflights);
        let got = messages(&out).join("\n");
        assert!(
            got.contains("route: cors.allow_origin_string_match: only exact"),
            "{got}"
        );
        assert!(got.contains("cors: field(s) 8 of"), "{got}");
    }

    #[test]
    fn mirror_policies_keep_cluster_and_share() {
        let fraction = |numerator, d: DenominatorType| RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator,
                denominator: d as i32,
            }),
            runtime_key: String::new(),
        };
        let mut a = RouteAction {
            request_mirror_policies: vec![
                RequestMirrorPolicy {
                    cluster: "outbound|80|v2|shop".into(),
                    runtime_fraction: Some(fraction(25, DenominatorType::Hundred)),
                    trace_sampled: Some(BoolValue { value: false }),
                    ..Default::default()
                },
                RequestMirrorPolicy {
                    cluster: "outbound|80||other".into(),
                    ..Default::default()
                },
                RequestMirrorPolicy {
                    cluster_header: "x-mirror".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut p = Problems::new("RouteConfiguration", "80", &mut out);
        let m = mirrors(&mut a, "route", &mut p);
        assert_eq!(
            m.iter()
                .map(|m| (m.cluster.as_str(), m.share))
                .take(2)
                .collect::<Vec<_>>(),
            [
                ("outbound|80|v2|shop", 250_000),
                ("outbound|80||other", 1_000_000)
            ]
        );
        let got = messages(&out).join("\n");
        assert!(
            got.contains("request_mirror_policies[2]: only a named cluster"),
            "{got}"
        );
        assert!(got.contains("cluster_header"), "{got}");
    }

    fn with_fallback(m: ResponseMapper) -> Cluster {
        Cluster {
            metadata: Some(Metadata {
                typed_filter_metadata: HashMap::from([(FALLBACK_METADATA.to_owned(), pack_any(m))]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn flags(f: &[&str]) -> Option<AccessLogFilter> {
        Some(AccessLogFilter {
            filter_specifier: Some(FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter {
                flags: f.iter().map(|s| (*s).to_owned()).collect(),
            })),
        })
    }

    #[test]
    fn a_fallback_response_mapper_in_cluster_metadata_becomes_a_spec() {
        let mut c = with_fallback(ResponseMapper {
            filter: flags(&["UO", "UH"]),
            status_code: Some(UInt32Value { value: 200 }),
            body: Some(DataSource {
                specifier: Some(Specifier::InlineString("[]".into())),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut out = Vec::new();
        let mut p = Problems::new("Cluster", "outbound|80||shop", &mut out);
        let f = fallback(&mut c, &mut p).unwrap();
        assert_eq!(
            (f.flags.len(), f.status, f.body.as_slice()),
            (2, Some(200), &b"[]"[..])
        );
        assert!(out.is_empty(), "{out:?}");

        let mut c = with_fallback(ResponseMapper {
            filter: flags(&["UF"]),
            ..Default::default()
        });
        let mut p = Problems::new("Cluster", "outbound|80||shop", &mut out);
        assert!(fallback(&mut c, &mut p).is_none());
        let mut c = with_fallback(ResponseMapper {
            filter: flags(&["UH"]),
            body_format_override: Some(SubstitutionFormatString::default()),
            ..Default::default()
        });
        let mut p = Problems::new("Cluster", "outbound|80||shop", &mut out);
        fallback(&mut c, &mut p);
        let got = messages(&out).join("\n");
        assert!(
            got.contains("response_flag_filter of UO and/or UH"),
            "{got}"
        );
        assert!(got.contains("field(s) 4 of"), "{got}");
    }
}

//! Two `VirtualService` HTTP route features as Envoy route fields, the way Istio translates
//! them:
//!
//! - `corsPolicy` → the CORS filter's per-route `CorsPolicy` (`typed_per_filter_config`
//!   `envoy.filters.http.cors`): `allowOrigins` as string matchers (the deprecated
//!   `allowOrigin` as exact ones), methods and headers joined with `,`, `maxAge` in whole
//!   seconds, `allowCredentials`, the filter enabled for every request, and
//!   `unmatchedPreflights: IGNORE` as `forward_not_matching_preflights: false` (unset or
//!   `FORWARD`: Envoy's default, forwarded).
//! - `mirror` with `mirrorPercentage` (or the deprecated `mirrorPercent`), and each of
//!   `mirrors` with its `percentage` → `RouteAction.request_mirror_policies` (cluster +
//!   `runtime_fraction` in millionths; unset: every request; 0: no mirror).
//!
//! Must not look at clusters or listeners (the caller places what this returns).

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

use super::names::CORS_FILTER;
use super::proto::{bool_value, parse_duration};
use super::route::{destination_cluster, string_matcher};
use super::view::View;
use crate::model::PortNumber;
use crate::model::config::VirtualService;
use crate::model::istio::networking::{HttpRoute, Percent, StringMatch};

/// The route's CORS policy as the CORS filter's per-route config, when it has one.
pub fn cors(http: &HttpRoute) -> Option<(String, Any)> {
    let c = http.cors_policy.as_ref()?;
    let origins: Vec<StringMatch> = if c.allow_origins.is_empty() {
        c.allow_origin
            .iter()
            .map(|o| StringMatch {
                exact: Some(o.clone()),
                ..Default::default()
            })
            .collect()
    } else {
        c.allow_origins.clone()
    };
    let policy = EnvoyCors {
        allow_origin_string_match: origins.iter().filter_map(string_matcher).collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_deref()
            .and_then(parse_duration)
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.and_then(bool_value),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: DenominatorType::Hundred as i32,
            }),
            runtime_key: String::new(),
        }),
        forward_not_matching_preflights: (c.unmatched_preflights.as_deref() == Some("IGNORE"))
            .then_some(false)
            .and_then(bool_value),
        ..Default::default()
    };
    Some((CORS_FILTER.to_owned(), pack_any(policy)))
}

/// The route's mirror policies: `mirror` (with `mirrorPercentage`) first, then `mirrors`.
pub fn mirrors(
    view: &View<'_>,
    vs: &VirtualService,
    http: &HttpRoute,
    port: PortNumber,
) -> Vec<RequestMirrorPolicy> {
    let mut out = Vec::new();
    if let Some(dest) = &http.mirror {
        let percent = match (&http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => share(Some(p)),
            (None, Some(whole)) => f64::from(whole.min(100)),
            (None, None) => 100.0,
        };
        out.extend(policy(view, vs, dest, port, percent));
    }
    for m in &http.mirrors {
        if let Some(dest) = &m.destination {
            out.extend(policy(view, vs, dest, port, share(m.percentage.as_ref())));
        }
    }
    out
}

/// Istio's percentage (0–100); unset → every request.
fn share(p: Option<&Percent>) -> f64 {
    p.and_then(|p| p.value).unwrap_or(100.0).clamp(0.0, 100.0)
}

fn policy(
    view: &View<'_>,
    vs: &VirtualService,
    dest: &crate::model::istio::networking::Destination,
    port: PortNumber,
    percent: f64,
) -> Option<RequestMirrorPolicy> {
    // Istio sends no mirror policy for 0 %.
    if percent <= 0.0 {
        return None;
    }
    // Clamped to 0..=100, so the product fits in u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let numerator = (percent * 10_000.0).round() as u32;
    Some(RequestMirrorPolicy {
        cluster: destination_cluster(view, vs, dest, port)?,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator,
                denominator: DenominatorType::Million as i32,
            }),
            runtime_key: String::new(),
        }),
        trace_sampled: bool_value(false),
        ..Default::default()
    })
}

//! [`CorsSpec`], [`MirrorSpec`] and [`FallbackSpec`] → [`Cors`], [`Mirror`], [`Fallback`]:
//! origin regexes compiled, header values checked, mirror clusters resolved, the fallback's
//! flags and status checked.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;

use super::super::cluster::Cluster;
use super::super::l7::{Cors, Fallback, Mirror};
use super::super::spec::{CorsSpec, FallbackSpec, MirrorSpec};
use super::route_policy::edits;
use super::{Problems, value_match};

pub(super) fn cors(spec: &CorsSpec, at: &str, problems: &mut Problems) -> Option<Cors> {
    let before = problems.0.len();
    let origins = spec
        .allow_origins
        .iter()
        .filter_map(|o| value_match(o, at, problems))
        .collect();
    let mut value = |field: &str, v: &str| {
        if v.is_empty() {
            return None;
        }
        HeaderValue::from_str(v)
            .map_err(|_| problems.add(at, format!("CORS {field} {v:?} is not a header value")))
            .ok()
    };
    let cors = Cors {
        origins,
        allow_methods: value("allow_methods", &spec.allow_methods),
        allow_headers: value("allow_headers", &spec.allow_headers),
        expose_headers: value("expose_headers", &spec.expose_headers),
        max_age: value("max_age", &spec.max_age),
        allow_credentials: spec.allow_credentials,
        forward_not_matching_preflights: spec.forward_not_matching_preflights,
    };
    if !spec.max_age.is_empty() && spec.max_age.parse::<u64>().is_err() {
        problems.add(
            at,
            format!("CORS max_age {:?} is not whole seconds", spec.max_age),
        );
    }
    (problems.0.len() == before).then_some(cors)
}

pub(super) fn mirrors(
    specs: &[MirrorSpec],
    clusters: &HashMap<&str, Arc<Cluster>>,
    at: &str,
    problems: &mut Problems,
) -> Vec<Mirror> {
    specs
        .iter()
        .filter_map(|m| match clusters.get(m.cluster.as_str()) {
            Some(c) => Some(Mirror {
                cluster: c.clone(),
                share: m.share.min(1_000_000),
            }),
            None => {
                problems.add(at, format!("mirror cluster {:?} does not exist", m.cluster));
                None
            }
        })
        .collect()
}

pub(super) fn fallback(spec: &FallbackSpec, at: &str, problems: &mut Problems) -> Option<Fallback> {
    let before = problems.0.len();
    let (mut overflow, mut no_healthy) = (false, false);
    for f in &spec.flags {
        match f.as_str() {
            "UO" => overflow = true,
            "UH" => no_healthy = true,
            other => problems.add(
                at,
                format!("fallback for response flag {other:?} is not supported (UO, UH)"),
            ),
        }
    }
    let status = spec.status.map(|s| {
        u16::try_from(s)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| s.as_u16() >= 200)
            .unwrap_or_else(|| {
                problems.add(
                    at,
                    format!("fallback status {s} is not an HTTP status (200-599)"),
                );
                StatusCode::SERVICE_UNAVAILABLE
            })
    });
    let headers = edits(&spec.headers, at, problems);
    (problems.0.len() == before).then(|| Fallback {
        overflow,
        no_healthy,
        status,
        headers,
        body: Bytes::from(spec.body.clone()),
    })
}

//! Service degradation (our extension, `model::fallback`): the `DestinationRule` annotation
//! `traffic.hostmesh.io/fallback` becomes, on each of the host's clusters (every port and
//! subset), `metadata.typed_filter_metadata["hostmesh.io/fallback"]` holding Envoy's own
//! local-reply `ResponseMapper`: a response-flag filter (`UO`, `UH`), the status, the static
//! body and the headers to add. The hostmesh proxy answers a request that ends with one of
//! those flags at that cluster with it; a stock Envoy ignores the metadata (and answers its
//! usual 503). Must not look at routes or listeners.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLogFilter, ResponseFlagFilter, access_log_filter::FilterSpecifier,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, Metadata, data_source::Specifier,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::ResponseMapper;
use envoy_types::util::pack_any;

use super::names::FALLBACK_METADATA;
use super::proto::u32_value;
use crate::model::config::DestinationRule;
use crate::model::fallback::{FALLBACK_ANNOTATION, Fallback};

/// The response flags a fallback answers: circuit breaker open, no healthy endpoint.
pub const FALLBACK_FLAGS: [&str; 2] = ["UO", "UH"];

/// Sets the fallback metadata on `c` when the rule carries the annotation.
pub fn apply(dr: Option<&DestinationRule>, c: &mut Cluster) {
    let Some(text) = dr.and_then(|dr| dr.meta.annotations.get(FALLBACK_ANNOTATION)) else {
        return;
    };
    // Validation refused malformed values.
    let Ok(f) = Fallback::parse(text) else { return };
    let mapper = ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter {
                flags: FALLBACK_FLAGS.iter().map(|f| (*f).to_owned()).collect(),
            })),
        }),
        status_code: u32_value(u32::from(f.status)),
        body: Some(DataSource {
            specifier: Some(Specifier::InlineString(f.body)),
            ..Default::default()
        }),
        headers_to_add: f
            .headers
            .into_iter()
            .map(|(key, value)| HeaderValueOption {
                header: Some(HeaderValue {
                    key,
                    value,
                    ..Default::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    c.metadata = Some(Metadata {
        typed_filter_metadata: HashMap::from([(FALLBACK_METADATA.to_owned(), pack_any(mapper))]),
        ..Default::default()
    });
}

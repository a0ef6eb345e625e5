//! Transport sockets: Istio mTLS toward meshed upstreams (SDS secrets `default`/`ROOTCA`, the
//! ALPN list of the protocol, exact URI SAN matchers), mTLS termination on the inbound side,
//! and plaintext.

use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    UpstreamTlsContext, common_tls_context, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::util::pack_any;

use super::names::{
    INBOUND_ALPN, RAW_BUFFER_TRANSPORT_SOCKET, SDS_DEFAULT, SDS_ROOTCA, TLS_TRANSPORT_SOCKET,
    upstream_alpn,
};
use super::proto::{bool_value, sds_secret, transport_socket};
use crate::model::{Protocol, TrustDomain};

fn uri_san(pattern: MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        }),
        oid: String::new(),
    }
}

/// The workload certificate and the trust bundle from SDS, peers checked by URI SAN.
fn common(alpn: &[&str], sans: Vec<SubjectAltNameMatcher>) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds_secret(SDS_DEFAULT)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds_secret(SDS_ROOTCA)),
                    ..Default::default()
                },
            ),
        ),
        alpn_protocols: alpn.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// Istio mTLS toward an upstream speaking `protocol`, accepting exactly the given SANs
/// (sorted and deduplicated by the caller).
pub fn upstream_mtls(protocol: Protocol, sans: &[String], sni: String) -> TransportSocket {
    let sans = sans
        .iter()
        .map(|s| uri_san(MatchPattern::Exact(s.clone())))
        .collect();
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common(upstream_alpn(protocol), sans)),
        sni,
        ..Default::default()
    };
    transport_socket(TLS_TRANSPORT_SOCKET, pack_any(ctx))
}

/// mTLS termination for the inbound listener: a client certificate is required and must
/// carry a SPIFFE ID of the trust domain; ALPN server preference `h2, http/1.1, istio`.
pub fn downstream_mtls(trust_domain: &TrustDomain) -> TransportSocket {
    let sans = vec![uri_san(MatchPattern::Prefix(format!(
        "{}/",
        trust_domain.uri()
    )))];
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(common(&INBOUND_ALPN, sans)),
        require_client_certificate: bool_value(true),
        ..Default::default()
    };
    transport_socket(TLS_TRANSPORT_SOCKET, pack_any(ctx))
}

/// Plaintext, for `transport_socket_matches` that must name a socket explicitly.
pub fn raw_buffer() -> TransportSocket {
    transport_socket(RAW_BUFFER_TRANSPORT_SOCKET, pack_any(RawBuffer {}))
}

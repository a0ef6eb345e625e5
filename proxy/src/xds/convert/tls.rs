//! Transport sockets: Istio mutual TLS toward upstreams (`UpstreamTlsContext` → the SPIFFE IDs
//! the server must present), mutual TLS termination inbound (`DownstreamTlsContext`), and
//! plaintext (`raw_buffer`).
//!
//! The proxy always presents this host's certificate and trusts the mesh's roots, so the SDS
//! secrets must be Istio's `default` (certificate) and `ROOTCA` (roots); its ALPN lists are
//! Istio's, so the resource's must be one of them.

use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    UpstreamTlsContext, common_tls_context::ValidationContextType, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use prost::Name;

use super::super::wire::{Problems, unpack};
use crate::config::spec::UpstreamTlsSpec;

const SDS_CERTIFICATE: &str = "default";
const SDS_ROOTS: &str = "ROOTCA";

/// The ALPN lists a client may announce (Istio's, by protocol; empty lets the proxy choose).
const UPSTREAM_ALPN: [&[&str]; 4] = [
    &[],
    &["istio-http/1.1", "istio", "http/1.1"],
    &["istio-h2", "istio", "h2"],
    &["istio"],
];
/// What the inbound side offers (server preference).
const DOWNSTREAM_ALPN: [&[&str]; 2] = [&[], &["h2", "http/1.1", "istio"]];

/// What a transport socket asks for.
#[derive(Debug, Clone)]
pub enum Socket {
    Plaintext,
    Upstream(UpstreamTlsSpec),
    /// Mutual TLS termination (inbound).
    Downstream,
}

/// Converts `ts`; `at` names where it sits (e.g. `transport_socket`).
pub fn socket(
    ts: &TransportSocket,
    trust_domain: &str,
    at: &str,
    p: &mut Problems<'_>,
) -> Option<Socket> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        p.add(format!("{at}: {:?} has no typed_config", ts.name));
        return None;
    };
    if any.type_url == RawBuffer::type_url() {
        return Some(Socket::Plaintext);
    }
    if any.type_url == UpstreamTlsContext::type_url() {
        let ctx = match unpack::<UpstreamTlsContext>(any) {
            Ok(c) => c,
            Err(e) => {
                p.add(format!("{at}: {e}"));
                return None;
            }
        };
        return upstream(ctx, &format!("{at}.UpstreamTlsContext"), p).map(Socket::Upstream);
    }
    if any.type_url == DownstreamTlsContext::type_url() {
        let ctx = match unpack::<DownstreamTlsContext>(any) {
            Ok(c) => c,
            Err(e) => {
                p.add(format!("{at}: {e}"));
                return None;
            }
        };
        let at = format!("{at}.DownstreamTlsContext");
        return downstream(ctx, trust_domain, &at, p).then_some(Socket::Downstream);
    }
    p.add(format!(
        "{at}: transport socket {:?} ({}) is not supported",
        ts.name, any.type_url
    ));
    None
}

fn upstream(
    mut ctx: UpstreamTlsContext,
    at: &str,
    p: &mut Problems<'_>,
) -> Option<UpstreamTlsSpec> {
    let before = p.count();
    // The proxy sends no SNI (Istio peers never require it).
    ctx.sni.clear();
    let common = ctx.common_tls_context.take().unwrap_or_default();
    p.leftover(at, &ctx);
    let sans = common_context(common, &UPSTREAM_ALPN, at, p, Matcher::Exact)?;
    if sans.is_empty() {
        p.add(format!(
            "{at}: match_typed_subject_alt_names is empty; the proxy verifies the server's SPIFFE ID and needs at least one"
        ));
    }
    (p.count() == before).then_some(UpstreamTlsSpec::Mtls {
        expected_identities: sans,
    })
}

fn downstream(
    mut ctx: DownstreamTlsContext,
    trust_domain: &str,
    at: &str,
    p: &mut Problems<'_>,
) -> bool {
    let before = p.count();
    if ctx.require_client_certificate.take().map(|b| b.value) != Some(true) {
        p.add(format!(
            "{at}: require_client_certificate must be true (the inbound side always requires a client certificate)"
        ));
    }
    // Stapling only matters when a staple is configured; none can be.
    ctx.ocsp_staple_policy = 0;
    let common = ctx.common_tls_context.take().unwrap_or_default();
    p.leftover(at, &ctx);
    if let Some(prefixes) = common_context(common, &DOWNSTREAM_ALPN, at, p, Matcher::Prefix) {
        let own = format!("spiffe://{trust_domain}/");
        for prefix in prefixes.iter().filter(|s| **s != own) {
            p.add(format!(
                "{at}: subject alt name prefix {prefix:?} is not supported (the inbound side accepts any identity of {own:?})"
            ));
        }
    }
    p.count() == before
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Matcher {
    Exact,
    Prefix,
}

/// Checks the certificate, roots and ALPN parts; returns the URI SAN values matched.
fn common_context(
    mut c: CommonTlsContext,
    alpn: &[&[&str]],
    at: &str,
    p: &mut Problems<'_>,
    matcher: Matcher,
) -> Option<Vec<String>> {
    let at = format!("{at}.common_tls_context");
    let before = p.count();
    for secret in std::mem::take(&mut c.tls_certificate_sds_secret_configs) {
        sds(
            &secret,
            SDS_CERTIFICATE,
            "tls_certificate_sds_secret_configs",
            &at,
            p,
        );
    }
    let offered = std::mem::take(&mut c.alpn_protocols);
    if !alpn.iter().any(|list| list.iter().eq(offered.iter())) {
        p.add(format!(
            "{at}: alpn_protocols {offered:?} is not supported (the proxy offers Istio's lists)"
        ));
    }
    let mut sans = Vec::new();
    match c.validation_context_type.take() {
        None => {}
        Some(ValidationContextType::ValidationContext(v)) => {
            sans = validation(v, &at, p, matcher);
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            sds(
                &s,
                SDS_ROOTS,
                "validation_context_sds_secret_config",
                &at,
                p,
            );
        }
        Some(ValidationContextType::CombinedValidationContext(mut combined)) => {
            if let Some(s) = combined.validation_context_sds_secret_config.take() {
                sds(
                    &s,
                    SDS_ROOTS,
                    "validation_context_sds_secret_config",
                    &at,
                    p,
                );
            }
            if let Some(v) = combined.default_validation_context.take() {
                sans = validation(v, &at, p, matcher);
            }
            p.leftover(&format!("{at}.combined_validation_context"), &combined);
        }
        Some(_) => p.add(format!(
            "{at}: validation_context_type is not supported (certificate providers)"
        )),
    }
    p.leftover(&at, &c);
    (p.count() == before).then_some(sans)
}

fn sds(s: &SdsSecretConfig, want: &str, field: &str, at: &str, p: &mut Problems<'_>) {
    if s.name != want {
        p.add(format!(
            "{at}.{field}: secret {:?} is not supported (the proxy provides {want:?} itself)",
            s.name
        ));
    }
}

fn validation(
    mut v: CertificateValidationContext,
    at: &str,
    p: &mut Problems<'_>,
    matcher: Matcher,
) -> Vec<String> {
    let at = format!("{at}.validation_context");
    let mut out = Vec::new();
    for m in std::mem::take(&mut v.match_typed_subject_alt_names) {
        let uri = m.san_type == subject_alt_name_matcher::SanType::Uri as i32;
        let pattern = m
            .matcher
            .as_ref()
            .filter(|sm| !sm.ignore_case)
            .and_then(|sm| sm.match_pattern.as_ref());
        match (uri, pattern, matcher) {
            (true, Some(MatchPattern::Exact(s)), Matcher::Exact)
            | (true, Some(MatchPattern::Prefix(s)), Matcher::Prefix) => out.push(s.clone()),
            _ => p.add(format!(
                "{at}.match_typed_subject_alt_names: {m:?} is not supported (only {} URI matchers)",
                if matcher == Matcher::Exact {
                    "exact"
                } else {
                    "prefix"
                }
            )),
        }
    }
    // VERIFY_TRUST_CHAIN is 0, the proxy's only behaviour.
    p.leftover(&at, &v);
    out
}

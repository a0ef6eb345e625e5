//! rustls plumbing for SPIFFE identities: verifiers that check a peer's chain against the
//! trust domain's roots and read its SPIFFE ID from the URI SAN (never from a DNS name), and a
//! certificate holder that can be swapped while connections are open, so rotation does not
//! need a restart.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{SpiffeId, TrustDomain};

/// The crypto provider used everywhere in hostmesh: aws-lc-rs with its default suites, AES-128-GCM
/// first (as Envoy's BoringSSL orders them). A handshake's key schedule then runs on SHA-256
/// (with the CPU's SHA instructions where it has them) rather than SHA-384, and bulk data
/// takes 10 AES rounds rather than 14; both are safe choices for mesh traffic.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// A TLS setup problem (bad PEM, a key that rustls cannot use).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// The trust anchors of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
}

impl TrustBundle {
    pub fn new(trust_domain: TrustDomain, roots: &[CertificateDer<'_>]) -> Result<Self, TlsError> {
        let anchors = roots
            .iter()
            .map(|r| {
                webpki::anchor_from_trusted_cert(r)
                    .map(|a| a.to_owned())
                    .map_err(|e| TlsError::Pem {
                        what: "root certificate",
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if anchors.is_empty() {
            return Err(TlsError::Pem {
                what: "root certificates",
                reason: "none given".into(),
            });
        }
        Ok(Self {
            trust_domain,
            anchors: Arc::new(anchors),
        })
    }

    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, TlsError> {
        Self::new(trust_domain, &certs_from_pem("root certificates", pem)?)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Verifies a presented chain for `usage` and returns the SPIFFE ID of its leaf, which must
    /// be in this bundle's trust domain.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            algorithms().all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(pki_error)?;
        let id = spiffe_id_of(end_entity).ok_or_else(|| {
            rustls::Error::General("peer certificate carries no SPIFFE ID URI SAN".into())
        })?;
        if id.trust_domain() != &self.trust_domain {
            return Err(rustls::Error::General(format!(
                "peer identity {id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        Ok(id)
    }
}

/// The signature algorithms of the provider, built once (a provider is not free to make, and
/// every handshake asks).
fn algorithms() -> WebPkiSupportedAlgorithms {
    static ALGORITHMS: std::sync::LazyLock<WebPkiSupportedAlgorithms> =
        std::sync::LazyLock::new(|| {
            rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
        });
    *ALGORITHMS
}

/// The handshake-signature checks, the same on both sides of a connection.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            algorithms().supported_schemes()
        }
    };
}

fn pki_error(e: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    rustls::Error::InvalidCertificate(match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        other => C::Other(rustls::OtherError(Arc::new(other))),
    })
}

/// The SPIFFE ID in a certificate's URI SAN, if it has exactly one that parses.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Option<SpiffeId> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let uris = crate::store::spiffe_uris(&parsed);
    match uris.as_slice() {
        [one] => one.parse().ok(),
        _ => None,
    }
}

/// What a client expects of the server it talks to.
#[derive(Debug, Clone)]
pub enum ExpectedServer {
    /// Exactly this identity.
    Identity(SpiffeId),
    /// Any one of these (a service may run under several service accounts).
    AnyOf(Arc<[SpiffeId]>),
    /// Any identity of the bundle's trust domain.
    AnyInTrustDomain,
}

/// Client side: verifies the server by its SPIFFE ID. The TLS server name is ignored: mesh
/// peers are named by identity, not by DNS.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundle: TrustBundle,
    expected: ExpectedServer,
}

impl SpiffeServerVerifier {
    pub fn new(bundle: TrustBundle, expected: ExpectedServer) -> Arc<Self> {
        Arc::new(Self { bundle, expected })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self.bundle.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        match &self.expected {
            ExpectedServer::Identity(want) if *want != id => Err(rustls::Error::General(format!(
                "server identity is {id}, expected {want}"
            ))),
            ExpectedServer::AnyOf(wanted) if !wanted.contains(&id) => {
                Err(rustls::Error::General(format!(
                    "server identity is {id}, expected one of {}",
                    wanted
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    handshake_signatures!();
}

/// Server side: verifies a client's certificate chain and trust domain. With `mandatory` off,
/// clients without a certificate are let through (the CA service accepts join tokens from
/// hosts that have no certificate yet).
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundle: TrustBundle,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    pub fn new(bundle: TrustBundle, mandatory: bool) -> Arc<Self> {
        Arc::new(Self { bundle, mandatory })
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.bundle.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// This process's own certificate and key, replaceable at any time: handshakes after
/// [`CertificateSlot::replace`] use the new certificate, open connections keep going.
#[derive(Default)]
pub struct CertificateSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl fmt::Debug for CertificateSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self
            .current()
            .and_then(|k| k.cert.first().and_then(spiffe_id_of));
        f.debug_tuple("CertificateSlot").field(&id).finish()
    }
}

impl CertificateSlot {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self(RwLock::new(Some(Arc::new(key)))))
    }

    pub fn replace(&self, key: CertifiedKey) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(key));
    }

    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl rustls::server::ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl rustls::client::ResolvesClientCert for CertificateSlot {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.current().is_some()
    }
}

/// Builds a rustls key from a PEM chain (leaf first) and a PEM private key.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = certs_from_pem("certificate chain", chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

pub fn certs_from_pem(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// A TLS 1.3/1.2 server config that presents `slot` and verifies clients with `verifier`.
pub fn server_config(
    slot: Arc<CertificateSlot>,
    verifier: Arc<SpiffeClientVerifier>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(slot);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client config that verifies the server with `verifier` and presents `slot`'s certificate
/// when it holds one.
pub fn client_config(
    slot: Option<Arc<CertificateSlot>>,
    verifier: Arc<SpiffeServerVerifier>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match slot {
        Some(slot) => builder.with_client_cert_resolver(slot),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

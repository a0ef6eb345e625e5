//! Issuing workload certificates from a loaded [`CertificateAuthority`].
//!
//! A leaf carries exactly one URI SAN (the SPIFFE ID the caller is allowed), an empty subject
//! (so the SAN is critical), EKU serverAuth + clientAuth, a random 128-bit serial, and a
//! validity of the requested TTL capped by the policy's maximum and by the CA's own expiry.

use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::csr::VerifiedCsr;
use crate::identity::SpiffeId;
use crate::store::{BACKDATE, CertificateAuthority};

/// Limits on what the CA issues.
#[derive(Debug, Clone, Copy)]
pub struct SigningPolicy {
    /// The longest lifetime a leaf may have.
    pub max_ttl: Duration,
    /// The lifetime used when the caller asks for none.
    pub default_ttl: Duration,
}

impl Default for SigningPolicy {
    fn default() -> Self {
        Self {
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl SigningPolicy {
    /// The lifetime granted for a request: the default when none (or a non-positive one) is
    /// asked for, else the request capped by the maximum.
    pub fn granted_ttl(&self, requested: Option<Duration>) -> Duration {
        match requested {
            Some(ttl) if !ttl.is_zero() => ttl.min(self.max_ttl),
            _ => self.default_ttl.min(self.max_ttl),
        }
    }
}

/// Why a signing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the CSR asks for {requested:?}, but the caller may only have {allowed}")]
    IdentityNotAllowed {
        requested: String,
        allowed: SpiffeId,
    },
    #[error("identity {id} is not in this CA's trust domain {trust_domain}")]
    WrongTrustDomain { id: SpiffeId, trust_domain: String },
    #[error("the CA expired at {0}; rotate the CA before issuing")]
    CaExpired(OffsetDateTime),
    #[error("building the certificate: {0}")]
    Build(#[from] rcgen::Error),
}

/// A signed chain: leaf first, root last.
#[derive(Debug, Clone)]
pub struct IssuedChain {
    pub chain_pem: Vec<String>,
    pub not_after: OffsetDateTime,
}

impl IssuedChain {
    /// The whole chain as one PEM text.
    pub fn to_pem(&self) -> String {
        self.chain_pem.concat()
    }
}

/// A certificate and the key this process made for it (the control server's own TLS identity).
#[derive(Debug)]
pub struct IssuedKeyPair {
    pub chain: IssuedChain,
    pub key_pem: String,
}

impl CertificateAuthority {
    /// Signs `csr` for `allowed`. The CSR may ask for that identity or for none; asking for any
    /// other URI is refused.
    pub fn sign(
        &self,
        csr: &VerifiedCsr,
        allowed: &SpiffeId,
        requested_ttl: Option<Duration>,
        policy: &SigningPolicy,
    ) -> Result<IssuedChain, SignError> {
        let allowed_uri = allowed.to_string();
        if let Some(other) = csr.requested_uris.iter().find(|u| **u != allowed_uri) {
            return Err(SignError::IdentityNotAllowed {
                requested: other.clone(),
                allowed: allowed.clone(),
            });
        }
        let key = rcgen::SubjectPublicKeyInfo::from_der(&csr.public_key_der)?;
        let ttl = policy.granted_ttl(requested_ttl);
        self.issue(&key, allowed, Vec::new(), ttl)
    }

    /// Issues a certificate with a fresh P-256 key made here, carrying `id` and `dns_names`:
    /// the control server's own serving identity.
    pub fn issue_with_new_key(
        &self,
        id: &SpiffeId,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<IssuedKeyPair, SignError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let extra = dns_names
            .iter()
            .map(|n| Ok(SanType::DnsName(n.as_str().try_into()?)))
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        let chain = self.issue(&key, id, extra, ttl)?;
        Ok(IssuedKeyPair {
            chain,
            key_pem: key.serialize_pem(),
        })
    }

    fn issue(
        &self,
        key: &impl PublicKeyData,
        id: &SpiffeId,
        extra_sans: Vec<SanType>,
        ttl: Duration,
    ) -> Result<IssuedChain, SignError> {
        if id.trust_domain() != &self.trust_domain {
            return Err(SignError::WrongTrustDomain {
                id: id.clone(),
                trust_domain: self.trust_domain.to_string(),
            });
        }
        let now = OffsetDateTime::now_utc();
        if now >= self.not_after {
            return Err(SignError::CaExpired(self.not_after));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        params.subject_alt_names.extend(extra_sans);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = (now + ttl).min(self.not_after);
        let cert = params.signed_by(key, &self.issuer)?;
        let mut chain_pem = Vec::with_capacity(self.chain_pem.len() + 1);
        chain_pem.push(cert.pem());
        chain_pem.extend(self.chain_pem.iter().cloned());
        Ok(IssuedChain {
            chain_pem,
            not_after: params.not_after,
        })
    }
}

/// 128 random bits; rcgen encodes them as a positive INTEGER (17 bytes at most, within
/// RFC 5280's 20).
fn random_serial() -> SerialNumber {
    let bytes: [u8; 16] = rand::random();
    SerialNumber::from_slice(&bytes)
}

//! Checking certificate signing requests before anything is signed: the PEM and DER shape, the
//! request's own signature, the key type and size, and the identities it asks for.
//!
//! Only the public key and the requested URI SANs leave this module; nothing else from a CSR is
//! ever copied into a certificate.

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::oid;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Why a CSR was refused. The text is what the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the CSR is not PEM (expected a \"CERTIFICATE REQUEST\" block)")]
    NotPem,
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    Malformed(String),
    #[error("the CSR's signature does not verify with its own public key (tampered or corrupt)")]
    BadSignature,
    #[error(
        "the CSR is signed with {0}, which is not accepted (SHA-1 and unknown algorithms are refused)"
    )]
    WeakSignature(String),
    #[error(
        "the CSR's key is {0}; accepted keys are ECDSA P-256 or P-384, Ed25519, and RSA of 2048 to 8192 bits"
    )]
    UnsupportedKey(String),
}

/// The kind of public key a CSR carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

/// A CSR whose signature verified and whose key is acceptable.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The SubjectPublicKeyInfo, DER.
    pub(crate) public_key_der: Vec<u8>,
    pub key: KeyKind,
    /// The URI SANs the request asks for (usually one SPIFFE ID, or none).
    pub requested_uris: Vec<String>,
}

impl VerifiedCsr {
    pub fn from_pem(pem: &str) -> Result<Self, CsrError> {
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| CsrError::NotPem)?;
        Self::from_der(der.as_ref())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(der)
            .map_err(|e| CsrError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::Malformed(
                "trailing bytes after the request".into(),
            ));
        }
        let info = &csr.certification_request_info;
        // The key first: an unsupported key is a clearer answer than a failed signature check.
        let key = key_kind(&info.subject_pki)?;
        check_signature_algorithm(&csr)?;
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        let mut requested_uris = Vec::new();
        if let Some(extensions) = csr.requested_extensions() {
            for ext in extensions {
                if let ParsedExtension::SubjectAlternativeName(san) = ext {
                    requested_uris.extend(san.general_names.iter().filter_map(|n| match n {
                        GeneralName::URI(uri) => Some((*uri).to_owned()),
                        _ => None,
                    }));
                }
            }
        }
        Ok(Self {
            public_key_der: info.subject_pki.raw.to_vec(),
            key,
            requested_uris,
        })
    }
}

fn check_signature_algorithm(csr: &X509CertificationRequest<'_>) -> Result<(), CsrError> {
    let alg = &csr.signature_algorithm.algorithm;
    let accepted = [
        oid!(1.2.840.10045.4.3.2),   // ecdsa-with-SHA256
        oid!(1.2.840.10045.4.3.3),   // ecdsa-with-SHA384
        oid!(1.3.101.112),           // Ed25519
        oid!(1.2.840.113549.1.1.11), // sha256WithRSAEncryption
        oid!(1.2.840.113549.1.1.12), // sha384WithRSAEncryption
        oid!(1.2.840.113549.1.1.13), // sha512WithRSAEncryption
        oid!(1.2.840.113549.1.1.10), // RSASSA-PSS (hash checked by the verifier)
    ];
    if accepted.contains(alg) {
        Ok(())
    } else {
        Err(CsrError::WeakSignature(alg.to_id_string()))
    }
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CsrError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == oid!(1.3.101.112) {
        return Ok(KeyKind::Ed25519);
    }
    match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == oid!(1.2.840.10045.3.1.7) => Ok(KeyKind::EcdsaP256),
                Some(c) if c == oid!(1.3.132.0.34) => Ok(KeyKind::EcdsaP384),
                Some(c) => Err(CsrError::UnsupportedKey(format!(
                    "ECDSA on curve {}",
                    c.to_id_string()
                ))),
                None => Err(CsrError::UnsupportedKey(
                    "ECDSA without a named curve".into(),
                )),
            }
        }
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if (2048..=8192).contains(&bits) {
                Ok(KeyKind::Rsa { bits })
            } else {
                Err(CsrError::UnsupportedKey(format!("RSA {bits} bits")))
            }
        }
        _ => Err(CsrError::UnsupportedKey(format!(
            "of algorithm {}",
            alg.to_id_string()
        ))),
    }
}

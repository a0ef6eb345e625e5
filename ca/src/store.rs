//! The CA's state as plain files in Istio's plug-in CA layout:
//!
//! | file | content |
//! |---|---|
//! | `root-cert.pem` | the root certificate(s) every workload trusts |
//! | `ca-cert.pem` | the signing (intermediate) certificate |
//! | `ca-key.pem` | its private key, mode 0600 |
//! | `cert-chain.pem` | the signing certificate, any intermediates above it, then the root |
//! | `root-key.pem` | only after `ca init` made a new root: move it offline |
//!
//! Creating a CA ([`init`]) and loading one ([`CertificateAuthority::load`]) live here; issuing
//! leaf certificates is in [`crate::sign`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::files::{self, FileError, PUBLIC_MODE, SECRET_MODE};
use crate::identity::{IdentityError, TrustDomain};

/// Why a CA could not be created or loaded. Each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}: a CA already exists here; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: the private key does not match the certificate in {cert}")]
    KeyMismatch { path: PathBuf, cert: PathBuf },
    #[error("{path}: certificate {subject:?} {state} (valid {not_before} to {not_after})")]
    Validity {
        path: PathBuf,
        subject: String,
        state: &'static str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error(
        "{path}: certificate {subject:?} is not a CA certificate (basicConstraints cA is not set)"
    )]
    NotCa { path: PathBuf, subject: String },
    #[error("{path}: the chain does not lead to a root in {roots}: {reason}")]
    BrokenChain {
        path: PathBuf,
        roots: PathBuf,
        reason: String,
    },
    #[error(
        "{path}: the CA belongs to trust domain {found:?}, but trust domain {wanted:?} was asked for"
    )]
    TrustDomainMismatch {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("generating the CA: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Paths of the plug-in CA files under one directory.
#[derive(Debug, Clone)]
pub struct CaPaths {
    pub dir: PathBuf,
}

impl CaPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root-cert.pem")
    }
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root-key.pem")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca-cert.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    pub fn cert_chain(&self) -> PathBuf {
        self.dir.join("cert-chain.pem")
    }
}

/// How `ca init` makes a CA.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub trust_domain: TrustDomain,
    /// Lifetime of a new root.
    pub root_ttl: Duration,
    /// Lifetime of the signing CA (capped by the root's expiry).
    pub ca_ttl: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            trust_domain: TrustDomain::default(),
            root_ttl: Duration::from_secs(10 * 365 * 86_400),
            ca_ttl: Duration::from_secs(2 * 365 * 86_400),
        }
    }
}

/// An existing root to put the new signing CA under (`--from-root-cert/--from-root-key`).
#[derive(Debug)]
pub struct ExistingRoot {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// What `init` wrote, for the operator.
#[derive(Debug)]
pub struct InitSummary {
    pub written: Vec<PathBuf>,
    pub root_key: Option<PathBuf>,
    pub ca_not_after: OffsetDateTime,
}

/// Clock skew allowance: certificates start this long before "now".
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(1);

/// Creates a root (or takes an existing one) and a signing CA under it, in `paths.dir`.
/// Refuses to touch a directory that already holds any of the CA files.
pub fn init(
    paths: &CaPaths,
    options: &InitOptions,
    existing_root: Option<&ExistingRoot>,
) -> Result<InitSummary, CaError> {
    for path in [
        paths.root_cert(),
        paths.ca_cert(),
        paths.ca_key(),
        paths.cert_chain(),
        paths.root_key(),
    ] {
        if path.exists() {
            return Err(CaError::AlreadyExists(path));
        }
    }
    let now = OffsetDateTime::now_utc();
    let td = &options.trust_domain;

    let (root_pem, root_issuer, root_not_after, new_root_key) = match existing_root {
        None => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = ca_params(td, "hostmesh root CA", None);
            params.not_before = now - BACKDATE;
            params.not_after = now + options.root_ttl;
            let cert = params.self_signed(&key)?;
            let not_after = params.not_after;
            let key_pem = key.serialize_pem();
            (
                cert.pem(),
                Issuer::new(params, key),
                not_after,
                Some(key_pem),
            )
        }
        Some(root) => {
            let cert_pem = String::from_utf8(files::read(&root.cert_path)?)
                .map_err(|_| malformed(&root.cert_path, "not a PEM file".to_owned()))?;
            let key = load_key(&root.key_path)?;
            let cert_der = first_cert(&root.cert_path, cert_pem.as_bytes())?;
            let parsed = parse_cert(&root.cert_path, &cert_der)?;
            check_key_matches(&key, &parsed, &root.key_path, &root.cert_path)?;
            check_ca(&root.cert_path, &parsed)?;
            check_validity(&root.cert_path, &parsed, now)?;
            let not_after = parsed.validity().not_after.to_datetime();
            let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
            (pem_of(&cert_der), issuer, not_after, None)
        }
    };

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = ca_params(td, "hostmesh signing CA", Some(0));
    params.not_before = now - BACKDATE;
    params.not_after = (now + options.ca_ttl).min(root_not_after);
    params.subject_alt_names = vec![SanType::URI(td.uri().try_into()?)];
    params.use_authority_key_identifier_extension = true;
    let ca_cert = params.signed_by(&ca_key, &root_issuer)?;

    files::create_dir(&paths.dir, 0o700)?;
    let mut written = Vec::new();
    let mut write = |path: PathBuf, contents: &str, mode| -> Result<(), CaError> {
        files::write_atomic(&path, contents.as_bytes(), mode)?;
        written.push(path);
        Ok(())
    };
    if let Some(key_pem) = &new_root_key {
        write(paths.root_key(), key_pem, SECRET_MODE)?;
    }
    write(paths.ca_key(), &ca_key.serialize_pem(), SECRET_MODE)?;
    write(paths.ca_cert(), &ca_cert.pem(), PUBLIC_MODE)?;
    write(
        paths.cert_chain(),
        &format!("{}{}", ca_cert.pem(), root_pem),
        PUBLIC_MODE,
    )?;
    // Written last: a CA directory without a root is recognisably incomplete.
    write(paths.root_cert(), &root_pem, PUBLIC_MODE)?;
    Ok(InitSummary {
        written,
        root_key: new_root_key.map(|_| paths.root_key()),
        ca_not_after: params.not_after,
    })
}

fn ca_params(td: &TrustDomain, common_name: &str, path_len: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, td.as_str());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = match path_len {
        Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
        None => IsCa::Ca(BasicConstraints::Unconstrained),
    };
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A loaded, checked CA, ready to sign.
pub struct CertificateAuthority {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) trust_domain: TrustDomain,
    /// PEM certificates returned after every leaf: the signing CA up to the root.
    pub(crate) chain_pem: Vec<String>,
    pub(crate) roots: Vec<CertificateDer<'static>>,
    pub(crate) roots_pem: String,
    /// The earliest expiry along the chain: no leaf outlives it.
    pub(crate) not_after: OffsetDateTime,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads and checks a CA: key permissions, key/certificate match, validity of every
    /// certificate, and a chain that leads to a root in `root-cert.pem`. `trust_domain` is the
    /// configured one; `None` takes it from the signing certificate's `spiffe://` URI, or the
    /// default.
    pub fn load(paths: &CaPaths, trust_domain: Option<&TrustDomain>) -> Result<Self, CaError> {
        let now = OffsetDateTime::now_utc();
        let key = load_key(&paths.ca_key())?;
        let ca_der = first_cert(&paths.ca_cert(), &files::read(&paths.ca_cert())?)?;
        let chain_ders = all_certs(&paths.cert_chain(), &files::read(&paths.cert_chain())?)?;
        let root_ders = all_certs(&paths.root_cert(), &files::read(&paths.root_cert())?)?;

        let ca = parse_cert(&paths.ca_cert(), &ca_der)?;
        check_key_matches(&key, &ca, &paths.ca_key(), &paths.ca_cert())?;
        check_ca(&paths.ca_cert(), &ca)?;

        // The chain after a leaf: the signing CA, then whatever cert-chain.pem has above it.
        let mut chain: Vec<CertificateDer<'static>> = vec![ca_der.clone()];
        chain.extend(chain_ders.into_iter().filter(|c| *c != ca_der));
        let roots = root_ders
            .iter()
            .map(|d| parse_cert(&paths.root_cert(), d))
            .collect::<Result<Vec<_>, _>>()?;

        let mut not_after = ca.validity().not_after.to_datetime();
        let mut reached_root = None;
        for (i, der) in chain.iter().enumerate() {
            let cert = parse_cert(&paths.cert_chain(), der)?;
            let path = if i == 0 {
                paths.ca_cert()
            } else {
                paths.cert_chain()
            };
            check_validity(&path, &cert, now)?;
            not_after = not_after.min(cert.validity().not_after.to_datetime());
            if let Some(root) = roots.iter().position(|r| r.as_ref() == cert.as_ref()) {
                reached_root = Some(root);
                break;
            }
            if let Some(root) = roots.iter().position(|r| signed_by(&cert, r)) {
                reached_root = Some(root);
                break;
            }
            let Some(next) = chain.get(i + 1) else { break };
            let next = parse_cert(&paths.cert_chain(), next)?;
            if !signed_by(&cert, &next) {
                return Err(CaError::BrokenChain {
                    path: paths.cert_chain(),
                    roots: paths.root_cert(),
                    reason: format!(
                        "{:?} is not signed by the next certificate, {:?}",
                        cert.subject().to_string(),
                        next.subject().to_string()
                    ),
                });
            }
        }
        let Some(root_index) = reached_root else {
            return Err(CaError::BrokenChain {
                path: paths.cert_chain(),
                roots: paths.root_cert(),
                reason: format!(
                    "no certificate in it is signed by {}",
                    roots
                        .iter()
                        .map(|r| format!("{:?}", r.subject().to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let root = &roots[root_index];
        check_validity(&paths.root_cert(), root, now)?;
        not_after = not_after.min(root.validity().not_after.to_datetime());
        // Istio's cert-chain.pem ends with the root; add it when the file leaves it out.
        if !chain.iter().any(|c| c.as_ref() == root.as_ref()) {
            chain.push(root_ders[root_index].clone());
        }

        let trust_domain = resolve_trust_domain(&paths.ca_cert(), &ca, trust_domain)?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, key)?;
        let roots_pem = root_ders.iter().map(pem_of).collect::<String>();
        Ok(Self {
            issuer,
            trust_domain,
            chain_pem: chain.iter().map(pem_of).collect(),
            roots: root_ders,
            roots_pem,
            not_after,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The roots every workload of this CA trusts.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// `root-cert.pem`'s content.
    pub fn roots_pem(&self) -> &str {
        &self.roots_pem
    }

    /// When the CA (or anything above it) expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

fn resolve_trust_domain(
    path: &Path,
    ca: &X509Certificate<'_>,
    wanted: Option<&TrustDomain>,
) -> Result<TrustDomain, CaError> {
    let found = spiffe_uris(ca)
        .into_iter()
        .find_map(|uri| uri.strip_prefix("spiffe://").map(str::to_owned))
        .filter(|td| !td.contains('/'));
    match (found, wanted) {
        (Some(found), Some(wanted)) if found != wanted.as_str() => {
            Err(CaError::TrustDomainMismatch {
                path: path.to_owned(),
                found,
                wanted: wanted.to_string(),
            })
        }
        (_, Some(wanted)) => Ok(wanted.clone()),
        (Some(found), None) => Ok(TrustDomain::new(&found)?),
        (None, None) => Ok(TrustDomain::default()),
    }
}

/// The URI SANs of a certificate.
pub(crate) fn spiffe_uris<'a>(cert: &'a X509Certificate<'_>) -> Vec<&'a str> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect()
}

fn malformed(path: &Path, reason: String) -> CaError {
    CaError::Malformed {
        path: path.to_owned(),
        reason,
    }
}

fn load_key(path: &Path) -> Result<KeyPair, CaError> {
    let pem = files::read_secret(path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| malformed(path, format!("no private key found: {e}")))?;
    KeyPair::try_from(&der).map_err(|e| malformed(path, format!("unsupported private key: {e}")))
}

pub(crate) fn all_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(malformed(path, "contains no certificate".to_owned()));
    }
    Ok(certs)
}

fn first_cert(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, CaError> {
    let mut certs = all_certs(path, pem)?;
    Ok(certs.swap_remove(0))
}

pub(crate) fn parse_cert<'a>(
    path: &Path,
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, CaError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(malformed(
            path,
            "trailing bytes after a certificate".to_owned(),
        )),
        Err(e) => Err(malformed(path, format!("not an X.509 certificate: {e}"))),
    }
}

pub(crate) fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn check_key_matches(
    key: &KeyPair,
    cert: &X509Certificate<'_>,
    key_path: &Path,
    cert_path: &Path,
) -> Result<(), CaError> {
    if key.subject_public_key_info() == cert.public_key().raw {
        Ok(())
    } else {
        Err(CaError::KeyMismatch {
            path: key_path.to_owned(),
            cert: cert_path.to_owned(),
        })
    }
}

fn check_ca(path: &Path, cert: &X509Certificate<'_>) -> Result<(), CaError> {
    if cert.is_ca() {
        Ok(())
    } else {
        Err(CaError::NotCa {
            path: path.to_owned(),
            subject: cert.subject().to_string(),
        })
    }
}

fn check_validity(
    path: &Path,
    cert: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let state = if now > not_after {
        "has expired"
    } else if now < not_before {
        "is not valid yet"
    } else {
        return Ok(());
    };
    Err(CaError::Validity {
        path: path.to_owned(),
        subject: cert.subject().to_string(),
        state,
        not_before,
        not_after,
    })
}

fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer() == issuer.subject()
        && issuer.is_ca()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

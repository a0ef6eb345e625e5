//! A workload's own identity on its host: the key is made here and never leaves the host, the
//! CSR is built here, key (0600) and chain are stored atomically under a state directory, and
//! [`IdentityKeeper`] renews the certificate at about half its lifetime (with jitter), retrying
//! with backoff until it succeeds or the certificate expires.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tracing::{error, info, warn};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client::{CaEndpoint, ClientError, Credential};
use crate::files::{self, FileError, PUBLIC_MODE, SECRET_MODE};
use crate::identity::SpiffeId;
use crate::tls::{CertificateSlot, TlsError, certified_key, spiffe_id_of};

/// Why the host has no usable identity.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "no valid certificate for {id} ({reason}) and no join token: create one on the control \
         server with `hostmesh-control token create --namespace {} --service-account {}` and \
         put it in the join token file", id.namespace(), id.service_account()
    )]
    NeedsJoin { id: SpiffeId, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the certificate service returned an unusable chain: {0}")]
    BadChain(String),
    #[error("building the CSR: {0}")]
    Csr(#[from] rcgen::Error),
}

/// Where a host keeps its key and chain.
#[derive(Debug, Clone)]
pub struct WorkloadFiles {
    pub dir: PathBuf,
}

impl WorkloadFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    pub fn chain(&self) -> PathBuf {
        self.dir.join("cert-chain.pem")
    }

    /// The stored certificate, if there is one (expired or not).
    pub fn load(&self) -> Result<Option<WorkloadCertificate>, WorkloadError> {
        if !self.chain().exists() || !self.key().exists() {
            return Ok(None);
        }
        let chain = String::from_utf8(files::read(&self.chain())?).map_err(|_| {
            WorkloadError::BadChain(format!("{}: not UTF-8", self.chain().display()))
        })?;
        let key = String::from_utf8(files::read_secret(&self.key())?)
            .map_err(|_| WorkloadError::BadChain(format!("{}: not UTF-8", self.key().display())))?;
        WorkloadCertificate::from_pem(chain, key).map(Some)
    }

    /// Stores key and chain. The key is written first: a chain on disk always has its key.
    pub fn save(&self, cert: &WorkloadCertificate) -> Result<(), WorkloadError> {
        files::create_dir(&self.dir, 0o700)?;
        files::write_atomic(&self.key(), cert.key_pem.as_bytes(), SECRET_MODE)?;
        files::write_atomic(&self.chain(), cert.chain_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(())
    }
}

/// A certificate chain with its key and what was read from its leaf.
#[derive(Debug, Clone)]
pub struct WorkloadCertificate {
    pub id: SpiffeId,
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub serial: String,
}

impl WorkloadCertificate {
    /// Checks that the chain's leaf has a SPIFFE ID and matches the key.
    pub fn from_pem(chain_pem: String, key_pem: String) -> Result<Self, WorkloadError> {
        let certified = certified_key(chain_pem.as_bytes(), key_pem.as_bytes())?;
        certified
            .keys_match()
            .map_err(|e| WorkloadError::BadChain(format!("key and certificate differ: {e}")))?;
        let leaf = certified
            .end_entity_cert()
            .map_err(|e| WorkloadError::BadChain(e.to_string()))?;
        let id = spiffe_id_of(leaf)
            .ok_or_else(|| WorkloadError::BadChain("the leaf carries no SPIFFE ID".into()))?;
        let (_, parsed) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| WorkloadError::BadChain(e.to_string()))?;
        let validity = parsed.validity();
        Ok(Self {
            id,
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
            serial: parsed.raw_serial_as_string(),
            chain_pem,
            key_pem,
        })
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    pub fn certified_key(&self) -> Result<CertifiedKey, TlsError> {
        certified_key(self.chain_pem.as_bytes(), self.key_pem.as_bytes())
    }
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// A fresh P-256 key and a CSR for `id` signed by it, both PEM.
pub fn new_key_and_csr(id: &SpiffeId) -> Result<(String, String), WorkloadError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// When to renew a certificate valid from `start` to `not_after`: at half its lifetime, minus
/// up to a tenth of it (`jitter` in `[0, 1)`) so that a fleet started together spreads out.
pub fn renew_at(start: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after.duration_since(start).unwrap_or_default();
    let fraction = 0.5 - 0.1 * jitter.clamp(0.0, 1.0);
    start + lifetime.mul_f64(fraction)
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The next delay: uniformly random up to the current ceiling, which then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        ceiling.mul_f64(rand::random::<f64>().max(0.1))
    }
}

/// Keeps a host's certificate valid: holds it in a [`CertificateSlot`] for TLS, publishes each
/// new one on a watch channel, and renews it in [`IdentityKeeper::run`].
#[derive(Debug)]
pub struct IdentityKeeper {
    endpoint: CaEndpoint,
    files: WorkloadFiles,
    ttl: Duration,
    slot: Arc<CertificateSlot>,
    current: watch::Sender<Arc<WorkloadCertificate>>,
    /// Start of the current certificate's lifetime as this host saw it.
    start: SystemTime,
}

impl IdentityKeeper {
    /// Uses the stored certificate if it is still valid, else spends `join_token` on a new one.
    pub async fn obtain(
        endpoint: CaEndpoint,
        files: WorkloadFiles,
        id: &SpiffeId,
        ttl: Duration,
        join_token: Option<&str>,
    ) -> Result<Self, WorkloadError> {
        let now = SystemTime::now();
        let stored = files.load()?.filter(|c| c.id == *id);
        let (cert, start) = match stored {
            Some(cert) if !cert.is_expired(now) => {
                let start = cert.not_before.min(now);
                (cert, start)
            }
            stored => {
                let Some(token) = join_token else {
                    let reason = match stored {
                        Some(c) => format!(
                            "the stored certificate expired at {}",
                            humantime(c.not_after)
                        ),
                        None => format!("none stored in {}", files.dir.display()),
                    };
                    return Err(WorkloadError::NeedsJoin {
                        id: id.clone(),
                        reason,
                    });
                };
                let cert =
                    fetch(&endpoint, id, ttl, &Credential::JoinToken(token.to_owned())).await?;
                files.save(&cert)?;
                info!(%id, serial = %cert.serial, "joined the mesh with a join token");
                (cert, now)
            }
        };
        let slot = CertificateSlot::new(cert.certified_key()?);
        let (current, _) = watch::channel(Arc::new(cert));
        Ok(Self {
            endpoint,
            files,
            ttl,
            slot,
            current,
            start,
        })
    }

    /// The slot TLS configs present.
    pub fn slot(&self) -> Arc<CertificateSlot> {
        self.slot.clone()
    }

    /// Every certificate this keeper holds, the current one first.
    pub fn subscribe(&self) -> watch::Receiver<Arc<WorkloadCertificate>> {
        self.current.subscribe()
    }

    /// Renews forever. Returns only when the certificate expired without a successful renewal
    /// (the host must re-join).
    pub async fn run(mut self) -> WorkloadError {
        loop {
            let cert = self.current.borrow().clone();
            let at = renew_at(self.start, cert.not_after, rand::random());
            sleep_until(at).await;
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                let credential = Credential::Certificate(self.slot.clone());
                match fetch(&self.endpoint, &cert.id, self.ttl, &credential).await {
                    Ok(new) => {
                        if let Err(e) = self.files.save(&new) {
                            // Serving goes on with the new certificate; the next renewal retries.
                            warn!(error = %e, "could not store the renewed certificate");
                        }
                        match new.certified_key() {
                            Ok(key) => self.slot.replace(key),
                            Err(e) => warn!(error = %e, "renewed certificate unusable"),
                        }
                        info!(id = %new.id, serial = %new.serial, not_after = %humantime(new.not_after), "renewed certificate");
                        self.start = SystemTime::now();
                        self.current.send_replace(Arc::new(new));
                        break;
                    }
                    Err(e) => {
                        let now = SystemTime::now();
                        if cert.is_expired(now) {
                            error!(id = %cert.id, error = %e, "certificate expired before it could be renewed");
                            return WorkloadError::NeedsJoin {
                                id: cert.id.clone(),
                                reason: format!(
                                    "it expired at {} while renewal failed: {e}",
                                    humantime(cert.not_after)
                                ),
                            };
                        }
                        let left = cert.not_after.duration_since(now).unwrap_or_default();
                        let delay = backoff.next_delay().min(left);
                        warn!(id = %cert.id, error = %e, retry_in_ms = delay.as_millis() as u64, "certificate renewal failed");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: SystemTime) {
    if let Ok(wait) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

fn humantime(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).to_string()
}

/// Makes a key, asks for a certificate, and checks what came back.
async fn fetch(
    endpoint: &CaEndpoint,
    id: &SpiffeId,
    ttl: Duration,
    credential: &Credential,
) -> Result<WorkloadCertificate, WorkloadError> {
    let (key_pem, csr_pem) = new_key_and_csr(id)?;
    let chain = endpoint.request(csr_pem, ttl, credential).await?;
    let cert = WorkloadCertificate::from_pem(chain.concat(), key_pem)?;
    if cert.id != *id {
        return Err(WorkloadError::BadChain(format!(
            "asked for {id}, got {}",
            cert.id
        )));
    }
    Ok(cert)
}

/// The default state directory of a host's identity.
pub fn default_state_dir() -> &'static Path {
    Path::new("/var/lib/hostmesh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_between_forty_and_fifty_percent_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(86_400);
        assert_eq!(
            renew_at(start, end, 0.0),
            start + Duration::from_secs(43_200)
        );
        let latest_jitter = renew_at(start, end, 0.999_999);
        assert!(latest_jitter > start + Duration::from_secs(34_559));
        assert!(latest_jitter < start + Duration::from_secs(34_561));
        // A certificate already past its end renews at once.
        assert_eq!(renew_at(end, start, 0.5), end);
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        let ceilings = [1, 2, 4, 8, 8, 8];
        for (d, c) in delays.iter().zip(ceilings) {
            assert!(*d <= Duration::from_secs(c), "{d:?} over {c}s");
            assert!(*d >= Duration::from_secs(c).mul_f64(0.1));
        }
    }
}

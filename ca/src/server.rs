//! Serving gRPC over mesh TLS: an accept loop that runs each TLS handshake in its own task with
//! a deadline (a stalled client never holds up the others), and the control server's own
//! serving identity, reissued by the CA before it expires.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::identity::{IdentityError, SpiffeId};
use crate::sign::SignError;
use crate::store::CertificateAuthority;
use crate::tls::{CertificateSlot, TlsError, certified_key};

/// Namespace and service account of the control server's own identity.
pub const CONTROL_NAMESPACE: &str = "hostmesh-system";
pub const CONTROL_SERVICE_ACCOUNT: &str = "hostmesh-control";

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and yields those whose TLS handshake completed.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Why the control server could not get its own certificate.
#[derive(Debug, thiserror::Error)]
pub enum ServingIdentityError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The control server's identity in the CA's trust domain.
pub fn control_identity(ca: &CertificateAuthority) -> Result<SpiffeId, IdentityError> {
    SpiffeId::new(
        ca.trust_domain().clone(),
        CONTROL_NAMESPACE,
        CONTROL_SERVICE_ACCOUNT,
    )
}

/// Issues the control server's serving certificate (its SPIFFE ID plus `dns_names`) and keeps
/// it fresh: a background task reissues it at half its lifetime.
pub fn serving_certificate(
    ca: Arc<CertificateAuthority>,
    dns_names: Vec<String>,
    ttl: Duration,
) -> Result<Arc<CertificateSlot>, ServingIdentityError> {
    let id = control_identity(&ca)?;
    let issue = {
        let (ca, id) = (ca.clone(), id.clone());
        move || -> Result<_, ServingIdentityError> {
            let issued = ca.issue_with_new_key(&id, &dns_names, ttl)?;
            Ok(certified_key(
                issued.chain.to_pem().as_bytes(),
                issued.key_pem.as_bytes(),
            )?)
        }
    };
    let slot = CertificateSlot::new(issue()?);
    let weak = Arc::downgrade(&slot);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 2).await;
            let Some(slot) = weak.upgrade() else { break };
            match issue() {
                Ok(key) => slot.replace(key),
                Err(e) => warn!(%id, error = %e, "could not renew the serving certificate"),
            }
        }
    });
    Ok(slot)
}

//! The host's certificate at start: the stored one while it is valid, else a new one paid for
//! with the join token. Renewal afterwards is [`IdentityKeeper::run`]'s.
//!
//! - No certificate stored and no token yet: a first start before the token was delivered.
//!   The agent waits for the token file (`STATUS=waiting for a join token at …`).
//! - A stored certificate that expired and no token: the host was down longer than the
//!   certificate's life. The agent stops with [`WorkloadError::NeedsJoin`], which says how
//!   to re-join; waiting would hide that an operator must act.
//! - The control server unreachable: retried with backoff, the reason in `STATUS=`.

use std::path::Path;
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use hostmesh_ca::client::CaEndpoint;
use hostmesh_ca::workload::{Backoff, IdentityKeeper, WorkloadError, WorkloadFiles};

use crate::systemd::Notifier;

/// How often the token file is looked for while waiting for it.
const TOKEN_POLL: Duration = Duration::from_secs(1);

/// What the start needs to obtain the identity.
#[derive(Debug)]
pub struct IdentityRequest<'a> {
    pub endpoint: CaEndpoint,
    pub state_dir: &'a Path,
    pub id: &'a SpiffeId,
    pub ttl: Duration,
    pub token_path: &'a Path,
}

/// How often the enrolment files are looked for on a first start.
const ENROLMENT_POLL: Duration = Duration::from_secs(1);

/// On a host that never joined (no stored certificate), waits until the operator has
/// delivered both the mesh's root certificate and a join token, saying so in `STATUS=`.
/// A freshly installed package therefore starts an agent that captures nothing and waits.
pub async fn wait_for_enrolment(
    state_dir: &Path,
    root_cert: &Path,
    token_path: &Path,
    notifier: &Notifier,
) {
    let mut announced = false;
    let enrolled =
        || crate::store::has_certificate(state_dir) || (root_cert.exists() && token_path.exists());
    while !enrolled() {
        if !announced {
            let status = format!(
                "waiting for enrolment: the mesh root certificate at {} and a join token at {} \
                 (hostmesh-control token create), nothing is intercepted until then",
                root_cert.display(),
                token_path.display()
            );
            tracing::warn!(root_cert = %root_cert.display(), join_token = %token_path.display(), "not enrolled yet");
            notifier.status(&status);
            announced = true;
        }
        tokio::time::sleep(ENROLMENT_POLL).await;
    }
}

/// Returns a keeper holding a valid certificate, or the reason there can be none.
pub async fn obtain(
    req: IdentityRequest<'_>,
    notifier: &Notifier,
) -> Result<IdentityKeeper, WorkloadError> {
    let files = WorkloadFiles::new(req.state_dir);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut announced_wait = false;
    loop {
        let token = read_token(req.token_path)?;
        let result = IdentityKeeper::obtain(
            req.endpoint.clone(),
            files.clone(),
            req.id,
            req.ttl,
            token.as_deref(),
        )
        .await;
        match result {
            Ok(keeper) => return Ok(keeper),
            Err(e @ WorkloadError::NeedsJoin { .. }) => {
                if crate::store::has_certificate(req.state_dir) {
                    return Err(e);
                }
                if !announced_wait {
                    tracing::warn!(error = %e, "no certificate yet");
                    notifier.status(&format!(
                        "waiting for a join token at {}",
                        req.token_path.display()
                    ));
                    announced_wait = true;
                }
                tokio::time::sleep(TOKEN_POLL).await;
            }
            Err(WorkloadError::Client(e)) if e.is_transient() => {
                let delay = backoff.next_delay();
                notifier.status(&format!(
                    "requesting a certificate from {} (retrying: {e})",
                    req.endpoint.address
                ));
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "certificate request failed");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn read_token(path: &Path) -> Result<Option<String>, WorkloadError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(None),
        Ok(t) => Ok(Some(t.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(hostmesh_ca::files::FileError::io(path, e).into()),
    }
}

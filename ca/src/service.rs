//! The certificate service: Istio's `istio.v1.auth.IstioCertificateService/CreateCertificate`,
//! served over TLS by `hostmesh-control`.
//!
//! Who may have what:
//! - a caller presenting a valid mesh client certificate renews its own identity, and only it;
//! - a caller without one presents a join token (`authorization: Bearer …`) and gets the one
//!   identity the token names, once;
//! - anyone else is refused with `UNAUTHENTICATED`.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::csr::VerifiedCsr;
use crate::identity::SpiffeId;
use crate::proto::istio_certificate_service_server::IstioCertificateService;
use crate::proto::{IstioCertificateRequest, IstioCertificateResponse};
use crate::sign::{SignError, SigningPolicy};
use crate::store::CertificateAuthority;
use crate::tls::spiffe_id_of;
use crate::token::{TokenClaims, TokenError, TokenKey, UsedTokens, unix_now};

/// The gRPC service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CertificateService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ca: Arc<CertificateAuthority>,
    policy: SigningPolicy,
    tokens: TokenKey,
    used: UsedTokens,
}

/// Whose request this is.
enum Caller {
    Renewal(SpiffeId),
    Join(SpiffeId, TokenClaims),
}

impl CertificateService {
    pub fn new(
        ca: Arc<CertificateAuthority>,
        policy: SigningPolicy,
        tokens: TokenKey,
        used: UsedTokens,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ca,
                policy,
                tokens,
                used,
            }),
        }
    }

    /// The tonic server for this service.
    pub fn into_server(
        self,
    ) -> crate::proto::istio_certificate_service_server::IstioCertificateServiceServer<Self> {
        crate::proto::istio_certificate_service_server::IstioCertificateServiceServer::new(self)
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(id) = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(spiffe_id_of))
        {
            return Ok(Caller::Renewal(id));
        }
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "no client certificate and no join token: a first certificate needs \
                 `authorization: Bearer <join token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header is not `Bearer <join token>`")
            })?;
        let claims = self
            .inner
            .tokens
            .verify(token, unix_now())
            .map_err(token_status)?;
        let id = claims
            .identity(self.inner.ca.trust_domain())
            .map_err(|e| Status::unauthenticated(format!("the join token names {e}")))?;
        Ok(Caller::Join(id, claims))
    }
}

fn token_status(e: TokenError) -> Status {
    match e {
        TokenError::File(_) | TokenError::Store { .. } => {
            warn!(error = %e, "join token store failed");
            Status::unavailable("the control server cannot record join tokens right now")
        }
        other => Status::unauthenticated(other.to_string()),
    }
}

fn sign_status(e: SignError) -> Status {
    match e {
        SignError::IdentityNotAllowed { .. } | SignError::WrongTrustDomain { .. } => {
            Status::permission_denied(e.to_string())
        }
        SignError::CaExpired(_) => Status::failed_precondition(e.to_string()),
        SignError::Build(_) => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl IstioCertificateService for CertificateService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = self.caller(&request);
        let body = request.into_inner();
        let csr = VerifiedCsr::from_pem(&body.csr).map_err(|e| {
            warn!(error = %e, "refused certificate request: bad CSR");
            Status::invalid_argument(e.to_string())
        })?;
        let caller = caller.inspect_err(|status| {
            warn!(
                error = status.message(),
                "refused certificate request: not authenticated"
            );
        })?;
        let requested_ttl = u64::try_from(body.validity_duration)
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let (id, claims, kind) = match caller {
            Caller::Renewal(id) => (id, None, "renewal"),
            Caller::Join(id, claims) => (id, Some(claims), "join"),
        };
        // Refuse a CSR for another identity before a token is spent on it.
        if let Some(other) = csr.requested_uris.iter().find(|u| **u != id.to_string()) {
            let status = sign_status(SignError::IdentityNotAllowed {
                requested: other.clone(),
                allowed: id.clone(),
            });
            warn!(%id, kind, requested = %other, "refused certificate request: identity not allowed");
            return Err(status);
        }
        if let Some(claims) = &claims {
            self.inner.used.consume(claims).map_err(|e| {
                warn!(%id, token = %claims.id, error = %e, "refused certificate request");
                token_status(e)
            })?;
        }
        let chain = self
            .inner
            .ca
            .sign(&csr, &id, requested_ttl, &self.inner.policy)
            .map_err(sign_status)?;
        info!(%id, kind, not_after = %chain.not_after, "issued certificate");
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain.chain_pem,
        }))
    }
}

//! The client of the certificate service: connects over TLS (verifying the server's SPIFFE ID
//! against the trust bundle), authenticates with a join token or the current certificate, and
//! returns the signed chain. It speaks Istio's API, so it can also talk to istiod.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Endpoint, Uri};

use crate::proto::IstioCertificateRequest;
use crate::proto::istio_certificate_service_client::IstioCertificateServiceClient;
use crate::tls::{
    CertificateSlot, ExpectedServer, SpiffeServerVerifier, TlsError, TrustBundle, client_config,
};

/// How the caller proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A join token, for the first certificate.
    JoinToken(String),
    /// The current certificate, presented as the TLS client certificate, for a renewal.
    Certificate(Arc<CertificateSlot>),
}

/// Why a certificate request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the certificate service at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the certificate service refused the request: {} ({})", .0.message(), .0.code())]
    Refused(tonic::Status),
    #[error("the certificate service returned an empty chain")]
    EmptyChain,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid join token: it contains characters not allowed in a header")]
    TokenHeader,
}

impl ClientError {
    /// A connection failure, with the whole chain of causes (tonic's own message is terse).
    fn connect(address: &str, error: &dyn std::error::Error) -> Self {
        let mut reason = error.to_string();
        let mut cause = error.source();
        while let Some(e) = cause {
            reason.push_str(": ");
            reason.push_str(&e.to_string());
            cause = e.source();
        }
        Self::Connect {
            address: address.to_owned(),
            reason,
        }
    }

    /// True when retrying later may succeed (the server was away or busy), false when the
    /// request itself was refused.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Refused(status) => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Internal
                    | tonic::Code::Unknown
            ),
            _ => false,
        }
    }
}

/// Where the certificate service is and how to recognise it.
#[derive(Debug, Clone)]
pub struct CaEndpoint {
    /// `host:port`
    pub address: String,
    pub trust: TrustBundle,
    pub server: ExpectedServer,
    pub timeout: Duration,
}

impl CaEndpoint {
    /// Sends one `CreateCertificate` call and returns the chain, leaf first.
    pub async fn request(
        &self,
        csr_pem: String,
        ttl: Duration,
        credential: &Credential,
    ) -> Result<Vec<String>, ClientError> {
        let slot = match credential {
            Credential::Certificate(slot) => Some(slot.clone()),
            Credential::JoinToken(_) => None,
        };
        let verifier = SpiffeServerVerifier::new(self.trust.clone(), self.server.clone());
        let config = Arc::new(client_config(slot, verifier, &[b"h2"])?);
        let connector = TlsConnector::from(config);
        let address = self.address.clone();
        let endpoint = Endpoint::from_shared(format!("http://{}", self.address))
            .map_err(|e| ClientError::connect(&self.address, &e))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let (connector, address) = (connector.clone(), address.clone());
                async move {
                    let tcp = TcpStream::connect(&address).await?;
                    tcp.set_nodelay(true)?;
                    // The server is verified by its SPIFFE ID; the name only fills in SNI.
                    let name =
                        ServerName::try_from("hostmesh-control").map_err(std::io::Error::other)?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|e| ClientError::connect(&self.address, &e))?;
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: csr_pem,
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata: None,
        });
        if let Credential::JoinToken(token) = credential {
            let value = format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| ClientError::TokenHeader)?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = IstioCertificateServiceClient::new(channel)
            .create_certificate(request)
            .await
            .map_err(ClientError::Refused)?;
        let chain = response.into_inner().cert_chain;
        if chain.is_empty() {
            return Err(ClientError::EmptyChain);
        }
        Ok(chain)
    }
}

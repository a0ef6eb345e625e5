//! Mutual TLS between hosts, Istio-style: this host's certificate from a [`CertificateSlot`]
//! (so a rotation applies to the next handshake without a restart), peers verified by SPIFFE
//! ID against the trust domain's roots, and ALPN lists exactly as Istio's sidecars send and
//! accept them.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use hostmesh_ca::tls::{
    CertificateSlot, ExpectedServer, SpiffeClientVerifier, SpiffeServerVerifier, TlsError,
    TrustBundle, client_config, server_config, spiffe_id_of,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::read_ahead::ReadAhead;

/// ALPN values, as Istio uses them.
pub mod alpn {
    /// Offered by a client speaking HTTP/1.1.
    pub const CLIENT_HTTP1: &[&[u8]] = &[b"istio-http/1.1", b"istio", b"http/1.1"];
    /// Offered by a client speaking HTTP/2 or gRPC.
    pub const CLIENT_H2: &[&[u8]] = &[b"istio-h2", b"istio", b"h2"];
    /// Offered by a client carrying opaque TCP. (`istio-peer-exchange` is left out: its
    /// metadata exchange is not implemented.)
    pub const CLIENT_TCP: &[&[u8]] = &[b"istio"];
    /// Server preference: every list above finds a match.
    pub const SERVER: &[&[u8]] = &[b"h2", b"http/1.1", b"istio"];
}

/// What to speak on a TLS connection, from the ALPN value both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Http1,
    Http2,
    /// Opaque bytes (ALPN `istio`).
    Opaque,
}

impl Codec {
    /// The client ALPN list for speaking this codec.
    pub fn client_alpn(self) -> &'static [&'static [u8]] {
        match self {
            Self::Http1 => alpn::CLIENT_HTTP1,
            Self::Http2 => alpn::CLIENT_H2,
            Self::Opaque => alpn::CLIENT_TCP,
        }
    }

    /// The codec an agreed ALPN value means, if any.
    pub fn from_alpn(value: &[u8]) -> Option<Self> {
        match value {
            b"h2" | b"istio-h2" => Some(Self::Http2),
            b"http/1.1" | b"istio-http/1.1" => Some(Self::Http1),
            b"istio" | b"istio-peer-exchange" => Some(Self::Opaque),
            _ => None,
        }
    }
}

/// Why a mutual TLS connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake with {peer} did not finish within {timeout:?}")]
    Timeout { peer: SocketAddr, timeout: Duration },
    #[error("TLS handshake with {peer} failed: {source}")]
    Failed { peer: SocketAddr, source: io::Error },
    #[error("TLS peer {peer} presented no SPIFFE identity")]
    NoIdentity { peer: SocketAddr },
    #[error("this host has no certificate yet")]
    NoCertificate,
    #[error("TLS client config: {0}")]
    Config(#[from] TlsError),
}

/// The verified identity of the other side of an mTLS connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: SpiffeId,
    /// SHA-256 of the peer's leaf certificate (DER), lower-case hex (XFCC's `Hash`).
    pub cert_sha256: String,
    /// `None` when the client offered no ALPN value we know.
    pub codec: Option<Codec>,
}

/// Client configs differ by the identities they accept and the ALPN list they offer.
type ClientKey = (Arc<[SpiffeId]>, Codec);

/// This host's TLS identity and the verifiers and configs built on it.
#[derive(Debug)]
pub struct MeshTls {
    slot: Arc<CertificateSlot>,
    bundle: TrustBundle,
    server: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    clients: Mutex<HashMap<ClientKey, Arc<rustls::ClientConfig>>>,
}

impl MeshTls {
    pub fn new(
        slot: Arc<CertificateSlot>,
        bundle: TrustBundle,
        handshake_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let verifier = SpiffeClientVerifier::new(bundle.clone(), true);
        let mut server = server_config(slot.clone(), verifier, alpn::SERVER)?;
        // One resumption ticket per connection (rustls sends two): a peer that resumes spends
        // the one it holds and gets the next with the new connection.
        server.send_tls13_tickets = 1;
        Ok(Self {
            slot,
            bundle,
            server: Arc::new(server),
            handshake_timeout,
            clients: Mutex::default(),
        })
    }

    /// This host's SPIFFE ID as its current certificate says.
    pub fn own_identity(&self) -> Option<SpiffeId> {
        self.slot
            .current()
            .and_then(|k| k.cert.first().and_then(spiffe_id_of))
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Server side: completes the handshake (bounded by the handshake timeout) and returns the
    /// verified peer.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(server::TlsStream<ReadAhead<TcpStream>>, Peer), HandshakeError> {
        let timeout = self.handshake_timeout;
        let tls = match tokio::time::timeout(
            timeout,
            TlsAcceptor::from(self.server.clone()).accept(ReadAhead::new(tcp)),
        )
        .await
        {
            Err(_) => return Err(HandshakeError::Timeout { peer, timeout }),
            Ok(Err(source)) => return Err(HandshakeError::Failed { peer, source }),
            Ok(Ok(tls)) => tls,
        };
        let conn = tls.get_ref().1;
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(HandshakeError::NoIdentity { peer })?;
        let id = spiffe_id_of(leaf).ok_or(HandshakeError::NoIdentity { peer })?;
        let info = Peer {
            id,
            cert_sha256: sha256_hex(leaf),
            codec: conn.alpn_protocol().and_then(Codec::from_alpn),
        };
        Ok((tls, info))
    }

    /// Client side: connects over `tcp`, offering Istio's ALPN list for `codec`, and accepts
    /// only a server that holds one of `expected`. Returns the codec the server agreed to.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        expected: &Arc<[SpiffeId]>,
        codec: Codec,
    ) -> Result<(client::TlsStream<ReadAhead<TcpStream>>, Codec), HandshakeError> {
        if self.slot.current().is_none() {
            return Err(HandshakeError::NoCertificate);
        }
        let connector = self.connector(expected, codec)?;
        // An IP server name: rustls sends no SNI, which Istio never requires.
        let name = ServerName::IpAddress(peer.ip().into());
        let timeout = self.handshake_timeout;
        let tls = match tokio::time::timeout(timeout, connector.connect(name, ReadAhead::new(tcp)))
            .await
        {
            Err(_) => return Err(HandshakeError::Timeout { peer, timeout }),
            Ok(Err(source)) => return Err(HandshakeError::Failed { peer, source }),
            Ok(Ok(tls)) => tls,
        };
        let agreed = tls
            .get_ref()
            .1
            .alpn_protocol()
            .and_then(Codec::from_alpn)
            .unwrap_or(codec);
        Ok((tls, agreed))
    }

    fn connector(
        &self,
        expected: &Arc<[SpiffeId]>,
        codec: Codec,
    ) -> Result<TlsConnector, HandshakeError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&(expected.clone(), codec)) {
            return Ok(TlsConnector::from(c.clone()));
        }
        let verifier =
            SpiffeServerVerifier::new(self.bundle.clone(), ExpectedServer::AnyOf(expected.clone()));
        let config = client_config(Some(self.slot.clone()), verifier, codec.client_alpn())?;
        let config = Arc::new(config);
        clients.insert((expected.clone(), codec), config.clone());
        Ok(TlsConnector::from(config))
    }
}

pub(crate) fn sha256_hex(cert: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

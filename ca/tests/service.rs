//! The certificate service over real TLS on 127.0.0.1: joins, renewals, and every refusal.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{TestResult, id, openssl, write};
use hostmesh_ca::client::{CaEndpoint, ClientError, Credential};
use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, control_identity, serving_certificate, tls_incoming};
use hostmesh_ca::service::CertificateService;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{ExpectedServer, SpiffeClientVerifier, TrustBundle, server_config};
use hostmesh_ca::token::{TokenKey, UsedTokens};
use hostmesh_ca::workload::{IdentityKeeper, WorkloadError, WorkloadFiles, new_key_and_csr};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};
use tokio::sync::oneshot;

const FRONT: &str = "spiffe://cluster.local/ns/demo/sa/front";

/// A running certificate service, as `hostmesh-control run` composes it.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    ca: Arc<CertificateAuthority>,
}

impl Server {
    async fn start(dir: &Path, max_ttl: Duration) -> Self {
        let paths = CaPaths::new(dir.join("ca"));
        if !paths.root_cert().exists() {
            store::init(&paths, &InitOptions::default(), None).unwrap();
        }
        let ca = Arc::new(CertificateAuthority::load(&paths, None).unwrap());
        let tokens = TokenKey::load_or_create(&dir.join("state/join-token.key")).unwrap();
        let used = UsedTokens::load(&dir.join("state/used-join-tokens")).unwrap();
        let slot = serving_certificate(ca.clone(), vec![], Duration::from_secs(3600)).unwrap();
        let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
        let tls = server_config(slot, SpiffeClientVerifier::new(bundle, false), &[b"h2"]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tls_incoming(listener, Arc::new(tls).into(), HANDSHAKE_TIMEOUT);
        let policy = SigningPolicy {
            max_ttl,
            default_ttl: max_ttl,
        };
        let service = CertificateService::new(ca.clone(), policy, tokens, used);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service.into_server())
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            stop: Some(stop),
            done,
            ca,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.done.await;
    }

    fn endpoint(&self) -> CaEndpoint {
        CaEndpoint {
            address: self.addr.to_string(),
            trust: TrustBundle::new(self.ca.trust_domain().clone(), self.ca.roots()).unwrap(),
            server: ExpectedServer::Identity(control_identity(&self.ca).unwrap()),
            timeout: Duration::from_secs(5),
        }
    }

    fn token(&self, dir: &Path, id: &SpiffeId, ttl: Duration) -> String {
        TokenKey::load_or_create(&dir.join("state/join-token.key"))
            .unwrap()
            .create(id, ttl)
    }
}

async fn request(
    endpoint: &CaEndpoint,
    id: &SpiffeId,
    credential: &Credential,
) -> Result<Vec<String>, ClientError> {
    let (_, csr) = new_key_and_csr(id).unwrap();
    endpoint
        .request(csr, Duration::from_secs(3600), credential)
        .await
}

#[tokio::test]
async fn join_with_a_token_then_renew_with_the_certificate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    let token = server.token(dir.path(), &id(FRONT), Duration::from_secs(600));
    let files = WorkloadFiles::new(dir.path().join("host"));
    let keeper = IdentityKeeper::obtain(
        server.endpoint(),
        files.clone(),
        &id(FRONT),
        Duration::from_secs(3600),
        Some(&token),
    )
    .await?;
    let cert = keeper.subscribe().borrow().clone();
    assert_eq!(cert.id, id(FRONT));
    // Stored: key 0600, and the chain verifies with openssl against the CA's root.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(files.key())?.permissions().mode() & 0o777,
        0o600
    );
    let leaf = write(
        dir.path(),
        "leaf.pem",
        cert.chain_pem
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap(),
    );
    let out = openssl(&[
        "verify",
        "-CAfile",
        &dir.path().join("ca/root-cert.pem").to_string_lossy(),
        "-untrusted",
        &files.chain().to_string_lossy(),
        &leaf.to_string_lossy(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");

    // Renewal, authenticated by the certificate alone.
    let renewal = Credential::Certificate(keeper.slot());
    let chain = request(&server.endpoint(), &id(FRONT), &renewal).await?;
    assert_eq!(chain.len(), 3);

    // A renewal for another identity is refused.
    let other = id("spiffe://cluster.local/ns/demo/sa/bill-service");
    let err = request(&server.endpoint(), &other, &renewal)
        .await
        .unwrap_err();
    let ClientError::Refused(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("but the caller may only have spiffe://cluster.local/ns/demo/sa/front"),
        "{}",
        status.message()
    );

    // A restarted agent uses its stored certificate without a token.
    let again = IdentityKeeper::obtain(
        server.endpoint(),
        files,
        &id(FRONT),
        Duration::from_secs(3600),
        None,
    )
    .await?;
    assert_eq!(again.subscribe().borrow().serial, cert.serial);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_token_is_good_for_one_certificate_even_across_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    let token =
        Credential::JoinToken(server.token(dir.path(), &id(FRONT), Duration::from_secs(600)));
    request(&server.endpoint(), &id(FRONT), &token).await?;
    let err = request(&server.endpoint(), &id(FRONT), &token)
        .await
        .unwrap_err();
    let ClientError::Refused(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status
            .message()
            .starts_with("the join token was already used at"),
        "{}",
        status.message()
    );
    server.stop().await;

    let restarted = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    let err = request(&restarted.endpoint(), &id(FRONT), &token)
        .await
        .unwrap_err();
    let ClientError::Refused(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status
            .message()
            .starts_with("the join token was already used at"),
        "{}",
        status.message()
    );
    restarted.stop().await;
    Ok(())
}

#[tokio::test]
async fn refusals_name_their_reason() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    let endpoint = server.endpoint();
    let expect = |r: Result<Vec<String>, ClientError>, code, text: &str| {
        let ClientError::Refused(status) = r.unwrap_err() else {
            panic!("not a refusal")
        };
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(text),
            "{:?} lacks {text:?}",
            status.message()
        );
    };

    // Expired token.
    let expired = Credential::JoinToken(server.token(dir.path(), &id(FRONT), Duration::ZERO));
    expect(
        request(&endpoint, &id(FRONT), &expired).await,
        tonic::Code::Unauthenticated,
        "the join token expired at",
    );

    // A token from another control server.
    let foreign = TokenKey::load_or_create(&dir.path().join("other.key"))?
        .create(&id(FRONT), Duration::from_secs(60));
    expect(
        request(&endpoint, &id(FRONT), &Credential::JoinToken(foreign)).await,
        tonic::Code::Unauthenticated,
        "not issued by this control server",
    );

    // No credential at all.
    expect(
        request(&endpoint, &id(FRONT), &Credential::JoinToken(String::new())).await,
        tonic::Code::Unauthenticated,
        "malformed",
    );

    // A token for front, a CSR for bill-service: refused, and the token is not spent.
    let token =
        Credential::JoinToken(server.token(dir.path(), &id(FRONT), Duration::from_secs(600)));
    let bill = id("spiffe://cluster.local/ns/demo/sa/bill-service");
    expect(
        request(&endpoint, &bill, &token).await,
        tonic::Code::PermissionDenied,
        "may only have spiffe://cluster.local/ns/demo/sa/front",
    );
    request(&endpoint, &id(FRONT), &token).await?;

    // A tampered CSR.
    let (_, csr) = new_key_and_csr(&id(FRONT))?;
    let tampered = csr.replacen("MII", "MIJ", 1);
    let token =
        Credential::JoinToken(server.token(dir.path(), &id(FRONT), Duration::from_secs(600)));
    let err = endpoint
        .request(tampered, Duration::from_secs(60), &token)
        .await
        .unwrap_err();
    let ClientError::Refused(status) = err else {
        panic!("{err}")
    };
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{}",
        status.message()
    );
    assert!(
        status.message().starts_with("the CSR"),
        "{}",
        status.message()
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn no_token_and_no_certificate_is_unauthenticated() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    // Speak to the service without any authorization metadata, through the raw client.
    let err = IdentityKeeper::obtain(
        server.endpoint(),
        WorkloadFiles::new(dir.path().join("h")),
        &id(FRONT),
        Duration::from_secs(60),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WorkloadError::NeedsJoin { .. }));
    assert!(
        err.to_string()
            .contains("hostmesh-control token create --namespace demo --service-account front"),
        "{err}"
    );

    let (_, csr) = new_key_and_csr(&id(FRONT))?;
    let mut client =
        hostmesh_ca::proto::istio_certificate_service_client::IstioCertificateServiceClient::new(
            connect_plain_tls(&server).await,
        );
    let status = client
        .create_certificate(hostmesh_ca::proto::IstioCertificateRequest {
            csr,
            validity_duration: 60,
            metadata: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status
            .message()
            .starts_with("no client certificate and no join token"),
        "{}",
        status.message()
    );
    server.stop().await;
    Ok(())
}

/// A TLS channel that presents no client certificate and sends no token.
async fn connect_plain_tls(server: &Server) -> tonic::transport::Channel {
    use hostmesh_ca::tls::{SpiffeServerVerifier, client_config};
    let e = server.endpoint();
    let config = Arc::new(
        client_config(None, SpiffeServerVerifier::new(e.trust, e.server), &[b"h2"]).unwrap(),
    );
    let addr = e.address;
    tonic::transport::Endpoint::from_static("http://ca")
        .connect_with_connector(tower::service_fn(move |_| {
            let (config, addr) = (config.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls_pki_types::ServerName::try_from("ca").unwrap();
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_certificate_from_another_root_is_refused_at_the_handshake() -> TestResult {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), Duration::from_secs(86_400)).await;
    // A host whose certificate comes from a different CA.
    let other = tempfile::tempdir()?;
    let other_server = Server::start(other.path(), Duration::from_secs(86_400)).await;
    let token = other_server.token(other.path(), &id(FRONT), Duration::from_secs(60));
    let keeper = IdentityKeeper::obtain(
        other_server.endpoint(),
        WorkloadFiles::new(other.path().join("h")),
        &id(FRONT),
        Duration::from_secs(600),
        Some(&token),
    )
    .await?;
    let err = request(
        &server.endpoint(),
        &id(FRONT),
        &Credential::Certificate(keeper.slot()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Connect { .. } | ClientError::Refused(_)),
        "{err}"
    );
    assert!(!matches!(&err, ClientError::Refused(s) if s.code() == tonic::Code::Ok));
    // And a client refuses a server whose certificate is from another root.
    let mut wrong = server.endpoint();
    wrong.trust = other_server.endpoint().trust;
    let token =
        Credential::JoinToken(server.token(dir.path(), &id(FRONT), Duration::from_secs(60)));
    let err = request(&wrong, &id(FRONT), &token).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    server.stop().await;
    other_server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_keeper_renews_before_expiry() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Certificates live 6 seconds here.
    let server = Server::start(dir.path(), Duration::from_secs(6)).await;
    let token = server.token(dir.path(), &id(FRONT), Duration::from_secs(60));
    let keeper = IdentityKeeper::obtain(
        server.endpoint(),
        WorkloadFiles::new(dir.path().join("h")),
        &id(FRONT),
        Duration::from_secs(6),
        Some(&token),
    )
    .await?;
    let mut updates = keeper.subscribe();
    let first = updates.borrow_and_update().clone();
    let slot = keeper.slot();
    let task = tokio::spawn(keeper.run());
    tokio::time::timeout(Duration::from_secs(6), updates.changed()).await??;
    let second = updates.borrow().clone();
    let renewed_at = SystemTime::now();
    assert_ne!(second.serial, first.serial);
    assert!(
        renewed_at < first.not_after,
        "renewed after the old certificate expired"
    );
    // TLS now presents the renewed certificate.
    let presented = slot.current().unwrap();
    let id_now = hostmesh_ca::tls::spiffe_id_of(&presented.cert[0]).unwrap();
    assert_eq!(id_now, id(FRONT));
    assert_eq!(
        x509_parser::parse_x509_certificate(&presented.cert[0])
            .unwrap()
            .1
            .raw_serial_as_string(),
        second.serial
    );
    task.abort();
    server.stop().await;
    Ok(())
}

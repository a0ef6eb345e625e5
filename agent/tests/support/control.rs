//! An in-process control server for the agent's tests: a CA in a temporary directory, the
//! certificate service with join tokens, and the ADS server fed Istio YAML, on one TLS port of
//! 127.0.0.1, as `hostmesh-control run` composes them. Stopped (port closed) on request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, serving_certificate, tls_incoming};
use hostmesh_ca::service::CertificateService;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{SpiffeClientVerifier, TrustBundle, server_config};
use hostmesh_ca::token::{TokenKey, UsedTokens};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};
use hostmesh_registry::model::validate::Context;
use hostmesh_registry::model::{Snapshot, TrustDomain};
use hostmesh_registry::sources::static_files::parse_file;
use hostmesh_registry::xds::server::AdsServer;
use hostmesh_registry::xds::{MeshTranslator, TranslatorConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// The CA files and the token key, kept across control server restarts.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Arc<CertificateAuthority>,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let paths = CaPaths::new(dir.join("ca"));
        store::init(&paths, &InitOptions::default(), None).unwrap();
        let ca = Arc::new(CertificateAuthority::load(&paths, None).unwrap());
        Self {
            dir: dir.to_owned(),
            ca,
        }
    }

    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca").join("root-cert.pem")
    }

    fn token_key(&self) -> TokenKey {
        TokenKey::load_or_create(&self.dir.join("join-token.key")).unwrap()
    }

    /// A join token for `namespace`/`service_account`.
    pub fn token(&self, namespace: &str, service_account: &str) -> String {
        let id = SpiffeId::new(
            hostmesh_ca::TrustDomain::default(),
            namespace,
            service_account,
        )
        .unwrap();
        self.token_key().create(&id, Duration::from_secs(3600))
    }
}

/// A running control server.
pub struct Control {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    pub async fn start(pki: &Pki, registry_yaml: &str, cert_ttl: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self::start_on(listener, pki, registry_yaml, cert_ttl).await
    }

    /// Serves on `listener` (which may have been made in another network namespace).
    pub async fn start_on(
        listener: std::net::TcpListener,
        pki: &Pki,
        registry_yaml: &str,
        cert_ttl: Duration,
    ) -> Self {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let ca = pki.ca.clone();
        let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
        let slot = serving_certificate(ca.clone(), vec![], Duration::from_secs(3600)).unwrap();
        let tls = server_config(slot, SpiffeClientVerifier::new(bundle, false), &[b"h2"]).unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tls_incoming(listener, Arc::new(tls).into(), HANDSHAKE_TIMEOUT);
        let (_snapshots, rx) = watch::channel(snapshot(registry_yaml));
        let translator = MeshTranslator::new(TranslatorConfig::default());
        let ads = AdsServer::start(Arc::new(translator), rx);
        let used = UsedTokens::load(&pki.dir.join("used-join-tokens")).unwrap();
        let policy = SigningPolicy {
            max_ttl: cert_ttl,
            default_ttl: cert_ttl,
        };
        let certificates = CertificateService::new(ca, policy, pki.token_key(), used);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _keep = _snapshots;
            let _ = tonic::transport::Server::builder()
                .add_service(certificates.into_server())
                .add_service(ads.service())
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops serving: the port is closed and open streams end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

fn snapshot(yaml: &str) -> Snapshot {
    let parsed = parse_file(Path::new("test.yaml"), yaml, &Context::default());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    Snapshot::build(
        1,
        parsed.objects.into_iter().map(|o| o.object),
        &TrustDomain::default(),
    )
}

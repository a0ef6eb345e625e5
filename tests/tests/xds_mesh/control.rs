//! The CA and the control server (`AdsServer` + `MeshTranslator` behind a [`Tap`]), which a
//! test can stop (listener closed, every connection cut) and start again on the same address
//! with a fresh `AdsServer`, as a restarted control process would be.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, serving_certificate};
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::tls::{
    CertificateSlot, SpiffeClientVerifier, TrustBundle, certified_key, server_config,
};
use hostmesh_ca::{CaPaths, CertificateAuthority};
use hostmesh_registry::model::Snapshot;
use hostmesh_registry::xds::server::{AdsServer, NodeStatus};
use hostmesh_registry::xds::{MeshTranslator, TranslatorConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::mesh::{BOUND, Injecting};
use crate::tap::{Tap, TapLog};

/// The CA and the control server.
pub struct Control {
    _dir: tempfile::TempDir,
    pub ca: Arc<CertificateAuthority>,
    pub bundle: TrustBundle,
    pub addr: SocketAddr,
    pub translator: Arc<Injecting>,
    pub snapshots: watch::Sender<Snapshot>,
    acceptor: TlsAcceptor,
    delta: bool,
    serving: Mutex<Option<Serving>>,
    /// The `AdsServer` and tap of the current (or last) run.
    current: Mutex<(AdsServer, Arc<TapLog>)>,
    pub(crate) drains: Mutex<Vec<hostmesh_proxy::drain::DrainTrigger>>,
}

/// One run of the server: its accept loop, its tonic server, a handle on every connection.
struct Serving {
    accept: JoinHandle<()>,
    serve: JoinHandle<()>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Control {
    /// A control server that speaks both ADS protocols.
    pub async fn start(first: Snapshot) -> Self {
        Self::start_with(first, true).await
    }

    /// `delta: false`: `DeltaAggregatedResources` answers `UNIMPLEMENTED`.
    pub async fn start_with(first: Snapshot, delta: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path().join("ca"));
        store::init(&paths, &InitOptions::default(), None).unwrap();
        let ca = Arc::new(CertificateAuthority::load(&paths, None).unwrap());
        let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots()).unwrap();
        let slot = serving_certificate(ca.clone(), vec![], Duration::from_secs(3600)).unwrap();
        let verifier = SpiffeClientVerifier::new(bundle.clone(), false);
        let tls = server_config(slot, verifier, &[b"h2"]).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (snapshots, rx) = watch::channel(first);
        let translator = Arc::new(Injecting {
            inner: MeshTranslator::new(TranslatorConfig::default()),
            refused: AtomicBool::new(false),
        });
        let ads = AdsServer::start(translator.clone(), rx);
        let control = Self {
            _dir: dir,
            ca,
            bundle,
            addr,
            translator,
            snapshots,
            acceptor,
            delta,
            serving: Mutex::new(None),
            current: Mutex::new((ads, Arc::default())),
            drains: Mutex::default(),
        };
        control.serve(listener);
        control
    }

    fn serve(&self, listener: TcpListener) {
        let (ads, log) = self.current.lock().unwrap().clone();
        let tap = Tap {
            inner: ads.service(),
            delta: self.delta,
            log,
        };
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(16);
        let accept = tokio::spawn(accept(listener, self.acceptor.clone(), tx, sockets.clone()));
        let serve = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(tap)
                .serve_with_incoming(ReceiverStream::new(rx))
                .await
                .unwrap();
        });
        *self.serving.lock().unwrap() = Some(Serving {
            accept,
            serve,
            sockets,
        });
    }

    /// Stops serving: the listener is closed and every connection is cut (both ways), so the
    /// clients see their streams end.
    pub async fn stop(&self) {
        let serving = self.serving.lock().unwrap().take();
        let Some(serving) = serving else { return };
        serving.accept.abort();
        serving.serve.abort();
        let _ = serving.accept.await;
        let _ = serving.serve.await;
        for socket in serving.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Serves again on the same address with a new `AdsServer` (no stream state, nothing in
    /// its status) and a new tap log.
    pub async fn restart(&self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let ads = AdsServer::start(self.translator.clone(), self.snapshots.subscribe());
        *self.current.lock().unwrap() = (ads, Arc::default());
        self.serve(listener);
    }

    /// The current run's `AdsServer`.
    pub fn ads(&self) -> AdsServer {
        self.current.lock().unwrap().0.clone()
    }

    /// The current run's tap log.
    pub fn tap(&self) -> Arc<TapLog> {
        self.current.lock().unwrap().1.clone()
    }

    pub fn slot(&self, identity: &str) -> Arc<CertificateSlot> {
        let issued = self
            .ca
            .issue_with_new_key(&identity.parse().unwrap(), &[], Duration::from_secs(3600))
            .unwrap();
        let key =
            certified_key(issued.chain.to_pem().as_bytes(), issued.key_pem.as_bytes()).unwrap();
        CertificateSlot::new(key)
    }

    /// Publishes `snapshot` and waits (bounded) until the server has translated it.
    pub async fn publish(&self, snapshot: Snapshot) {
        let ads = self.ads();
        let before = ads.generation();
        self.snapshots.send_replace(snapshot);
        let deadline = tokio::time::Instant::now() + BOUND;
        while ads.generation() == before {
            assert!(tokio::time::Instant::now() < deadline, "no new generation");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until the server's status table satisfies `check`.
    pub async fn wait_status(&self, what: &str, check: impl Fn(&[NodeStatus]) -> bool) {
        let ads = self.ads();
        let mut changes = ads.status_changes();
        let waited = tokio::time::timeout(BOUND, async {
            loop {
                changes.borrow_and_update();
                if check(&ads.status()) {
                    return;
                }
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(waited.is_ok(), "{what}: status is {:#?}", ads.status());
    }
}

/// Accepts TCP, keeps a handle on each socket (to cut it on stop), completes TLS.
async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>,
    sockets: Arc<Mutex<Vec<std::net::TcpStream>>>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
            sockets.lock().unwrap().push(std::net::TcpStream::from(fd));
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                let _ = tx.send(Ok(tls)).await;
            }
        });
    }
}

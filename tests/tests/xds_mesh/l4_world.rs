//! A mesh for L4 routing: the control server fed the test's YAML, `front`'s outbound at the
//! VIP, two workload hosts each with its own proxy's inbound in front of its app; apps that
//! count connections and bytes, plain TCP or TLS with a certificate of their own (issued by a
//! test CA that is not the mesh's, so the mesh cannot have made the handshake).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::mesh::*;

/// An app that reads a connection to its end and answers with its name; counts connections
/// and bytes received.
pub struct L4App {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub bytes: Arc<AtomicUsize>,
    /// With TLS: the certificate it presents.
    pub cert: Option<CertificateDer<'static>>,
}

impl L4App {
    pub async fn plain(name: &'static str) -> Self {
        Self::start(name, None).await
    }

    /// A TLS app whose certificate names `server_name`, issued by `ca`.
    pub async fn tls(name: &'static str, server_name: &str, ca: &TestCa) -> Self {
        Self::start(name, Some(ca.issue(server_name))).await
    }

    async fn start(
        name: &'static str,
        tls: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connections, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let acceptor = tls.as_ref().map(|(cert, key)| {
            let config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key.clone_key())
                .unwrap();
            TlsAcceptor::from(Arc::new(config))
        });
        let (c, b) = (connections.clone(), bytes.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (b, acceptor) = (b.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                echo_name(tls, name, &b).await;
                            }
                        }
                        None => echo_name(tcp, name, &b).await,
                    }
                });
            }
        });
        Self {
            name,
            addr,
            connections,
            bytes,
            cert: tls.map(|(c, _)| c),
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }
}

async fn echo_name<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, name: &str, bytes: &AtomicUsize) {
    let mut buf = Vec::new();
    if s.read_to_end(&mut buf).await.is_ok() {
        bytes.fetch_add(buf.len(), Ordering::SeqCst);
        let _ = s.write_all(name.as_bytes()).await;
        let _ = s.shutdown().await;
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA of the applications' own, unknown to the mesh.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub root: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap().der().clone();
        Self {
            issuer: Issuer::new(params, key),
            root,
        }
    }

    fn issue(&self, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), der)
    }

    /// A TLS client that trusts only this CA.
    pub fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

pub struct L4World {
    pub control: Control,
    pub front: Host,
    pub hosts: Vec<Host>,
    pub vip: SocketAddr,
}

impl L4World {
    /// `yaml(vip, [inbound of app 0, inbound of app 1])` is the registry; app `i` runs on
    /// host `workload-i` with service account `workload`.
    pub async fn start(
        apps: [&L4App; 2],
        yaml: impl Fn(SocketAddr, [SocketAddr; 2]) -> String,
    ) -> Self {
        let block = loopback_block();
        let control = Control::start_with(snapshot(1, ""), true).await;
        let front = control.host(ip(block, 20), "front", "front");
        let vip = control
            .outbound(&front, SocketAddr::new(ip(block, 10), 0))
            .await;
        let mut hosts = Vec::new();
        let mut inbounds = Vec::new();
        for (i, app) in apps.into_iter().enumerate() {
            let n = 21 + u8::try_from(i).unwrap();
            let host = control.host(ip(block, n), &format!("workload-{i}"), "workload");
            let at = SocketAddr::new(ip(block, n), app.addr.port());
            inbounds.push(control.inbound(&host, at).await);
            hosts.push(host);
        }
        let registry = yaml(vip, [inbounds[0], inbounds[1]]);
        control.publish(snapshot(2, &registry)).await;
        let mut world = Self {
            control,
            front,
            hosts,
            vip,
        };
        for h in &mut world.hosts {
            world.control.start_xds(h);
            h.ready().await;
        }
        world.control.start_xds(&mut world.front);
        world.front.ready().await;
        world
    }

    /// One plain TCP connection to the VIP: sends `payload`, then the answer (the app's name).
    pub async fn tcp(&self, payload: &[u8]) -> String {
        let mut tcp = TcpStream::connect(self.vip).await.unwrap();
        tcp.write_all(payload).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut answer = String::new();
        let read = tokio::time::timeout(BOUND, tcp.read_to_string(&mut answer)).await;
        read.expect("an answer within the bound").unwrap();
        answer
    }

    /// One TLS connection to the VIP asking for `server_name`, verified by `connector`: the
    /// certificate the server presented and its answer to `payload`.
    pub async fn tls(
        &self,
        connector: &TlsConnector,
        server_name: &str,
        payload: &[u8],
    ) -> std::io::Result<(CertificateDer<'static>, String)> {
        let tcp = TcpStream::connect(self.vip).await?;
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let handshake = tokio::time::timeout(BOUND, connector.connect(name, tcp)).await;
        let mut tls = handshake.expect("the handshake ends within the bound")?;
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        tls.write_all(payload).await?;
        tls.shutdown().await?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await?;
        Ok((cert, answer))
    }
}

//! `hostmesh-control run`: serves the certificate service on the xDS port over TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, control_identity, serving_certificate, tls_incoming};
use hostmesh_ca::service::CertificateService;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::tls::{SpiffeClientVerifier, TrustBundle, server_config};
use hostmesh_ca::token::{TokenKey, UsedTokens};
use hostmesh_ca::{CaPaths, CertificateAuthority, TrustDomain};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::{DEFAULT_CA_DIR, StateArgs};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the xDS and certificate port.
    #[arg(long, env = "HOSTMESH_LISTEN", default_value = "0.0.0.0:15012")]
    listen: SocketAddr,
    #[arg(long, env = "HOSTMESH_CA_DIR", default_value = DEFAULT_CA_DIR)]
    ca_dir: PathBuf,
    /// Trust domain; by default the one the CA was created for.
    #[arg(long, env = "HOSTMESH_TRUST_DOMAIN")]
    trust_domain: Option<TrustDomain>,
    /// Longest lifetime of a workload certificate.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    max_cert_ttl: Duration,
    /// DNS names to put in the server certificate beside its SPIFFE ID (repeatable).
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(args))
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let ca = CertificateAuthority::load(&CaPaths::new(&args.ca_dir), args.trust_domain.as_ref())
        .context("loading the CA")?;
    let ca = Arc::new(ca);
    let tokens = TokenKey::load_or_create(&args.state.token_key())?;
    let used = UsedTokens::load(&args.state.used_tokens())?;
    let policy = SigningPolicy {
        max_ttl: args.max_cert_ttl,
        default_ttl: args.max_cert_ttl,
    };
    let slot = serving_certificate(ca.clone(), args.server_names.clone(), args.max_cert_ttl)?;
    let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots())?;
    let tls = server_config(slot, SpiffeClientVerifier::new(bundle, false), &[b"h2"])?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(
        listen = %listener.local_addr()?,
        trust_domain = %ca.trust_domain(),
        identity = %control_identity(&ca)?,
        ca_not_after = %ca.not_after(),
        max_cert_ttl = ?args.max_cert_ttl,
        state_dir = %args.state.state_dir.display(),
        "hostmesh-control serving"
    );
    let incoming = tls_incoming(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        HANDSHAKE_TIMEOUT,
    );
    let service = CertificateService::new(ca, policy, tokens, used);
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown())
        .await
        .context("serving")?;
    info!("hostmesh-control stopped");
    Ok(())
}

async fn shutdown() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
}

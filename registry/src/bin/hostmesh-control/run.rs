//! `hostmesh-control run`: serves the certificate service on the xDS port over TLS.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use hostmesh_ca::server::{HANDSHAKE_TIMEOUT, control_identity, serving_certificate, tls_incoming};
use hostmesh_ca::service::CertificateService;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::tls::{SpiffeClientVerifier, TrustBundle, server_config};
use hostmesh_ca::token::{TokenKey, UsedTokens};
use hostmesh_ca::{CaPaths, CertificateAuthority};
use hostmesh_registry::model::validate::Context as ModelContext;
use hostmesh_registry::sources::static_files::StaticSource;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::config::{ConfigErrors, ControlConfig, DEFAULT_CONFIG, Settings};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Settings file; flags and environment variables override it.
    #[arg(long, env = "HOSTMESH_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

impl RunArgs {
    /// Defaults, then the file, then flags and environment.
    fn resolve(self) -> Result<ControlConfig, ConfigErrors> {
        let (path, required) = match self.config {
            Some(path) => (path, true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let file = Settings::from_file(&path, required)?;
        self.settings.over(file).validate()
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.resolve().context("invalid settings")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config))
}

async fn serve(args: ControlConfig) -> anyhow::Result<()> {
    let ca = CertificateAuthority::load(&CaPaths::new(&args.ca_dir), args.trust_domain.as_ref())
        .context("loading the CA")?;
    let ca = Arc::new(ca);
    let tokens = TokenKey::load_or_create(&args.state_dir.join("join-token.key"))?;
    let used = UsedTokens::load(&args.state_dir.join("used-join-tokens"))?;
    let policy = SigningPolicy {
        max_ttl: args.max_cert_ttl,
        default_ttl: args.max_cert_ttl,
    };
    let slot = serving_certificate(ca.clone(), args.server_names.clone(), args.max_cert_ttl)?;
    let bundle = TrustBundle::new(ca.trust_domain().clone(), ca.roots())?;
    let tls = server_config(slot, SpiffeClientVerifier::new(bundle, false), &[b"h2"])?;
    let registry = StaticSource::new(
        &args.registry_dir,
        ModelContext::default(),
        ca.trust_domain().clone(),
    )
    .watch()
    .with_context(|| format!("static registry {}", args.registry_dir.display()))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(
        listen = %listener.local_addr()?,
        trust_domain = %ca.trust_domain(),
        identity = %control_identity(&ca)?,
        ca_not_after = %ca.not_after(),
        max_cert_ttl = ?args.max_cert_ttl,
        state_dir = %args.state_dir.display(),
        registry_dir = %args.registry_dir.display(),
        registry_version = registry.current().snapshot.version(),
        status_listen = %args.status_listen,
        outbound_traffic_policy = ?args.outbound_traffic_policy,
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

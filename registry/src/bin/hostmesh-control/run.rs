//! `hostmesh-control run`: the registry sources (static folder; Kubernetes and Consul when
//! configured; auto-registration fed by the ADS server's stream events) →
//! merge → model snapshots → translation → ADS, with the certificate service on the same TLS
//! port (15012) and the status API on 15014.

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
use hostmesh_registry::sources::auto_registration::AutoRegistration;
use hostmesh_registry::sources::consul::ConsulSource;
use hostmesh_registry::sources::kubernetes::KubernetesSource;
use hostmesh_registry::sources::static_files::StaticSource;
use hostmesh_registry::xds::server::AdsServer;
use hostmesh_registry::xds::server::http::{RegistryPages, serve_status};
use hostmesh_registry::xds::{MeshTranslator, TranslatorConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::config::{ConfigErrors, ControlConfig, DEFAULT_CONFIG, Settings};

/// How long a stop waits for open calls (ADS streams) before it drops them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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
    let translator = MeshTranslator::new(TranslatorConfig {
        trust_domain: ca.trust_domain().clone(),
        outbound_policy: args.outbound_traffic_policy,
        ..TranslatorConfig::default()
    });
    let consul = match args.consul.clone() {
        Some(mut settings) => {
            settings.trust_domain = ca.trust_domain().clone();
            Some(ConsulSource::start(settings).context("starting the Consul source")?)
        }
        None => None,
    };
    let kubernetes = match args.kubernetes.clone() {
        Some(mut settings) => {
            settings.trust_domain = ca.trust_domain().clone();
            Some(
                KubernetesSource::start(settings)
                    .await
                    .context("starting the Kubernetes source")?,
            )
        }
        None => None,
    };
    let (stream_events, events) = mpsc::unbounded_channel();
    let auto_registration = AutoRegistration::start(events, args.auto_registration_grace);
    let (snapshots, report) = crate::registry::start(
        registry.subscribe(),
        consul.as_ref().map(|c| c.subscribe()),
        kubernetes.as_ref().map(|k| k.subscribe()),
        auto_registration.subscribe(),
    );
    let pages = RegistryPages {
        report,
        snapshots: snapshots.clone(),
    };
    let ads = AdsServer::start_with_events(Arc::new(translator), snapshots, Some(stream_events));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let status_listener = TcpListener::bind(args.status_listen)
        .await
        .with_context(|| format!("binding {}", args.status_listen))?;
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(serve_status(
        status_listener,
        ads.clone(),
        Some(pages),
        stopped(stopping.clone()),
    ));
    info!(
        listen = %listener.local_addr()?,
        trust_domain = %ca.trust_domain(),
        identity = %control_identity(&ca)?,
        ca_not_after = %ca.not_after(),
        max_cert_ttl = ?args.max_cert_ttl,
        state_dir = %args.state_dir.display(),
        registry_dir = %args.registry_dir.display(),
        registry_version = registry.current().snapshot.version(),
        consul = args.consul.as_ref().map(|c| c.address.to_string()).unwrap_or_default(),
        kubernetes = kubernetes.is_some(),
        status_listen = %args.status_listen,
        xds_generation = ads.generation(),
        outbound_traffic_policy = ?args.outbound_traffic_policy,
        auto_registration_grace = ?args.auto_registration_grace,
        "hostmesh-control serving"
    );
    let incoming = tls_incoming(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        HANDSHAKE_TIMEOUT,
    );
    let service = CertificateService::new(ca, policy, tokens, used);
    let server = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .add_service(ads.service())
        .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
    // A graceful stop waits for every open call, and ADS streams never end by themselves:
    // after the grace period the remaining streams are dropped (agents reconnect elsewhere
    // or keep serving their last good config).
    let grace_over = async {
        stopped(stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.context("serving")?,
        () = grace_over => {
            info!(grace = ?SHUTDOWN_GRACE, streams = ads.status().len(), "closing the ADS streams still open");
        }
    }
    drop(consul);
    drop(kubernetes);
    drop(auto_registration);
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

//! `hostmesh-agent run`: the daemon, composed here and nowhere else.
//!
//! Start-up, in order (each step's wait is announced with `STATUS=`):
//! 0. on a host that never joined, the root certificate and the join token (a package that
//!    was just installed waits here, intercepting nothing);
//! 1. the control server's address, the trust anchor, this host's certificate
//!    ([`crate::identity`]: stored, or with the join token);
//! 2. the ADS client, and the first complete config: from the control server, or — when it
//!    has not answered within `firstConfigTimeout` and a last good config is stored — from
//!    the state directory ([`crate::store`]); the client keeps reconnecting in the background
//!    and announces what it holds, so the server sends only changes;
//! 3. the proxy's listeners (outbound 15001, inbound 15006), admin (15000), health (15020);
//! 4. the interception table, then the DNS proxy fed by the mesh's name table;
//! 5. `READY=1`; then certificate renewal, persistence of every applied push, and the
//!    liveness checks that feed the watchdog run in the background.
//!
//! On SIGTERM (or SIGINT): not ready, stop accepting, remove the table, drain the
//! connections (bounded), exit 0.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hostmesh_ca::SpiffeId;
use hostmesh_ca::client::CaEndpoint;
use hostmesh_ca::identity::IdentityError;
use hostmesh_ca::server::{CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT};
use hostmesh_ca::tls::{ExpectedServer, TlsError, TrustBundle};
use hostmesh_ca::workload::WorkloadError;
use hostmesh_proxy::drain::{self, DrainTrigger, DrainWatcher};
use hostmesh_proxy::tls::MeshTls;
use hostmesh_proxy::xds::{AdsClient, ClientSettings, MeshNames, NodeIdentity, XdsHandles};
use hostmesh_proxy::{ConfigHandle, PoolSettings, Proxy, Settings};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::{self, AgentView};
use crate::config::AgentConfig;
use crate::dns::{DnsError, DnsProxy, DnsProxyConfig, NameTable, SharedNameTable};
use crate::identity::{self, IdentityRequest};
use crate::liveness::{self, Liveness};
use crate::logging::LogControl;
use crate::nft::{self, InterceptionConfig, InvalidInterception, Nft, NftError};
use crate::store::Store;
use crate::systemd::Notifier;

/// How long connections may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Period of the liveness checks when systemd sets no watchdog.
const LIVENESS_PERIOD: Duration = Duration::from_secs(5);

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Identity(#[from] WorkloadError),
    #[error("reading the trust anchor {path}: {source}")]
    RootCert {
        path: String,
        source: std::io::Error,
    },
    #[error("the trust anchor {path}: {source}")]
    Trust { path: String, source: TlsError },
    #[error("{0}")]
    Id(#[from] IdentityError),
    #[error("could not listen on {addr} ({what}): {source}; is another agent running?")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the stored certificate cannot be used for TLS: {0}")]
    Tls(TlsError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("interception: {0}")]
    Interception(#[from] InvalidInterception),
    #[error("installing the interception table: {0}")]
    Nft(#[from] NftError),
    #[error("certificate renewal stopped: {0}")]
    Renewal(WorkloadError),
    #[error("waiting for a signal: {0}")]
    Signal(std::io::Error),
    #[error("a background task failed: {0}")]
    Task(String),
}

/// Runs the agent until SIGTERM (`Ok`) or a fatal error.
pub async fn run(config: AgentConfig, log: LogControl) -> Result<(), AppError> {
    let notifier = Notifier;
    log_effective(&config);
    identity::wait_for_enrolment(
        &config.state_dir,
        &config.root_cert_path,
        &config.join_token_path,
        &notifier,
    )
    .await;
    let control = resolve_control(&config, &notifier).await;
    let bundle = trust_bundle(&config)?;
    let control_id = SpiffeId::new(
        config.trust_domain().clone(),
        CONTROL_NAMESPACE,
        CONTROL_SERVICE_ACCOUNT,
    )?;
    let endpoint = CaEndpoint {
        address: control.to_string(),
        trust: bundle.clone(),
        server: ExpectedServer::Identity(control_id.clone()),
        timeout: Duration::from_secs(10),
    };
    notifier.status("obtaining this host's certificate");
    let keeper = identity::obtain(
        IdentityRequest {
            endpoint,
            state_dir: &config.state_dir,
            id: &config.identity,
            ttl: config.certificate_ttl,
            token_path: &config.join_token_path,
        },
        &notifier,
    )
    .await?;
    let certificate = keeper.subscribe();
    tracing::info!(id = %config.identity, serial = %certificate.borrow().serial, not_after = %humantime::format_rfc3339_seconds(certificate.borrow().not_after), "identity ready");

    let mark = config
        .interception
        .enabled
        .then_some(config.interception.mark)
        .flatten();
    let tls = MeshTls::new(keeper.slot(), bundle.clone(), Duration::from_secs(10))
        .map_err(AppError::Tls)?;
    let settings = Settings {
        pool: PoolSettings {
            mark,
            ..PoolSettings::default()
        },
        ..Settings::default()
    };
    let proxy = Proxy::new(ConfigHandle::default(), Arc::new(tls), settings);
    let mut metrics = Registry::default();
    proxy.metrics().register(&mut metrics);

    let host_ip = config.host_ip.unwrap_or_else(|| local_ip_towards(control));
    let mut client = ClientSettings::new(
        control,
        control_id,
        bundle,
        keeper.slot(),
        node_identity(&config, host_ip),
    );
    client.backoff_max = Duration::from_secs(15);
    let store = Store::new(&config.state_dir);
    let (xds, source) = first_config(&config, client, proxy.config(), &store, &notifier).await;
    let (source_tx, source_rx) = watch::channel(source);
    tokio::spawn(persist(
        store.clone(),
        xds.applied.clone(),
        xds.names.clone(),
        source_tx,
    ));

    // Listeners: proxy, then admin and health.
    let (drain_trigger, drain_watcher) = drain::channel();
    let outbound = proxy
        .outbound(config.listeners.outbound)
        .await
        .map_err(bind("outbound", config.listeners.outbound))?;
    let inbound = proxy
        .inbound(config.listeners.inbound)
        .await
        .map_err(bind("inbound", config.listeners.inbound))?;
    let probe_targets = vec![
        outbound.local_addr().unwrap_or(config.listeners.outbound),
        inbound.local_addr().unwrap_or(config.listeners.inbound),
    ];
    tokio::spawn(outbound.run(drain_watcher.clone()));
    tokio::spawn(inbound.run(drain_watcher.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let view = Arc::new(AgentView {
        ready: ready.clone(),
        config: proxy.config().clone(),
        applied: xds.applied.clone(),
        names: xds.names.clone(),
        certificate,
        source: source_rx,
        log,
        metrics,
    });
    serve_pages(&config, &view, &drain_watcher).await?;

    // From here on a stop must run the shutdown below (which removes the table), even when it
    // arrives right after READY, before the select waits for it: catch the signals now.
    let mut stop = StopSignals::install().map_err(AppError::Signal)?;

    // Interception, then DNS.
    let interception = install_interception(&config, control, &notifier).await?;
    let dns = start_dns(&config, &store, xds.names.clone()).await?;

    ready.store(true, Ordering::SeqCst);
    let status = format!(
        "ready: serving the config from the {} (version {})",
        *view.source.borrow(),
        view.config.current().version()
    );
    notifier.ready(&status);
    tracing::info!(%status, interception = interception.is_some(), "agent ready");

    let (stop_tx, stop_rx) = watch::channel(false);
    let liveness = Liveness {
        listeners: probe_targets,
        period: notifier
            .watchdog_period()
            .map_or(LIVENESS_PERIOD, |p| p / 2),
        timeout: Duration::from_secs(1),
        notifier,
        interception: interception.clone(),
        fail_mode: config.interception.fail_mode,
    };
    tokio::spawn(liveness.run(stop_rx));
    let renewal = tokio::spawn(keeper.run());

    let outcome = tokio::select! {
        () = stop.wait() => Ok(()),
        renewal = renewal => Err(match renewal {
            Ok(e) => AppError::Renewal(e),
            Err(e) => AppError::Task(e.to_string()),
        }),
    };
    ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    shutdown(
        &notifier,
        drain_trigger,
        drain_watcher,
        interception,
        dns,
        xds,
    )
    .await;
    outcome
}

fn log_effective(config: &AgentConfig) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        control = %config.control_address,
        identity = %config.identity,
        workload = %config.workload_name,
        workload_group = ?config.workload_group,
        labels = ?config.labels,
        host_ip = ?config.host_ip,
        inbound_ports = ?config.inbound_ports,
        outbound = %config.listeners.outbound,
        inbound = %config.listeners.inbound,
        admin = %config.admin_addr(),
        health = %config.health_addr(),
        interception = ?config.interception,
        dns = ?config.dns,
        state_dir = %config.state_dir.display(),
        join_token = %config.join_token_path.display(),
        root_cert = %config.root_cert_path.display(),
        certificate_ttl = ?config.certificate_ttl,
        first_config_timeout = ?config.first_config_timeout,
        "hostmesh-agent starting"
    );
}

/// The control server's address; a name is resolved again until it resolves.
async fn resolve_control(config: &AgentConfig, notifier: &Notifier) -> SocketAddr {
    let target = config.control_address.to_string();
    let mut announced = false;
    loop {
        match tokio::net::lookup_host(&target).await.map(|mut a| a.next()) {
            Ok(Some(addr)) => return addr,
            Ok(None) => {}
            Err(error) if !announced => {
                tracing::warn!(%error, control = %target, "cannot resolve the control server")
            }
            Err(_) => {}
        }
        if !announced {
            notifier.status(&format!("resolving the control server {target}"));
            announced = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn trust_bundle(config: &AgentConfig) -> Result<TrustBundle, AppError> {
    let path = config.root_cert_path.display().to_string();
    let pem = std::fs::read(&config.root_cert_path).map_err(|source| AppError::RootCert {
        path: path.clone(),
        source,
    })?;
    TrustBundle::from_pem(config.trust_domain().clone(), &pem)
        .map_err(|source| AppError::Trust { path, source })
}

/// The address this host would reach `control` from (no packet is sent).
fn local_ip_towards(control: SocketAddr) -> IpAddr {
    let unspecified = SocketAddr::new(
        if control.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        },
        0,
    );
    UdpSocket::bind(unspecified)
        .and_then(|s| s.connect(control).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(unspecified.ip())
}

fn node_identity(config: &AgentConfig, ip: IpAddr) -> NodeIdentity {
    NodeIdentity {
        ip,
        instance_ips: vec![ip],
        name: config.workload_name.clone(),
        namespace: config.identity.namespace().to_owned(),
        domain: "cluster.local".to_owned(),
        labels: config.labels.clone(),
        auto_register_group: config.workload_group.clone(),
        locality: config.locality.clone(),
    }
}

/// Starts the ADS client and returns once a complete config is applied, with where it came
/// from.
async fn first_config(
    config: &AgentConfig,
    client: ClientSettings,
    handle: &ConfigHandle,
    store: &Store,
    notifier: &Notifier,
) -> (XdsHandles, &'static str) {
    let saved = match store.load_xds() {
        Ok(saved) => saved,
        Err(error) => {
            tracing::warn!(%error, "the stored config cannot be used");
            None
        }
    };
    let mut xds = AdsClient::start(client.clone(), handle.clone());
    notifier.status(&format!(
        "waiting for the first config from the control server at {}",
        client.address
    ));
    if let Some(saved) = saved {
        let fresh = tokio::time::timeout(config.first_config_timeout, async {
            xds.ready.wait_for(|r| *r).await.is_ok()
        })
        .await;
        if fresh == Ok(true) {
            return (xds, "control server");
        }
        xds.task.abort();
        match AdsClient::restore(client.clone(), handle.clone(), &saved) {
            Ok(restored) if *restored.ready.borrow() => {
                tracing::warn!(control = %client.address, resources = saved.len(), "the control server did not answer in time; serving the last good config while reconnecting");
                return (restored, "last good config");
            }
            Ok(restored) => {
                tracing::warn!("the stored config is incomplete; waiting for the control server");
                xds = restored;
            }
            Err(reasons) => {
                tracing::warn!(%reasons, "the stored config was refused; waiting for the control server");
                xds = AdsClient::start(client, handle.clone());
            }
        }
    }
    // Nothing usable stored: only the control server can make this host useful.
    let _ = xds.ready.wait_for(|r| *r).await;
    (xds, "control server")
}

/// Writes every applied config and name table to the store.
async fn persist(
    store: Store,
    mut applied: watch::Receiver<Arc<hostmesh_proxy::xds::Resources>>,
    mut names: watch::Receiver<Arc<MeshNames>>,
    source: watch::Sender<&'static str>,
) {
    // Only what came from the control server is written (a restored set is on disk already).
    let fresh = *source.borrow() == "control server";
    if !fresh {
        applied.borrow_and_update();
        names.borrow_and_update();
    }
    loop {
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() { return; }
                let raw = applied.borrow_and_update().raw();
                source.send_replace("control server");
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.save_xds(&raw)).await {
                    Ok(Ok(())) => tracing::debug!("last good config stored"),
                    Ok(Err(error)) => tracing::warn!(%error, "could not store the last good config"),
                    Err(error) => tracing::warn!(%error, "could not store the last good config"),
                }
            }
            changed = names.changed() => {
                if changed.is_err() { return; }
                let current = names.borrow_and_update().clone();
                if let Err(error) = store.save_names(&current) {
                    tracing::warn!(%error, "could not store the DNS names");
                }
            }
        }
    }
}

fn bind(what: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> AppError {
    move |source| AppError::Bind { what, addr, source }
}

async fn serve_pages(
    config: &AgentConfig,
    view: &Arc<AgentView>,
    drain: &DrainWatcher,
) -> Result<(), AppError> {
    let admin_addr = config.admin_addr();
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .map_err(bind("admin", admin_addr))?;
    let health_addr = config.health_addr();
    let health_listener = TcpListener::bind(health_addr)
        .await
        .map_err(bind("health", health_addr))?;
    let v = view.clone();
    let admin = Arc::new(move |req: &crate::http::Request<'_>| admin::admin(&v, req));
    tokio::spawn(crate::http::serve(
        "admin",
        admin_listener,
        admin,
        drain.clone(),
    ));
    let v = view.clone();
    let health = Arc::new(move |req: &crate::http::Request<'_>| admin::health(&v, req));
    tokio::spawn(crate::http::serve(
        "health",
        health_listener,
        health,
        drain.clone(),
    ));
    Ok(())
}

async fn install_interception(
    config: &AgentConfig,
    control: SocketAddr,
    notifier: &Notifier,
) -> Result<Option<(Nft, InterceptionConfig)>, AppError> {
    if !config.interception.enabled {
        tracing::info!("interception is off: only traffic sent to the proxy's ports is meshed");
        return Ok(None);
    }
    notifier.status("installing the interception table");
    let spec = crate::config::interception_spec(config, vec![control]);
    let table = spec.validate()?;
    let nft = Nft::with_program(config.interception.nft.clone());
    let (n, t) = (nft.clone(), table.clone());
    tokio::task::spawn_blocking(move || nft::install(&n, &t))
        .await
        .map_err(|e| AppError::Task(e.to_string()))??;
    Ok(Some((nft, table)))
}

async fn start_dns(
    config: &AgentConfig,
    store: &Store,
    mut names: watch::Receiver<Arc<MeshNames>>,
) -> Result<Option<DnsProxy>, AppError> {
    if !config.dns.enabled {
        return Ok(None);
    }
    let current = names.borrow_and_update().clone();
    let initial = if current.names.is_empty() {
        store
            .load_names()
            .ok()
            .flatten()
            .map(|stored| table_of(stored.into_iter()))
            .unwrap_or_default()
    } else {
        mesh_table(&current)
    };
    let table: SharedNameTable = initial.shared();
    let dns_config = DnsProxyConfig {
        listen: vec![config.dns.listen],
        resolv_conf: config.dns.resolv_conf.clone(),
        mark: config
            .interception
            .enabled
            .then_some(config.interception.mark)
            .flatten(),
        ..DnsProxyConfig::default()
    };
    let proxy = DnsProxy::start(&dns_config, table.clone()).await?;
    tokio::spawn(async move {
        while names.changed().await.is_ok() {
            let next = mesh_table(&names.borrow_and_update());
            tracing::info!(names = next.len(), "DNS name table updated");
            table.store(Arc::new(next));
        }
    });
    Ok(Some(proxy))
}

fn mesh_table(names: &MeshNames) -> NameTable {
    table_of(
        names
            .names
            .iter()
            .map(|(n, info)| (n.clone(), info.ips.clone())),
    )
}

/// A table of every valid name; an invalid one is left out with a warning.
fn table_of(entries: impl Iterator<Item = (String, Vec<IpAddr>)>) -> NameTable {
    let mut valid = Vec::new();
    for (name, ips) in entries {
        match NameTable::new([(name.as_str(), Vec::new())]) {
            Ok(_) => valid.push((name, ips)),
            Err(error) => tracing::warn!(%error, "left out of the DNS table"),
        }
    }
    NameTable::new(valid).unwrap_or_default()
}

/// SIGTERM and SIGINT, caught from the moment this is made.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

async fn shutdown(
    notifier: &Notifier,
    trigger: DrainTrigger,
    watcher: DrainWatcher,
    interception: Option<(Nft, InterceptionConfig)>,
    dns: Option<DnsProxy>,
    xds: XdsHandles,
) {
    notifier.stopping();
    // Stop accepting first: the drain signal reaches every listener at once.
    drop(watcher);
    let drained = tokio::spawn(trigger.drain());
    if let Some((nft, _)) = interception {
        match tokio::task::spawn_blocking(move || nft::remove(&nft)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "could not remove the interception table; run `hostmesh-agent cleanup`")
            }
            Err(error) => {
                tracing::error!(%error, "could not remove the interception table; run `hostmesh-agent cleanup`")
            }
        }
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing them");
    }
    if let Some(dns) = dns {
        dns.shutdown().await;
    }
    xds.task.abort();
    tracing::info!("hostmesh-agent stopped");
}

/// Where a listener bound to a wildcard address is dialled, for tests and checks.
pub fn local_probe(addr: SocketAddr) -> SocketAddr {
    liveness::probe_addr(addr)
}

//! Is the proxy answering? Every period each listener is dialled (a TCP connection accepted
//! within a bound). While they answer, systemd's watchdog is fed. After
//! [`FAILURES_ALLOWED`] failed rounds in a row the agent acts on the interception table as
//! configured, and says which in its log:
//!
//! - fail **open** (default): the table is removed, so the host's traffic flows directly
//!   (outside the mesh) instead of into a dead proxy; it is installed again on recovery;
//! - fail **closed**: the table stays and intercepted traffic stops until the proxy is back.
//!
//! The watchdog is not fed while failing, so systemd (with `WatchdogSec=`) restarts the agent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::FailMode;
use crate::nft::{self, InterceptionConfig, Nft};
use crate::systemd::Notifier;

/// Failed rounds in a row before the proxy counts as not answering.
pub const FAILURES_ALLOWED: u32 = 3;

/// The listeners to dial and what to do about the table.
#[derive(Debug)]
pub struct Liveness {
    pub listeners: Vec<SocketAddr>,
    pub period: Duration,
    pub timeout: Duration,
    pub notifier: Notifier,
    /// The installed table, if interception is on.
    pub interception: Option<(Nft, InterceptionConfig)>,
    pub fail_mode: FailMode,
}

/// Where to dial a listener bound to `addr` (a wildcard address is dialled on loopback).
pub fn probe_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

impl Liveness {
    /// Checks until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut failing = false;
        let mut tick = tokio::time::interval(self.period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match self.check().await {
                Ok(()) => {
                    failures = 0;
                    if failing {
                        failing = false;
                        self.recovered().await;
                    }
                    self.notifier.watchdog();
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "the proxy did not answer");
                    if failures >= FAILURES_ALLOWED && !failing {
                        failing = true;
                        self.failed(&error).await;
                    }
                }
            }
        }
    }

    async fn check(&self) -> Result<(), String> {
        for &addr in &self.listeners {
            let target = probe_addr(addr);
            match tokio::time::timeout(self.timeout, TcpStream::connect(target)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{target}: {e}")),
                Err(_) => return Err(format!("{target}: no answer within {:?}", self.timeout)),
            }
        }
        Ok(())
    }

    async fn failed(&self, error: &str) {
        let Some((nft, _)) = &self.interception else {
            tracing::error!(error, "the proxy is not answering (interception is off)");
            return;
        };
        match self.fail_mode {
            FailMode::Open => {
                let nft = nft.clone();
                let removed = tokio::task::spawn_blocking(move || nft::remove(&nft)).await;
                tracing::error!(error, removed = ?removed.map(|r| r.map_err(|e| e.to_string())), "the proxy is not answering; fail-open: interception table removed, the host's traffic now bypasses the mesh");
            }
            FailMode::Closed => tracing::error!(
                error,
                "the proxy is not answering; fail-closed: interception table kept, intercepted traffic stops until the proxy answers"
            ),
        }
    }

    async fn recovered(&self) {
        tracing::info!("the proxy answers again");
        if let (Some((nft, config)), FailMode::Open) = (&self.interception, self.fail_mode) {
            let (nft, config) = (nft.clone(), config.clone());
            match tokio::task::spawn_blocking(move || nft::install(&nft, &config)).await {
                Ok(Ok(())) => tracing::info!("interception table installed again"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not install the interception table again")
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not install the interception table again")
                }
            }
        }
    }
}

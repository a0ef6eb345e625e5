//! Telling systemd how the agent is doing (`Type=notify`): `STATUS=` lines while it starts
//! (what it waits for), `READY=1` once everything is up, `WATCHDOG=1` while the proxy answers,
//! `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// The agent's messages to the service manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    pub fn status(&self, status: &str) {
        tracing::info!(status, "status");
        send(&[NotifyState::Status(status)]);
    }

    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The watchdog period systemd expects (`WatchdogSec=`), if any.
    pub fn watchdog_period(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "could not notify systemd");
    }
}

//! The auto-registration source: an agent whose node names a `WorkloadGroup`
//! (`AUTO_REGISTER_GROUP`, in its certificate's namespace) is a workload of that group while
//! its ADS stream is connected, and for a grace period after the stream ends, so that a
//! reconnect within the period changes nothing (no flap).
//!
//! Input: the ADS server's [`StreamEvent`]s on a channel. Output: a [`SourceView`] with
//! [`Registration`]s (no services, no objects) on a `watch`, revised only when the set of
//! registrations changes; the merge makes them `WorkloadEntry`s of their groups and checks
//! the group and its service account (the source does not know the groups). A node whose
//! announcement is not valid (a group name that is not a name, bad labels) is rejected alone
//! while it is connected.
//!
//! Owns: which nodes are registered and until when. Must not touch: the groups, the merge,
//! xDS (it reads nothing back from the server).

mod state;

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::merge::SourceView;
use crate::sources::health::SourceStatus;
use crate::xds::server::StreamEvent;
use state::Registry;

/// How long a workload stays registered after its stream ended: Istio's default
/// (`PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The source's view and health.
#[derive(Debug, Clone)]
pub struct AutoRegistrationView {
    pub view: SourceView,
    pub status: SourceStatus,
}

/// The running source; stops when dropped.
#[derive(Debug)]
pub struct AutoRegistration {
    rx: watch::Receiver<AutoRegistrationView>,
    task: JoinHandle<()>,
}

impl AutoRegistration {
    /// Follows `events` until their senders are gone. Must be called inside a tokio runtime.
    pub fn start(events: mpsc::UnboundedReceiver<StreamEvent>, grace_period: Duration) -> Self {
        let registry = Registry::new(grace_period);
        let (tx, rx) = watch::channel(registry.view());
        let task = tokio::spawn(follow(registry, events, tx));
        Self { rx, task }
    }

    pub fn subscribe(&self) -> watch::Receiver<AutoRegistrationView> {
        self.rx.clone()
    }
}

impl Drop for AutoRegistration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(
    mut registry: Registry,
    mut events: mpsc::UnboundedReceiver<StreamEvent>,
    tx: watch::Sender<AutoRegistrationView>,
) {
    loop {
        let expiry = registry.next_expiry();
        let changed = tokio::select! {
            event = events.recv() => match event {
                Some(event) => registry.apply(event, Instant::now()),
                None => break,
            },
            () = sleep_until(expiry) => registry.expire(Instant::now()),
        };
        if changed {
            tx.send_replace(registry.view());
        }
    }
    tracing::info!("the ADS server is gone; auto-registration stops");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! Graceful shutdown: a [`DrainTrigger`] tells every listener and connection holding a
//! [`DrainWatcher`] to stop taking new work, then waits until all of them have let go.

use tokio::sync::watch;

/// Starts a drain and waits for it to finish.
#[derive(Debug)]
pub struct DrainTrigger(watch::Sender<bool>);

/// Held by whatever must finish before the drain completes.
#[derive(Debug, Clone)]
pub struct DrainWatcher(watch::Receiver<bool>);

pub fn channel() -> (DrainTrigger, DrainWatcher) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger(tx), DrainWatcher(rx))
}

impl DrainTrigger {
    /// Signals the drain, then resolves once every watcher has been dropped. Callers bound
    /// the wait with their own timeout.
    pub async fn drain(self) {
        let _ = self.0.send(true);
        self.0.closed().await;
    }
}

impl DrainWatcher {
    /// Resolves when a drain has been signalled (or the trigger is gone).
    pub async fn signaled(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_watcher() {
        let (trigger, watcher) = channel();
        let mut w = watcher.clone();
        let conn = tokio::spawn(async move {
            w.signaled().await;
        });
        drop(watcher);
        let drained = tokio::spawn(trigger.drain());
        assert!(conn.await.is_ok());
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(5), drained)
                .await
                .is_ok()
        );
    }
}

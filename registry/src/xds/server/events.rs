//! What the ADS server tells the rest of the control server about its streams, on a channel
//! given to [`AdsServer::start_with_events`](super::AdsServer::start_with_events): a node
//! was accepted (certificate and node checked), a stream ended. The auto-registration source
//! turns them into workloads; the server itself never reads them back.

use tokio::sync::mpsc;

use crate::xds::NodeInfo;

/// One stream's start or end. A `Disconnected` follows every `Connected` with the same
/// connection number, however the stream ends.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Connected { connection: u64, node: NodeInfo },
    Disconnected { connection: u64 },
}

/// Sends `Disconnected` when dropped: held by the stream's task, so that a stream ending in
/// any way (including a panic) is reported.
#[derive(Debug)]
pub(super) struct ConnectedGuard {
    events: Option<mpsc::UnboundedSender<StreamEvent>>,
    connection: u64,
}

impl ConnectedGuard {
    /// Reports the connection (when anyone listens) and returns the guard of its end.
    pub(super) fn new(
        events: Option<&mpsc::UnboundedSender<StreamEvent>>,
        connection: u64,
        node: &NodeInfo,
    ) -> Self {
        let events = events.filter(|tx| {
            tx.send(StreamEvent::Connected {
                connection,
                node: node.clone(),
            })
            .is_ok()
        });
        Self {
            events: events.cloned(),
            connection,
        }
    }
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        if let Some(tx) = &self.events {
            let _ = tx.send(StreamEvent::Disconnected {
                connection: self.connection,
            });
        }
    }
}

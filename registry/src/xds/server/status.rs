//! What each connected node runs: per type URL the version it ACKed and its last NACK.
//!
//! Streams update their own entry under a short per-connection lock; the table's lock is
//! taken only to add or remove a connection and to read the whole table, never while a
//! response is sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Which of the two ADS protocols a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `StreamAggregatedResources`.
    StateOfTheWorld,
    /// `DeltaAggregatedResources`.
    Delta,
}

/// A rejected version and the client's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub version: String,
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

/// One type URL on one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStatus {
    /// The version last sent (state of the world: `version_info`; delta:
    /// `system_version_info`, the server's generation).
    pub sent: Option<String>,
    /// The version the node runs: the last one it ACKed.
    pub acked: Option<String>,
    /// The last NACK on this stream. It stays after later ACKs: compare its version with
    /// `acked`.
    pub nack: Option<Nack>,
}

/// One connected node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Unique per connection in this process.
    pub connection: u64,
    pub id: String,
    /// The SPIFFE ID of the client certificate.
    pub identity: String,
    pub address: Option<SocketAddr>,
    /// RFC 3339.
    pub connected_since: String,
    pub mode: Mode,
    /// By type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

type Entries = BTreeMap<u64, Arc<Mutex<NodeStatus>>>;

/// Every connected node's status.
#[derive(Debug)]
pub struct StatusTable {
    entries: Mutex<Entries>,
    changes: watch::Sender<u64>,
    /// Responses sent and NACKs received since the start, over every stream.
    pushes: AtomicU64,
    nacks: AtomicU64,
}

impl Default for StatusTable {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            changes: watch::Sender::new(0),
            pushes: AtomicU64::new(0),
            nacks: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusTable {
    /// A copy of every entry, by connection.
    pub fn list(&self) -> Vec<NodeStatus> {
        let entries: Vec<_> = lock(&self.entries).values().cloned().collect();
        entries.iter().map(|e| lock(e).clone()).collect()
    }

    /// Responses sent and NACKs received since the start.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.pushes.load(Ordering::Relaxed),
            self.nacks.load(Ordering::Relaxed),
        )
    }

    /// A counter bumped on every change (connect, disconnect, send, ACK, NACK).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Adds a connection; it leaves the table when the returned entry is dropped.
    pub fn register(
        self: &Arc<Self>,
        connection: u64,
        id: String,
        identity: String,
        address: Option<SocketAddr>,
        mode: Mode,
    ) -> StatusEntry {
        let status = Arc::new(Mutex::new(NodeStatus {
            connection,
            id,
            identity,
            address,
            connected_since: now(),
            mode,
            types: BTreeMap::new(),
        }));
        lock(&self.entries).insert(connection, status.clone());
        self.bump();
        StatusEntry {
            table: self.clone(),
            connection,
            status,
        }
    }
}

/// A stream's own row of the [`StatusTable`].
#[derive(Debug)]
pub struct StatusEntry {
    table: Arc<StatusTable>,
    connection: u64,
    status: Arc<Mutex<NodeStatus>>,
}

impl StatusEntry {
    fn update(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        f(lock(&self.status)
            .types
            .entry(type_url.to_owned())
            .or_default());
        self.table.bump();
    }

    pub fn sent(&self, type_url: &str, version: &str) {
        self.table.pushes.fetch_add(1, Ordering::Relaxed);
        self.update(type_url, |t| t.sent = Some(version.to_owned()));
    }

    pub fn acked(&self, type_url: &str, version: &str) {
        self.update(type_url, |t| {
            t.acked = Some(version.to_owned());
        });
    }

    pub fn nacked(&self, type_url: &str, version: &str, message: &str) {
        self.table.nacks.fetch_add(1, Ordering::Relaxed);
        self.update(type_url, |t| {
            t.nack = Some(Nack {
                version: version.to_owned(),
                message: message.to_owned(),
                at: now(),
            });
        });
    }
}

impl Drop for StatusEntry {
    fn drop(&mut self) {
        lock(&self.table.entries).remove(&self.connection);
        self.table.bump();
    }
}

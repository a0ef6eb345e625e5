//! The registrations and their lifetimes, without I/O or a clock of its own (the caller
//! passes the time), so that the grace period is tested exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::AutoRegistrationView;
use crate::merge::{Precedence, Rejection, SourceView};
use crate::model::registration::NodeClaim;
use crate::model::{ObjectKey, Provenance, Registration, SourceName};
use crate::sources::health::{SourceStatus, now_rfc3339};
use crate::xds::NodeInfo;
use crate::xds::server::StreamEvent;

/// One registered workload and the streams that keep it.
#[derive(Debug)]
struct Registered {
    registration: Registration,
    connections: BTreeSet<u64>,
    /// When the last stream ended; the entry goes `grace` after this.
    gone_since: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Registry {
    grace: Duration,
    source: SourceName,
    entries: BTreeMap<ObjectKey, Registered>,
    by_connection: HashMap<u64, ObjectKey>,
    /// Nodes connected now whose announcement is not valid.
    invalid: BTreeMap<u64, Rejection>,
    revision: u64,
    last_update: Option<String>,
}

/// Equal apart from provenance: a reconnect that announces the same does not change the view.
fn same_claims(a: &Registration, b: &Registration) -> bool {
    (
        &a.ip,
        &a.labels,
        &a.network,
        &a.locality,
        &a.identity,
        &a.node,
        &a.group,
    ) == (
        &b.ip,
        &b.labels,
        &b.network,
        &b.locality,
        &b.identity,
        &b.node,
        &b.group,
    )
}

impl Registry {
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            source: SourceName::new(SourceName::AUTO_REGISTRATION),
            entries: BTreeMap::new(),
            by_connection: HashMap::new(),
            invalid: BTreeMap::new(),
            revision: 0,
            last_update: None,
        }
    }

    /// Applies one event; true when the view changed.
    pub(super) fn apply(&mut self, event: StreamEvent, now: Instant) -> bool {
        let changed = match event {
            StreamEvent::Connected { connection, node } => self.connected(connection, &node),
            StreamEvent::Disconnected { connection } => self.disconnected(connection, now),
        };
        self.bump(changed)
    }

    /// Removes the entries whose grace period is over; true when the view changed.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let grace = self.grace;
        let before = self.entries.len();
        self.entries.retain(|key, r| {
            let keep = r.gone_since.is_none_or(|since| now < since + grace);
            if !keep {
                info!(entry = %key, node = %r.registration.node, "auto-registered workload removed after its grace period");
            }
            keep
        });
        let changed = self.entries.len() != before;
        self.bump(changed)
    }

    /// When the next entry's grace period ends.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|r| r.gone_since)
            .min()
            .map(|since| since + self.grace)
    }

    fn bump(&mut self, changed: bool) -> bool {
        if changed {
            self.revision += 1;
            self.last_update = Some(now_rfc3339());
        }
        changed
    }

    fn connected(&mut self, connection: u64, node: &NodeInfo) -> bool {
        let (Some(group), Some(ip)) = (node.workload_group.as_deref(), node.ip) else {
            return false;
        };
        let claim = NodeClaim {
            group,
            ip,
            labels: &node.labels,
            network: node.network.as_deref(),
            locality: node.locality.as_deref(),
            identity: &node.identity,
            node: &node.id,
        };
        let provenance = Provenance::new(self.source.clone(), "", self.revision + 1);
        let mut registration = match Registration::new(claim, provenance) {
            Ok(r) => r,
            Err(e) => {
                warn!(node = %node.id, group, reason = %e, "auto-registration refused");
                self.invalid.insert(
                    connection,
                    Rejection {
                        source: self.source.to_string(),
                        object: format!("node {}", node.id),
                        reason: format!("cannot auto-register in WorkloadGroup {group:?}: {e}"),
                    },
                );
                return true;
            }
        };
        // `WorkloadEntry demo/vm-10-0-0-7 (node sidecar~10.0.0.7~…)`.
        registration.provenance.object = registration.to_string().into();
        let key = registration.entry.clone();
        self.by_connection.insert(connection, key.clone());
        match self.entries.get_mut(&key) {
            Some(r) => {
                r.connections.insert(connection);
                r.gone_since = None;
                if same_claims(&r.registration, &registration) {
                    return false;
                }
                r.registration = registration;
                true
            }
            None => {
                info!(entry = %key, node = %node.id, "workload auto-registered");
                self.entries.insert(
                    key,
                    Registered {
                        registration,
                        connections: BTreeSet::from([connection]),
                        gone_since: None,
                    },
                );
                true
            }
        }
    }

    fn disconnected(&mut self, connection: u64, now: Instant) -> bool {
        if self.invalid.remove(&connection).is_some() {
            return true;
        }
        let Some(key) = self.by_connection.remove(&connection) else {
            return false;
        };
        if let Some(r) = self.entries.get_mut(&key) {
            r.connections.remove(&connection);
            if r.connections.is_empty() {
                info!(entry = %key, grace = ?self.grace, "auto-registered workload disconnected; kept for its grace period");
                r.gone_since = Some(now);
            }
        }
        false
    }

    pub(super) fn view(&self) -> AutoRegistrationView {
        let registrations: Vec<Registration> = self
            .entries
            .values()
            .map(|r| r.registration.clone())
            .collect();
        let rejected: Vec<Rejection> = self.invalid.values().cloned().collect();
        let status = SourceStatus {
            name: self.source.to_string(),
            healthy: true,
            last_update: self.last_update.clone(),
            revision: self.revision,
            endpoints: registrations.len(),
            objects: registrations.len(),
            rejected: rejected.len(),
            ..SourceStatus::default()
        };
        let view = SourceView {
            revision: self.revision,
            registrations: registrations.into(),
            rejected: rejected.into(),
            ..SourceView::empty(self.source.clone(), Precedence::AutoRegistration)
        };
        AutoRegistrationView { view, status }
    }
}

#[cfg(test)]
mod tests;

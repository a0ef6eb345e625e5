//! The merge's inputs and outputs: what a source hands in, what the merge reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{ConfigObject, ObjectKey, Registration, Service, Snapshot, SourceName};

/// The rank of a source: lower wins. See the module documentation for the order's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precedence {
    Static,
    Kubernetes,
    Consul,
    /// Defines no host and no object, only workloads that other sources' `ServiceEntry`s
    /// select; last, so it can never override anything.
    AutoRegistration,
}

/// One source's full view of its part of the mesh.
#[derive(Debug, Clone)]
pub struct SourceView {
    pub source: SourceName,
    pub precedence: Precedence,
    /// The source's own revision of this view; changes only when its contents change.
    pub revision: u64,
    /// Services with their endpoints and provenance, built by the source.
    pub services: Arc<[Arc<Service>]>,
    /// Routing and policy objects (and the Istio objects the services were built from).
    pub objects: Arc<BTreeMap<ObjectKey, ConfigObject>>,
    /// What the source itself refused, one entry per object, with the reason.
    pub rejected: Arc<[Rejection]>,
    /// Workloads that registered themselves into a `WorkloadGroup`: each becomes a
    /// `WorkloadEntry` from its group's template, selected by the `ServiceEntry`s of its
    /// namespace whatever their source.
    pub registrations: Arc<[Registration]>,
}

impl SourceView {
    /// An empty view (a source that has not produced anything yet).
    pub fn empty(source: SourceName, precedence: Precedence) -> Self {
        Self {
            source,
            precedence,
            revision: 0,
            services: Arc::from(Vec::new()),
            objects: Arc::default(),
            rejected: Arc::from(Vec::new()),
            registrations: Arc::from(Vec::new()),
        }
    }
}

/// An object refused alone, with the reason; the rest of its source goes on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rejection {
    pub source: String,
    /// The object in the source's terms.
    pub object: String,
    pub reason: String,
}

/// What two sources disagreed about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// The same host name defined by two sources.
    Host,
    /// The same declared address (VIP) claimed by two hosts.
    Address,
    /// The same config object (kind, namespace, name) from two sources.
    Object,
}

/// A conflict, resolved by the precedence: `winner` is kept, `loser` is not (for an
/// address: the losing host keeps its other addresses, or gets an allocated VIP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// The host name, address or object key disputed.
    pub subject: String,
    pub winner_source: String,
    pub winner_object: String,
    pub loser_source: String,
    pub loser_object: String,
    /// How the definitions differ (ports), or what the loser lost.
    pub detail: String,
}

/// One line for operators: `Host web.service.consul: static (…) kept over consul (…); …`.
impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {}: {} ({}) kept over {} ({}); {}",
            self.kind,
            self.subject,
            self.winner_source,
            self.winner_object,
            self.loser_source,
            self.loser_object,
            self.detail
        )
    }
}

/// The merge's result.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    pub snapshot: Snapshot,
    /// Sorted, so that equal inputs give equal reports.
    pub conflicts: Vec<Conflict>,
    /// The sources' own rejections and the merge's, sorted.
    pub rejected: Vec<Rejection>,
}

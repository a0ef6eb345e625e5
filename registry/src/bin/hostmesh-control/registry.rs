//! The registry as `hostmesh-control run` composes it: the static folder, (when configured)
//! Kubernetes and Consul, and the auto-registered workloads, merged into one snapshot stream
//! for the ADS server, and the report
//! (per-source health, conflicts, rejections) for the status API.
//!
//! A new snapshot (and version) is made only when a source's contents changed; health
//! changes alone update the report. Sources never wait for each other: each publishes on
//! its own channel and the merge reads whatever each last published.

use std::sync::Arc;

use hostmesh_registry::merge::{MergeOutcome, Precedence, Rejection, SourceView, merge};
use hostmesh_registry::model::{Snapshot, SourceName};
use hostmesh_registry::sources::auto_registration::AutoRegistrationView;
use hostmesh_registry::sources::consul::ConsulView;
use hostmesh_registry::sources::health::{RegistryReport, SourceStatus, now_rfc3339};
use hostmesh_registry::sources::kubernetes::KubernetesView;
use hostmesh_registry::sources::static_files::StaticView;
use tokio::sync::watch;
use tracing::{info, warn};

/// The static registry's view for the merge.
fn static_view(v: &StaticView) -> SourceView {
    let rejected: Vec<Rejection> = v
        .errors
        .iter()
        .map(|e| Rejection {
            source: SourceName::STATIC.to_owned(),
            object: e
                .object
                .clone()
                .unwrap_or_else(|| e.file.display().to_string()),
            reason: e.to_string(),
        })
        .collect();
    SourceView {
        revision: v.snapshot.version(),
        services: v.snapshot.services().to_vec().into(),
        objects: v.snapshot.object_map().clone(),
        rejected: rejected.into(),
        ..SourceView::empty(SourceName::new(SourceName::STATIC), Precedence::Static)
    }
}

fn static_status(v: &SourceView, last_update: &str) -> SourceStatus {
    SourceStatus {
        name: SourceName::STATIC.to_owned(),
        healthy: true,
        last_update: Some(last_update.to_owned()),
        revision: v.revision,
        services: v.services.len(),
        endpoints: v.services.iter().map(|s| s.endpoints.len()).sum(),
        objects: v.objects.len(),
        rejected: v.rejected.len(),
        ..SourceStatus::default()
    }
}

struct Merger {
    statics: watch::Receiver<StaticView>,
    consul: Option<watch::Receiver<ConsulView>>,
    kubernetes: Option<watch::Receiver<KubernetesView>>,
    auto: watch::Receiver<AutoRegistrationView>,
    version: u64,
    /// The revisions of the views last merged.
    merged: Vec<u64>,
    static_updated: String,
    last: Option<MergeOutcome>,
}

impl Merger {
    /// Merges when a source's contents changed; returns the new snapshot (if any) and the
    /// report.
    fn step(&mut self) -> (Option<Snapshot>, RegistryReport) {
        let statics = static_view(&self.statics.borrow_and_update());
        let consul = self.consul.as_mut().map(|c| c.borrow_and_update().clone());
        let kubernetes = self
            .kubernetes
            .as_mut()
            .map(|k| k.borrow_and_update().clone());
        let mut views = vec![statics];
        let mut sources = Vec::new();
        if let Some(k) = &kubernetes {
            views.push(k.view.clone());
        }
        if let Some(c) = &consul {
            views.push(c.view.clone());
        }
        let auto = self.auto.borrow_and_update().clone();
        views.push(auto.view.clone());
        let revisions: Vec<u64> = views.iter().map(|v| v.revision).collect();
        let mut snapshot = None;
        if self.last.is_none() || revisions != self.merged {
            if self.merged.first() != revisions.first() {
                self.static_updated = now_rfc3339();
            }
            self.version += 1;
            let outcome = merge(self.version, &views);
            for r in outcome
                .rejected
                .iter()
                .filter(|r| r.source == SourceName::AUTO_REGISTRATION)
            {
                warn!(object = %r.object, reason = %r.reason, "auto-registration refused");
            }
            for c in &outcome.conflicts {
                warn!(kind = ?c.kind, subject = %c.subject, winner = %c.winner_source, loser = %c.loser_source, detail = %c.detail, "registry conflict");
            }
            info!(
                version = self.version,
                services = outcome.snapshot.services().len(),
                conflicts = outcome.conflicts.len(),
                rejected = outcome.rejected.len(),
                "registry merged"
            );
            snapshot = Some(outcome.snapshot.clone());
            hostmesh_registry::drop_later::drop_later(self.last.replace(outcome));
            self.merged = revisions;
        }
        sources.push(static_status(&views[0], &self.static_updated));
        if let Some(k) = kubernetes {
            sources.push(k.status);
        }
        if let Some(c) = consul {
            sources.push(c.status);
        }
        sources.push(auto.status);
        let (conflicts, rejected) = self
            .last
            .as_ref()
            .map(|o| (o.conflicts.clone(), o.rejected.clone()))
            .unwrap_or_default();
        let report = RegistryReport {
            version: self.version,
            sources,
            conflicts,
            rejected,
        };
        (snapshot, report)
    }
}

/// Starts the merge task: snapshots for the ADS server, reports for the status API.
pub fn start(
    statics: watch::Receiver<StaticView>,
    consul: Option<watch::Receiver<ConsulView>>,
    kubernetes: Option<watch::Receiver<KubernetesView>>,
    auto: watch::Receiver<AutoRegistrationView>,
) -> (
    watch::Receiver<Snapshot>,
    watch::Receiver<Arc<RegistryReport>>,
) {
    let mut merger = Merger {
        statics,
        consul,
        kubernetes,
        auto,
        version: 0,
        merged: Vec::new(),
        static_updated: now_rfc3339(),
        last: None,
    };
    let (first, report) = merger.step();
    let (snap_tx, snap_rx) = watch::channel(first.unwrap_or_default());
    let (report_tx, report_rx) = watch::channel(Arc::new(report));
    tokio::spawn(async move {
        loop {
            let changed = tokio::select! {
                r = merger.statics.changed() => r.is_ok(),
                r = merger.auto.changed() => r.is_ok(),
                r = changed(merger.consul.as_mut()) => r,
                r = changed(merger.kubernetes.as_mut()) => r,
            };
            if !changed {
                break;
            }
            let (snapshot, report) = merger.step();
            if let Some(s) = snapshot
                && snap_tx.send(s).is_err()
            {
                break;
            }
            report_tx.send_replace(Arc::new(report));
        }
    });
    (snap_rx, report_rx)
}

/// When an optional source publishes: false when it is gone, never for an absent one.
async fn changed<T>(source: Option<&mut watch::Receiver<T>>) -> bool {
    match source {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

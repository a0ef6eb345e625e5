//! Applying one xDS response: the changes go into a copy of the held resources, the copy is
//! converted and validated (no lock held), and only then does the runtime config swap (one
//! atomic store). A response that cannot be honoured is refused whole with its reasons; what
//! was held stays, and so does the running config.
//!
//! A response may leave the config incomplete (a new EDS cluster before its assignment, a
//! listener before its route configuration): it is accepted and the swap waits for the
//! missing pieces. Readiness flips once a complete config, with clusters and listeners both
//! received, has been applied.
//!
//! Every swap publishes the resources behind it ([`XdsState::applied`]), as received, so the
//! agent can keep them as its last good config; [`XdsState::restore`] replays such a set.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use tokio::sync::watch;

use super::convert::{self, Context};
use super::name_table::MeshNames;
use super::resources::{RawResource, ResourceType, Resources};
use super::wire::{Rejection, Rejections};
use crate::{ConfigHandle, ProxyConfig};

/// One response's content for one type.
#[derive(Debug, Clone)]
pub enum Update {
    /// Delta: these resources changed, these went away.
    Delta {
        upserts: Vec<(String, String, Any)>,
        removals: Vec<String>,
    },
    /// State of the world: the whole set (for wildcard types) or the named resources (for
    /// EDS/RDS, whose set is what the client subscribes to).
    Sotw {
        version: String,
        resources: Vec<Any>,
    },
}

/// What an accepted response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The runtime config was replaced.
    Swapped,
    /// Accepted; the config waits for these.
    Pending(Vec<String>),
}

/// The held resources and where accepted results go.
#[derive(Debug)]
pub struct XdsState {
    held: Resources,
    ctx: Context,
    config: ConfigHandle,
    names: watch::Sender<Arc<MeshNames>>,
    ready: watch::Sender<bool>,
    applied: watch::Sender<Arc<Resources>>,
    received: [bool; 2],
    swaps: u64,
}

impl XdsState {
    pub fn new(ctx: Context, config: ConfigHandle) -> Self {
        Self {
            held: Resources::default(),
            ctx,
            config,
            names: watch::Sender::new(Arc::default()),
            ready: watch::Sender::new(false),
            applied: watch::Sender::new(Arc::default()),
            received: [false; 2],
            swaps: 0,
        }
    }

    pub fn held(&self) -> &Resources {
        &self.held
    }

    /// The mesh's DNS names, as last accepted.
    pub fn names(&self) -> watch::Receiver<Arc<MeshNames>> {
        self.names.subscribe()
    }

    /// Flips to `true` once a complete config has been applied, and stays.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// The resources behind the running config, republished at every swap.
    pub fn applied(&self) -> watch::Receiver<Arc<Resources>> {
        self.applied.subscribe()
    }

    /// Replays a stored set of resources (a previous [`XdsState::applied`]) as one update:
    /// the whole set is converted and validated, then swapped in, or refused with nothing
    /// changed.
    pub fn restore(&mut self, saved: &[RawResource]) -> Result<Applied, Rejections> {
        let mut next = Resources::default();
        let mut decode_errors = Vec::new();
        for r in saved {
            if let Err(problem) = next.insert(r.ty, Some(r.name.clone()), r.version.clone(), &r.any)
            {
                decode_errors.push(reject(r.ty, &r.name, problem));
            }
        }
        if !decode_errors.is_empty() {
            return Err(Rejections(decode_errors));
        }
        let received = [!next.clusters.is_empty(), !next.listeners.is_empty()];
        self.commit(next, "restored".to_owned(), received)
    }

    /// Applies one response of type `ty`, or refuses it (nothing changes).
    pub fn apply(&mut self, ty: ResourceType, update: Update) -> Result<Applied, Rejections> {
        let mut next = self.held.clone();
        let mut decode_errors = Vec::new();
        let version = match update {
            Update::Delta { upserts, removals } => {
                for name in &removals {
                    next.remove(ty, name);
                }
                for (name, version, any) in upserts {
                    if let Err(problem) = next.insert(ty, Some(name.clone()), version, &any) {
                        decode_errors.push(reject(ty, &name, problem));
                    }
                }
                format!("{ty} delta")
            }
            Update::Sotw { version, resources } => {
                if ty.wildcard() {
                    next.retain(ty, |_| false);
                }
                for any in resources {
                    if let Err(problem) = next.insert(ty, None, version.clone(), &any) {
                        decode_errors.push(reject(ty, "", problem));
                    }
                }
                if !ty.wildcard() {
                    let wanted = next.wanted(ty);
                    next.retain(ty, |n| wanted.contains(n));
                }
                format!("{ty} {version}")
            }
        };
        if !decode_errors.is_empty() {
            return Err(Rejections(decode_errors));
        }
        let mut received = self.received;
        match ty {
            ResourceType::Cluster => received[0] = true,
            ResourceType::Listener => received[1] = true,
            _ => {}
        }
        self.commit(next, version, received)
    }

    /// Converts and validates `next`; swaps it in when complete, holds it when not.
    fn commit(
        &mut self,
        next: Resources,
        version: String,
        received: [bool; 2],
    ) -> Result<Applied, Rejections> {
        let converted = convert::convert(&next, &self.ctx)?;
        if !converted.pending.is_empty() {
            tracing::debug!(%version, pending = ?converted.pending, "accepted; config incomplete");
            self.held = next;
            self.received = received;
            self.publish_names(converted.names);
            return Ok(Applied::Pending(converted.pending));
        }
        let mut spec = converted.spec;
        self.swaps += 1;
        spec.version = format!("{} ({version})", self.swaps);
        let built = ProxyConfig::build(&spec).map_err(|errors| {
            Rejections(
                errors
                    .0
                    .into_iter()
                    .map(|e| Rejection {
                        kind: "config",
                        name: e.at,
                        problem: e.problem,
                    })
                    .collect(),
            )
        })?;
        self.held = next;
        self.received = received;
        self.publish_names(converted.names);
        self.config.replace(built);
        self.applied.send_replace(Arc::new(self.held.clone()));
        if received == [true, true] {
            self.ready.send_if_modified(|r| !std::mem::replace(r, true));
        }
        Ok(Applied::Swapped)
    }

    fn publish_names(&self, names: MeshNames) {
        self.names.send_if_modified(|current| {
            if **current == names {
                return false;
            }
            *current = Arc::new(names);
            true
        });
    }
}

fn reject(ty: ResourceType, name: &str, problem: String) -> Rejection {
    let kind = match ty {
        ResourceType::Cluster => "Cluster",
        ResourceType::Endpoint => "ClusterLoadAssignment",
        ResourceType::Listener => "Listener",
        ResourceType::Route => "RouteConfiguration",
        ResourceType::NameTable => "NameTable",
    };
    Rejection {
        kind,
        name: name.to_owned(),
        problem,
    }
}

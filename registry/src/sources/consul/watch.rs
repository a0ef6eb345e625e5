//! The running Consul source: one blocking-query loop on `/v1/catalog/services`, and one per
//! service on `/v1/health/service/<name>?passing=1`. Each answer updates the source's
//! state and publishes a [`ConsulView`] (its [`SourceView`] and [`SourceStatus`]) through a
//! `watch` channel.
//!
//! A failing query (Consul down, slow, refusing the token) marks the source unhealthy with
//! the error and retries with backoff (100 ms doubling to `max_backoff`, ±25 % jitter); the
//! services it had stay as they were, so the rest of the mesh is never blocked and the
//! source catches up with the next good answer (the retry after a failure does not block, so
//! a quiet service answers at once and the source is healthy as soon as Consul is back). The view's revision moves only when its
//! contents change; health changes alone publish a new status with the same revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client::ConsulClient;
use super::convert::{Converted, convert};
use super::error::ConsulError;
use super::index::{Advance, BlockingIndex};
use super::settings::ConsulSettings;
use crate::merge::{Precedence, Rejection, SourceView};
use crate::model::{Service, SourceName};
use crate::sources::backoff::Backoff;
use crate::sources::health::{SourceStatus, now_rfc3339};

/// The service every Consul server registers for itself; not a mesh service.
const CONSUL_SELF: &str = "consul";
/// The catalog's key among the queries in error.
const CATALOG: &str = "/v1/catalog/services";

/// What the source publishes.
#[derive(Debug, Clone)]
pub struct ConsulView {
    pub view: SourceView,
    pub status: SourceStatus,
}

/// The running source. Dropping it stops every query.
#[derive(Debug)]
pub struct ConsulSource {
    rx: watch::Receiver<ConsulView>,
    task: JoinHandle<()>,
}

impl Drop for ConsulSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConsulSource {
    /// Starts following Consul. The first view is empty and unhealthy until the catalog
    /// answers. Must be called inside a tokio runtime.
    pub fn start(settings: ConsulSettings) -> Result<Self, ConsulError> {
        let client = ConsulClient::new(&settings)?;
        let state = State::default();
        let (tx, rx) = watch::channel(state.view());
        info!(address = %settings.address, datacenter = settings.datacenter.as_deref().unwrap_or("(agent's)"),
            tag = settings.tag.as_deref().unwrap_or(""), wait = ?settings.wait, timeout = ?client.timeout(),
            "following Consul");
        let shared = Arc::new(Shared {
            settings,
            client,
            state: Mutex::new(state),
            tx,
        });
        let task = tokio::spawn(follow_catalog(shared));
        Ok(Self { rx, task })
    }

    pub fn subscribe(&self) -> watch::Receiver<ConsulView> {
        self.rx.clone()
    }

    pub fn current(&self) -> ConsulView {
        self.rx.borrow().clone()
    }
}

#[derive(Debug, Default)]
struct State {
    services: BTreeMap<String, Converted>,
    /// Query → its last error, while it fails.
    failing: BTreeMap<String, String>,
    last_error: Option<(String, String)>,
    last_update: Option<String>,
    revision: u64,
    synced: bool,
    filtered: bool,
}

impl State {
    fn view(&self) -> ConsulView {
        let services: Vec<Arc<Service>> = self
            .services
            .values()
            .filter_map(|c| c.service.clone().map(Arc::new))
            .collect();
        let rejected: Vec<Rejection> = self
            .services
            .values()
            .flat_map(|c| c.rejected.iter().cloned())
            .collect();
        let status = SourceStatus {
            name: SourceName::CONSUL.to_owned(),
            healthy: self.synced && self.failing.is_empty(),
            last_error: self.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: self.last_error.as_ref().map(|(_, at)| at.clone()),
            last_update: self.last_update.clone(),
            revision: self.revision,
            services: services.len(),
            endpoints: services.iter().map(|s| s.endpoints.len()).sum(),
            objects: 0,
            rejected: rejected.len(),
            note: self.filtered.then(|| {
                "Consul filtered results by ACLs: the token cannot read every service".to_owned()
            }),
        };
        let view = SourceView {
            revision: self.revision,
            services: services.into(),
            rejected: rejected.into(),
            ..SourceView::empty(SourceName::new(SourceName::CONSUL), Precedence::Consul)
        };
        ConsulView { view, status }
    }
}

struct Shared {
    settings: ConsulSettings,
    client: ConsulClient,
    state: Mutex<State>,
    tx: watch::Sender<ConsulView>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &State) {
        self.tx.send_replace(state.view());
    }

    fn failed(&self, query: &str, error: &ConsulError) {
        warn!(query, error = %error, "Consul query failed; keeping the last good view");
        let mut state = self.lock();
        state.failing.insert(query.to_owned(), error.to_string());
        state.last_error = Some((error.to_string(), now_rfc3339()));
        self.publish(&state);
    }

    /// Applies a change (when `change` returns true the revision moves) and clears the
    /// query's error.
    fn succeeded(&self, query: &str, filtered: bool, change: impl FnOnce(&mut State) -> bool) {
        let mut state = self.lock();
        let recovered = state.failing.remove(query).is_some();
        if query == CATALOG {
            state.synced = true;
            state.filtered = filtered;
        }
        if change(&mut state) {
            state.revision += 1;
            state.last_update = Some(now_rfc3339());
            self.publish(&state);
        } else if recovered || query == CATALOG {
            self.publish(&state);
        }
        if recovered {
            info!(query, "Consul query answers again");
        }
    }
}

/// The per-service loops, stopped when dropped.
#[derive(Default)]
struct Watchers(HashMap<String, JoinHandle<()>>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn follow_catalog(shared: Arc<Shared>) {
    let mut index = BlockingIndex::default();
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    let mut watchers = Watchers::default();
    loop {
        let answer = match shared.client.catalog_services(index.get()).await {
            Ok(answer) => answer,
            Err(e) => {
                shared.failed(CATALOG, &e);
                index.failed();
                tokio::time::sleep(backoff.pause()).await;
                continue;
            }
        };
        backoff.reset();
        if index.advance(answer.index) == Advance::Reset {
            info!(
                index = answer.index,
                "Consul's catalog index went backwards; reading it again from 0"
            );
        }
        let tag = shared.settings.tag.as_deref();
        let wanted: BTreeSet<String> = answer
            .body
            .into_iter()
            .filter(|(name, tags)| {
                name != CONSUL_SELF && tag.is_none_or(|t| tags.iter().any(|x| x == t))
            })
            .map(|(name, _)| name)
            .collect();
        let gone: Vec<String> = watchers
            .0
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in &gone {
            if let Some(task) = watchers.0.remove(name) {
                task.abort();
            }
            debug!(service = %name, "left the Consul catalog");
        }
        for name in &wanted {
            if !watchers.0.contains_key(name) {
                let task = tokio::spawn(follow_service(shared.clone(), name.clone()));
                watchers.0.insert(name.clone(), task);
            }
        }
        shared.succeeded(CATALOG, answer.filtered_by_acls, |state| {
            let mut changed = false;
            for name in &gone {
                state.failing.remove(name);
                changed |= state.services.remove(name).is_some();
            }
            changed
        });
    }
}

async fn follow_service(shared: Arc<Shared>, name: String) {
    let mut index = BlockingIndex::default();
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    let settings = &shared.settings;
    loop {
        let answer = match shared
            .client
            .healthy_instances(&name, settings.tag.as_deref(), index.get())
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                shared.failed(&name, &e);
                index.failed();
                tokio::time::sleep(backoff.pause()).await;
                continue;
            }
        };
        backoff.reset();
        if index.advance(answer.index) == Advance::Reset {
            info!(service = %name, index = answer.index, "Consul's index went backwards; reading the service again from 0");
        }
        let converted = convert(&name, &answer.body, answer.index, settings);
        for r in &converted.rejected {
            warn!(object = %r.object, reason = %r.reason, "Consul instance rejected");
        }
        shared.succeeded(&name, answer.filtered_by_acls, |state| {
            let old = state.services.get(&name);
            // The service's own revision (the query index) moves on every answer; compare
            // what the mesh sees.
            let same = old.is_some_and(|old| same_content(old, &converted));
            if !same {
                state.services.insert(name.clone(), converted);
            }
            !same
        });
    }
}

fn same_content(a: &Converted, b: &Converted) -> bool {
    let strip = |c: &Converted| {
        c.service.as_ref().map(|s| {
            let mut s = s.clone();
            s.provenance.revision = Arc::from("");
            s
        })
    };
    a.rejected == b.rejected && strip(a) == strip(b)
}

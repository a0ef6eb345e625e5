//! The running Kubernetes source: one kube `watcher` per kind and namespace (or one
//! cluster-wide per kind) for `Service` and `EndpointSlice`, and, once API discovery finds
//! `networking.istio.io`, for `ServiceEntry` and `WorkloadEntry`. Each watcher lists, then
//! watches from the list's resource version with bookmarks; on `410 Gone` it lists again,
//! and the list replaces what that watcher had (nothing lost, nothing doubled). Every
//! change rebuilds the view and publishes a [`KubernetesView`] when its contents changed.
//!
//! An error marks the source unhealthy with the reason and the watcher retries with backoff
//! (100 ms doubling to `max_backoff`); the objects it had stay, so the mesh keeps the last
//! good view. The source is healthy again when every failing watch has had an answer from
//! the API server (see [`super::connect`]). A `410 Gone` is the protocol working, not an
//! outage: it is logged and does not touch health.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::connect::{Answered, kube_config, observed_client};
use super::discovery::find_resources;
use super::error::KubernetesError;
use super::istio;
use super::settings::KubernetesSettings;
pub use super::state::KubernetesView;
use super::state::{Key, State};
use crate::sources::backoff::Backoff;
use crate::sources::health::now_rfc3339;

/// The health entry of API discovery.
const DISCOVERY: &str = "discovery networking.istio.io";

/// The running source. Dropping it stops every watch.
#[derive(Debug)]
pub struct KubernetesSource {
    rx: watch::Receiver<KubernetesView>,
    task: JoinHandle<()>,
}

impl Drop for KubernetesSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    settings: KubernetesSettings,
    config: Config,
    state: Mutex<State>,
    tx: watch::Sender<KubernetesView>,
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

    fn failed(&self, watch: &str, error: &dyn std::fmt::Display) {
        warn!(watch, error = %error, "Kubernetes watch failed; keeping the last good view");
        let mut state = self.lock();
        state.failing.insert(watch.to_owned(), error.to_string());
        state.last_error = Some((format!("{watch}: {error}"), now_rfc3339()));
        self.publish(&state);
    }

    /// Applies a change to the objects and republishes when the view or health moved.
    fn update(&self, watch: &str, change: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        let before = (state.unsynced.len(), state.crds);
        change(&mut state);
        let health_moved = before != (state.unsynced.len(), state.crds);
        let recovered = state.failing.remove(watch).is_some();
        if recovered {
            info!(watch, "Kubernetes watch answers again");
        }
        let changed = state.rebuild(&self.settings);
        if changed || recovered || health_moved {
            self.publish(&state);
        }
    }

    /// A client for one watch (its answers clear the watch's error).
    fn client(self: &Arc<Self>, watch: &str) -> Result<Client, KubernetesError> {
        observed_client(&self.config, watch, self.clone())
    }
}

impl Answered for Shared {
    fn answered(&self, watch: &str) {
        let mut state = self.lock();
        if state.failing.remove(watch).is_some() {
            info!(watch, "Kubernetes API server answers again");
            self.publish(&state);
        }
    }
}

impl KubernetesSource {
    /// Connects (reads the credentials) and starts the watches. The first view is empty
    /// and unhealthy until every watch has listed. Must be called inside a tokio runtime.
    pub async fn start(settings: KubernetesSettings) -> Result<Self, KubernetesError> {
        let config = kube_config(&settings).await?;
        let state = State::default();
        let (tx, rx) = watch::channel(state.view());
        let namespaces = if settings.namespaces.is_empty() {
            "all".to_owned()
        } else {
            settings
                .namespaces
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        info!(server = %config.cluster_url, namespaces, cluster_domain = %settings.cluster_domain,
            "following Kubernetes");
        let shared = Arc::new(Shared {
            settings,
            config,
            state: Mutex::new(state),
            tx,
        });
        let task = tokio::spawn(run(shared));
        Ok(Self { rx, task })
    }

    pub fn subscribe(&self) -> watch::Receiver<KubernetesView> {
        self.rx.clone()
    }

    pub fn current(&self) -> KubernetesView {
        self.rx.borrow().clone()
    }
}

/// Which store of the state a watch fills.
type Store<K> = fn(&mut State) -> &mut BTreeMap<Key, K>;

/// Starts the Service and EndpointSlice watches, then follows API discovery for the CRDs.
async fn run(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let namespaces: Vec<Option<String>> = if shared.settings.namespaces.is_empty() {
        vec![None]
    } else {
        shared
            .settings
            .namespaces
            .iter()
            .map(|n| Some(n.as_str().to_owned()))
            .collect()
    };
    {
        let mut state = shared.lock();
        state.unsynced.insert(DISCOVERY.to_owned());
    }
    for ns in &namespaces {
        spawn_typed::<KubeService>(&mut tasks, &shared, "services", ns, |s| &mut s.services);
        spawn_typed::<EndpointSlice>(&mut tasks, &shared, "endpointslices", ns, |s| &mut s.slices);
    }
    let resources = discover(&shared).await;
    for ns in &namespaces {
        if let Some(r) = &resources.0 {
            spawn_dynamic(&mut tasks, &shared, r, ns, |s| &mut s.service_entries);
        }
        if let Some(r) = &resources.1 {
            spawn_dynamic(&mut tasks, &shared, r, ns, |s| &mut s.workload_entries);
        }
    }
    // Only now: the CRD watches are in `unsynced`, so the source is not healthy before
    // they have listed.
    shared.update(DISCOVERY, |state| {
        state.crds = Some(true);
        state.unsynced.remove(DISCOVERY);
    });
    while tasks.join_next().await.is_some() {}
}

fn watch_id(plural: &str, ns: &Option<String>) -> String {
    match ns {
        Some(ns) => format!("{plural} in {ns}"),
        None => plural.to_owned(),
    }
}

fn spawn_typed<K>(
    tasks: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    plural: &str,
    ns: &Option<String>,
    store: Store<K>,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let id = watch_id(plural, ns);
    let client = match shared.client(&id) {
        Ok(c) => c,
        Err(e) => return shared.failed(&id, &e),
    };
    let api: Api<K> = match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    shared.lock().unsynced.insert(id.clone());
    tasks.spawn(follow(shared.clone(), api, id, ns.clone(), store));
}

fn spawn_dynamic(
    tasks: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    resource: &ApiResource,
    ns: &Option<String>,
    store: Store<DynamicObject>,
) {
    let id = watch_id(&format!("{}.{}", resource.plural, resource.group), ns);
    let client = match shared.client(&id) {
        Ok(c) => c,
        Err(e) => return shared.failed(&id, &e),
    };
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client, ns, resource),
        None => Api::all_with(client, resource),
    };
    shared.lock().unsynced.insert(id.clone());
    tasks.spawn(follow(shared.clone(), api, id, ns.clone(), store));
}

fn key_of<K: Resource>(o: &K) -> Key {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// One watch: list (replacing this watch's part of the store), then apply events.
async fn follow<K>(
    shared: Arc<Shared>,
    api: Api<K>,
    id: String,
    namespace: Option<String>,
    store: Store<K>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut listing: Option<BTreeMap<Key, K>> = None;
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => {
                backoff.reset();
                event
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                info!(watch = %id, reason = %status.message, "resource version gone (410); listing again");
                continue;
            }
            Err(e) => {
                shared.failed(&id, &e);
                tokio::time::sleep(backoff.pause()).await;
                continue;
            }
        };
        match event {
            Event::Init => listing = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                listing.get_or_insert_default().insert(key_of(&o), o);
            }
            Event::InitDone => {
                let fresh = listing.take().unwrap_or_default();
                debug!(watch = %id, objects = fresh.len(), "listed");
                shared.update(&id, |state| {
                    let map = store(state);
                    map.retain(|(ns, _), _| namespace.as_ref().is_some_and(|mine| ns != mine));
                    map.extend(fresh);
                    state.unsynced.remove(&id);
                });
            }
            Event::Apply(o) => shared.update(&id, |state| {
                store(state).insert(key_of(&o), o);
            }),
            Event::Delete(o) => shared.update(&id, |state| {
                store(state).remove(&key_of(&o));
            }),
        }
    }
}

/// Finds the CRDs' resources, retrying on errors; `(ServiceEntry, WorkloadEntry)`, each
/// `None` when not served. While neither is served it reports that and looks again every
/// `crd_recheck`; it returns once they are (or when no client can be made).
async fn discover(shared: &Arc<Shared>) -> (Option<ApiResource>, Option<ApiResource>) {
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    let client = match shared.client(DISCOVERY) {
        Ok(c) => c,
        Err(e) => {
            shared.failed(DISCOVERY, &e);
            return (None, None);
        }
    };
    loop {
        match find_resources(&client).await {
            Ok(found) if found.0.is_some() || found.1.is_some() => {
                info!(
                    group = istio::GROUP,
                    "Istio CRDs served; watching ServiceEntry and WorkloadEntry"
                );
                return found;
            }
            Ok(_) => {
                shared.update(DISCOVERY, |state| {
                    state.crds = Some(false);
                    state.unsynced.remove(DISCOVERY);
                });
                debug!(group = istio::GROUP, "Istio CRDs not served");
                tokio::time::sleep(shared.settings.crd_recheck).await;
            }
            Err(e) => {
                shared.failed(DISCOVERY, &e);
                tokio::time::sleep(backoff.pause()).await;
            }
        }
    }
}

//! A Kubernetes API server **emulator** for tests — not Kubernetes. It serves, over real
//! HTTP (on 127.0.0.1 unless a [`Listen`] says otherwise), the part of the Kubernetes API (v1.33) that hostmesh reads, following
//! the documented API concepts ("Efficient detection of changes", "Resource versions",
//! "Watch bookmarks", "Retrieving large results sets in chunks"):
//!
//! - Resources: `v1` `services`, `discovery.k8s.io/v1` `endpointslices`, and (when the CRDs
//!   are "installed") `networking.istio.io/v1` `serviceentries` and `workloadentries`, both
//!   cluster-wide (`/api/v1/services`) and per namespace (`/api/v1/namespaces/NS/services`).
//! - One `resourceVersion` counter for every write, as etcd's revision: each object carries
//!   the version of its last write, each list the version it was read at.
//! - Lists honour `limit` with `continue` tokens (later pages read at the first page's
//!   version; a token older than the compaction gets `410 Gone`).
//! - `?watch=true&resourceVersion=R` streams newline-delimited JSON watch events
//!   (`ADDED`, `MODIFIED`, `DELETED`) for every change after R; R unset or `0` starts with
//!   `ADDED` for each current object. `allowWatchBookmarks=true` adds `BOOKMARK` events
//!   (an object of the kind with only `metadata.resourceVersion`) every bookmark interval.
//!   `timeoutSeconds` ends the stream, as the API server does.
//! - A watch from a version older than the last compaction gets `200` and one `ERROR` event
//!   whose object is a `Status` with code 410 (reason `Expired`), then the stream ends: this
//!   is what the API server sends for a watch (an HTTP 410 answers only a list).
//! - API discovery: `/apis`, `/apis/networking.istio.io`, `/apis/networking.istio.io/v1`;
//!   without the CRDs these are absent and answer 404 with a `Status`, like any unknown path.
//! - A bearer token is required (`401 Unauthorized` otherwise), as with a kubeconfig user.
//!
//! Test controls: [`KubeEmulator::stop`]/[`KubeEmulator::resume`] (an outage),
//! [`KubeEmulator::close_watches`] (the server ending streams), [`KubeEmulator::compact`],
//! [`KubeEmulator::hold_watches`] (new watches wait, so a change can fall between a client's
//! watches), and the request log.
mod http;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Listen;
use crate::server::Server;

pub const TOKEN: &str = "emulator-token";

/// A resource the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    Services,
    EndpointSlices,
    ServiceEntries,
    WorkloadEntries,
}

impl Res {
    pub const ALL: [Res; 4] = [
        Res::Services,
        Res::EndpointSlices,
        Res::ServiceEntries,
        Res::WorkloadEntries,
    ];

    /// The path prefix of its group version.
    pub fn prefix(self) -> &'static str {
        match self {
            Res::Services => "/api/v1",
            Res::EndpointSlices => "/apis/discovery.k8s.io/v1",
            Res::ServiceEntries | Res::WorkloadEntries => "/apis/networking.istio.io/v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Res::Services => "services",
            Res::EndpointSlices => "endpointslices",
            Res::ServiceEntries => "serviceentries",
            Res::WorkloadEntries => "workloadentries",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Res::Services => "Service",
            Res::EndpointSlices => "EndpointSlice",
            Res::ServiceEntries => "ServiceEntry",
            Res::WorkloadEntries => "WorkloadEntry",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Res::Services => "v1",
            Res::EndpointSlices => "discovery.k8s.io/v1",
            Res::ServiceEntries | Res::WorkloadEntries => "networking.istio.io/v1",
        }
    }

    fn is_crd(self) -> bool {
        matches!(self, Res::ServiceEntries | Res::WorkloadEntries)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Change {
    rv: u64,
    res: Res,
    namespace: String,
    name: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
pub(crate) struct Data {
    rv: u64,
    /// Watches from a version below this get 410.
    compacted: u64,
    /// Every write since the start (the state at any version is a replay).
    log: Vec<Change>,
    objects: BTreeMap<(Res, String, String), Value>,
}

impl Data {
    /// The objects of `res` (in `namespace`, if given) as of version `rv`.
    fn state_at(&self, res: Res, namespace: Option<&str>, rv: u64) -> Vec<Value> {
        let mut state: BTreeMap<(String, String), Value> = BTreeMap::new();
        for c in self.log.iter().take_while(|c| c.rv <= rv) {
            if c.res != res || namespace.is_some_and(|ns| ns != c.namespace) {
                continue;
            }
            let key = (c.namespace.clone(), c.name.clone());
            if c.kind == "DELETED" {
                state.remove(&key);
            } else {
                state.insert(key, c.object.clone());
            }
        }
        state.into_values().collect()
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) data: Mutex<Data>,
    /// The latest resource version, for watchers.
    pub(crate) changed: watch::Sender<u64>,
    /// Moves to end every open watch.
    pub(crate) close: watch::Sender<u64>,
    /// While true, new watches wait before answering.
    pub(crate) held: watch::Sender<bool>,
    pub(crate) crds: Mutex<bool>,
    pub(crate) bookmark_every: Mutex<Duration>,
    pub(crate) requests: Mutex<Vec<String>>,
    pub(crate) bookmarks_sent: Mutex<u64>,
}

/// The emulator. Stops serving when dropped.
#[derive(Debug)]
pub struct KubeEmulator {
    inner: Arc<Inner>,
    server: Server,
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

impl KubeEmulator {
    /// Serves on a free port of 127.0.0.1; Istio's CRDs are installed when `crds`.
    pub async fn start(crds: bool) -> Self {
        Self::start_on(Listen::default(), crds).await
    }

    /// [`KubeEmulator::start`] on the socket `listen` makes.
    pub async fn start_on(listen: Listen, crds: bool) -> Self {
        let inner = Arc::new(Inner {
            data: Mutex::new(Data {
                rv: 100,
                ..Data::default()
            }),
            changed: watch::channel(100).0,
            close: watch::channel(0).0,
            held: watch::channel(false).0,
            crds: Mutex::new(crds),
            bookmark_every: Mutex::new(Duration::from_secs(60)),
            requests: Mutex::new(Vec::new()),
            bookmarks_sent: Mutex::new(0),
        });
        let state = inner.clone();
        let server = Server::start(listen, move |request| http::answer(state.clone(), request));
        Self { inner, server }
    }

    /// `http://ADDRESS:PORT` (`http://127.0.0.1:PORT` by default).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// A kubeconfig for the emulator (context `emulator`, a bearer token).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n\
             contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n\
             current-context: emulator\nusers:\n- name: emulator\n  user:\n    token: {TOKEN}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml()).unwrap();
        path
    }

    /// Every request (`METHOD path?query`) received so far.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// How many list requests (not watches) of `res` were served.
    pub fn lists_of(&self, res: Res) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                let path = r.split('?').next().unwrap_or_default();
                path.ends_with(&format!("/{}", res.plural())) && !r.contains("watch=true")
            })
            .count()
    }

    pub fn bookmarks_sent(&self) -> u64 {
        *self.inner.bookmarks_sent.lock().unwrap()
    }

    pub fn resource_version(&self) -> u64 {
        self.inner.data.lock().unwrap().rv
    }

    pub fn set_bookmark_interval(&self, every: Duration) {
        *self.inner.bookmark_every.lock().unwrap() = every;
    }

    pub fn set_crds(&self, installed: bool) {
        *self.inner.crds.lock().unwrap() = installed;
    }

    /// Creates or replaces an object (its `metadata.namespace` and `name` say which); the
    /// emulator sets `resourceVersion`, `uid` and `creationTimestamp`.
    pub fn apply(&self, res: Res, mut object: Value) {
        let ns = object["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let mut d = self.inner.data.lock().unwrap();
        d.rv += 1;
        let rv = d.rv;
        let key = (res, ns.clone(), name.clone());
        let kind = if d.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        object["kind"] = json!(res.kind());
        object["apiVersion"] = json!(res.api_version());
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
        meta["creationTimestamp"] = json!("2026-11-22T00:00:00Z");
        d.objects.insert(key, object.clone());
        d.log.push(Change {
            rv,
            res,
            namespace: ns,
            name,
            kind,
            object,
        });
        drop(d);
        self.inner.changed.send_replace(rv);
    }

    /// Deletes an object; watchers get `DELETED` with its last state at a new version.
    pub fn delete(&self, res: Res, namespace: &str, name: &str) {
        let mut d = self.inner.data.lock().unwrap();
        let Some(mut object) = d
            .objects
            .remove(&(res, namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        d.rv += 1;
        let rv = d.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        d.log.push(Change {
            rv,
            res,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            kind: "DELETED",
            object,
        });
        drop(d);
        self.inner.changed.send_replace(rv);
    }

    /// Compacts history up to now: a watch from an older version gets 410.
    pub fn compact(&self) {
        let mut d = self.inner.data.lock().unwrap();
        d.compacted = d.rv;
    }

    /// Ends every open watch stream (clients watch again from their last version).
    pub fn close_watches(&self) {
        // Under the data lock: a watch that sees a later write also sees the close.
        let _data = self.inner.data.lock().unwrap();
        self.inner.close.send_modify(|n| *n += 1);
    }

    /// While held, new watch requests wait before they are answered.
    pub fn hold_watches(&self, held: bool) {
        self.inner.held.send_replace(held);
    }

    /// Stops answering: the listener closes and open connections (and watches) are cut.
    pub fn stop(&self) {
        self.server.stop();
        self.close_watches();
    }

    /// Serves again on the same address, with the same data.
    pub async fn resume(&self) {
        self.server.resume();
    }
}

/// A `v1` Service with TCP ports `(name, port)`.
pub fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP", "targetPort": p}))
        .collect();
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": ports}
    })
}

/// An IPv4 EndpointSlice of service `svc`: ready addresses, ports `(name, port)`.
pub fn slice(ns: &str, name: &str, svc: &str, addresses: &[&str], ports: &[(&str, u16)]) -> Value {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true, "serving": true}}))
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP"}))
        .collect();
    json!({
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports
    })
}

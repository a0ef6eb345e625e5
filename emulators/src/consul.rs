//! A Consul **emulator** for tests — not Consul. It serves, over real HTTP (on 127.0.0.1
//! unless a [`Listen`] says otherwise), the two endpoints of Consul's HTTP API v1 that hostmesh uses, following Consul 1.x's
//! documented behaviour:
//!
//! - `GET /v1/catalog/services` (`dc`): service name → tags.
//! - `GET /v1/health/service/<name>` (`dc`, `passing`, `tag`): entries of `Node`, `Service`,
//!   `Checks`; `passing` keeps only entries whose every check passes.
//! - Blocking queries: every answer carries `X-Consul-Index`; with `index=N` the request
//!   waits until the index of what it reads passes N, or `wait` (default 5m, at most 10m)
//!   plus up to `wait/16` of jitter expires, and then answers anyway.
//! - A "restart" ([`ConsulEmulator::restart_with_index`]) sets the index lower, as a restore
//!   from snapshot does; like Consul's state store "abandon" on restore, it wakes every
//!   blocked query, which answers with the lower index. A client that does not reset to 0
//!   then blocks until its wait expires, since the index stays below the one it sends.
//! - ACLs (when a token is configured): a request with an unknown `X-Consul-Token` gets
//!   `403 ACL not found`; a request without a token runs as the anonymous token, which (with
//!   `default_policy = deny`) reads nothing: empty results and
//!   `X-Consul-Results-Filtered-By-ACLs: true`.
//! - An unknown `dc` gets `500 No path to datacenter`.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use rand::Rng;
use serde_json::json;
use tokio::sync::watch;

use crate::Listen;
use crate::server::Server;

/// One registered instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub node: String,
    pub node_address: String,
    /// `Service.Address`; empty means "the node's".
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    pub modify_index: u64,
}

impl Instance {
    pub fn new(id: &str, node_address: &str, port: u16) -> Self {
        Self {
            id: id.into(),
            node: format!("node-{id}"),
            node_address: node_address.into(),
            address: String::new(),
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            status: "passing".into(),
            modify_index: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Data {
    /// The Raft index: moves on every write.
    index: u64,
    catalog_index: u64,
    /// Moves on a restore: blocked queries return at once.
    abandoned: u64,
    services: BTreeMap<String, (u64, Vec<Instance>)>,
}

#[derive(Debug)]
struct Inner {
    data: Mutex<Data>,
    changed: watch::Sender<u64>,
    token: Option<String>,
    datacenter: String,
    requests: Mutex<Vec<String>>,
    /// How many queries are blocked right now.
    blocked: watch::Sender<usize>,
}

/// The emulator. Stops serving when dropped.
#[derive(Debug)]
pub struct ConsulEmulator {
    inner: Arc<Inner>,
    server: Server,
}

impl ConsulEmulator {
    /// Serves on a free port of 127.0.0.1, datacenter `dc1`; ACLs on when `token` is set.
    pub async fn start(token: Option<&str>) -> Self {
        Self::start_on(Listen::default(), token).await
    }

    /// [`ConsulEmulator::start`] on the socket `listen` makes.
    pub async fn start_on(listen: Listen, token: Option<&str>) -> Self {
        let inner = Arc::new(Inner {
            data: Mutex::new(Data {
                index: 10,
                catalog_index: 10,
                ..Data::default()
            }),
            changed: watch::channel(10).0,
            token: token.map(str::to_owned),
            datacenter: "dc1".into(),
            requests: Mutex::new(Vec::new()),
            blocked: watch::channel(0).0,
        });
        let state = inner.clone();
        let server = Server::start(listen, move |request| {
            let inner = state.clone();
            async move { answer(&inner, request).await.map(BodyExt::boxed) }
        });
        Self { inner, server }
    }

    /// `http://ADDRESS:PORT` (`http://127.0.0.1:PORT` by default).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    /// Every request line (`/v1/...?...`) received so far.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until at least `n` queries are blocked; false if not.
    pub async fn until_blocked(&self, n: usize, within: Duration) -> bool {
        let mut rx = self.inner.blocked.subscribe();
        tokio::time::timeout(within, rx.wait_for(|b| *b >= n))
            .await
            .is_ok()
    }

    /// Registers (or replaces, by id) an instance of `service`.
    pub fn register(&self, service: &str, mut instance: Instance) {
        self.write(|d| {
            let index = d.index;
            instance.modify_index = index;
            let entry = d
                .services
                .entry(service.to_owned())
                .or_insert_with(|| (index, Vec::new()));
            entry.0 = index;
            entry.1.retain(|i| i.id != instance.id);
            entry.1.push(instance);
            d.catalog_index = index;
        });
    }

    /// Sets an instance's check status.
    pub fn set_status(&self, service: &str, id: &str, status: &str) {
        self.write(|d| {
            let index = d.index;
            if let Some((i, instances)) = d.services.get_mut(service) {
                *i = index;
                for inst in instances.iter_mut().filter(|x| x.id == id) {
                    inst.status = status.to_owned();
                    inst.modify_index = index;
                }
            }
        });
    }

    /// Removes an instance; the service leaves the catalog with its last instance.
    pub fn deregister(&self, service: &str, id: &str) {
        self.write(|d| {
            let index = d.index;
            if let Some((i, instances)) = d.services.get_mut(service) {
                *i = index;
                instances.retain(|x| x.id != id);
                if instances.is_empty() {
                    d.services.remove(service);
                }
            }
            d.catalog_index = index;
        });
    }

    /// As after a restore from an older snapshot: every index becomes `index` (lower than
    /// before), the data stays.
    pub fn restart_with_index(&self, index: u64) {
        let mut d = self.inner.data.lock().unwrap();
        d.index = index;
        d.catalog_index = index;
        d.abandoned += 1;
        for (i, _) in d.services.values_mut() {
            *i = index;
        }
        drop(d);
        self.inner.changed.send_replace(index);
    }

    /// Stops answering: the listener closes and open connections are cut.
    pub fn stop(&self) {
        self.server.stop();
    }

    /// Serves again on the same address (bound by the same [`Listen`]).
    pub async fn resume(&self) {
        self.server.resume();
    }

    fn write(&self, change: impl FnOnce(&mut Data)) {
        let mut d = self.inner.data.lock().unwrap();
        d.index += 1;
        change(&mut d);
        let index = d.index;
        drop(d);
        self.inner.changed.send_replace(index);
    }
}

fn reply(
    status: StatusCode,
    body: String,
    index: Option<u64>,
    filtered: bool,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(index) = index {
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-consul-index", index.to_string().parse().unwrap());
        h.insert("x-consul-knownleader", "true".parse().unwrap());
        h.insert("x-consul-lastcontact", "0".parse().unwrap());
    } else {
        h.insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
    }
    if filtered {
        h.insert("x-consul-results-filtered-by-acls", "true".parse().unwrap());
    }
    r
}

/// Go's `time.ParseDuration` for the forms Consul clients send (`10s`, `5m`, `250ms`).
fn parse_wait(s: &str) -> Option<Duration> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))?;
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

/// Go's `strconv.ParseBool`, with an empty value meaning true (Consul's flag parameters).
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "" | "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn answer(inner: &Inner, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let uri = request.uri().clone();
    inner.requests.lock().unwrap().push(uri.to_string());
    if request.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, String::new(), None, false);
    }
    let params: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.replace("%20", " ").replace("%2F", "/")),
            None => (p.to_owned(), String::new()),
        })
        .collect();
    // ACLs.
    let token = request
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("token").cloned());
    let anonymous = match (&inner.token, token) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(want), Some(got)) if *want == got => false,
        (Some(_), Some(_)) => {
            return reply(StatusCode::FORBIDDEN, "ACL not found".into(), None, false);
        }
    };
    if let Some(dc) = params.get("dc")
        && *dc != inner.datacenter
    {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No path to datacenter".into(),
            None,
            false,
        );
    }
    let path = uri.path().to_owned();
    let service = match path.as_str() {
        "/v1/catalog/services" => None,
        p => match p.strip_prefix("/v1/health/service/") {
            Some(name) if !name.is_empty() => Some(name.to_owned()),
            _ => {
                return reply(
                    StatusCode::NOT_FOUND,
                    "404 page not found".into(),
                    None,
                    false,
                );
            }
        },
    };
    let passing = match params.get("passing").map(|v| parse_bool(v)) {
        None => false,
        Some(Some(b)) => b,
        Some(None) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "Invalid value for ?passing".into(),
                None,
                false,
            );
        }
    };
    let wait = match params.get("wait") {
        None => Duration::from_secs(300),
        Some(w) => match parse_wait(w) {
            Some(w) => w.min(Duration::from_secs(600)),
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Invalid wait time".into(),
                    None,
                    false,
                );
            }
        },
    };
    let min_index: u64 = match params.get("index").map(|i| i.parse()) {
        None => 0,
        Some(Ok(i)) => i,
        Some(Err(_)) => return reply(StatusCode::BAD_REQUEST, "Invalid index".into(), None, false),
    };
    let relevant = |d: &Data| match &service {
        None => d.catalog_index,
        Some(name) => d.services.get(name).map_or(d.catalog_index, |(i, _)| *i),
    };
    if min_index > 0 {
        let jitter = wait.mul_f64(rand::rng().random_range(0.0..1.0) / 16.0);
        let deadline = tokio::time::Instant::now() + wait + jitter;
        let mut changed = inner.changed.subscribe();
        let epoch = inner.data.lock().unwrap().abandoned;
        inner.blocked.send_modify(|b| *b += 1);
        loop {
            {
                let d = inner.data.lock().unwrap();
                if relevant(&d) > min_index || d.abandoned != epoch {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        inner.blocked.send_modify(|b| *b -= 1);
    }
    let d = inner.data.lock().unwrap();
    let index = relevant(&d);
    let body = match &service {
        None => {
            let map: BTreeMap<&str, Vec<String>> = if anonymous {
                BTreeMap::new()
            } else {
                d.services
                    .iter()
                    .map(|(name, (_, instances))| {
                        let mut tags: Vec<String> =
                            instances.iter().flat_map(|i| i.tags.clone()).collect();
                        tags.sort();
                        tags.dedup();
                        (name.as_str(), tags)
                    })
                    .collect()
            };
            serde_json::to_string(&map).unwrap()
        }
        Some(name) => {
            let instances = match (anonymous, d.services.get(name)) {
                (false, Some((_, instances))) => instances.as_slice(),
                _ => &[],
            };
            let tag = params.get("tag");
            let entries: Vec<serde_json::Value> = instances
                .iter()
                .filter(|i| !passing || i.status == "passing")
                .filter(|i| tag.is_none_or(|t| i.tags.contains(t)))
                .map(|i| entry(name, i, &inner.datacenter))
                .collect();
            serde_json::to_string(&entries).unwrap()
        }
    };
    reply(StatusCode::OK, body, Some(index), anonymous)
}

fn entry(service: &str, i: &Instance, dc: &str) -> serde_json::Value {
    json!({
        "Node": {
            "ID": format!("00000000-0000-0000-0000-{:012}", i.modify_index),
            "Node": i.node,
            "Address": i.node_address,
            "Datacenter": dc,
            "TaggedAddresses": {"lan": i.node_address, "wan": i.node_address},
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": i.modify_index,
            "ModifyIndex": i.modify_index
        },
        "Service": {
            "ID": i.id,
            "Service": service,
            "Tags": i.tags,
            "Address": i.address,
            "Meta": i.meta,
            "Port": i.port,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false,
            "CreateIndex": i.modify_index,
            "ModifyIndex": i.modify_index
        },
        "Checks": [
            {"Node": i.node, "CheckID": "serfHealth", "Name": "Serf Health Status",
             "Status": "passing", "ServiceID": "", "ServiceName": ""},
            {"Node": i.node, "CheckID": format!("service:{}", i.id), "Name": format!("Service '{service}' check"),
             "Status": i.status, "ServiceID": i.id, "ServiceName": service}
        ]
    })
}

//! The emulator's HTTP side: routing, lists, watches, discovery and errors as `Status`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Inner, Res, TOKEN};

use crate::server::Body;

fn json_reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A `Status` object, as the API server reports failures.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": {}, "code": code})
}

fn failure(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_reply(
        StatusCode::from_u16(code).unwrap(),
        &status(code, reason, message),
    )
}

fn not_found() -> Response<Body> {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn query(request: &Request<Incoming>) -> BTreeMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// `(resource, namespace)` of a collection path.
fn collection(path: &str) -> Option<(Res, Option<String>)> {
    for res in Res::ALL {
        let Some(rest) = path.strip_prefix(res.prefix()) else {
            continue;
        };
        if rest == format!("/{}", res.plural()) {
            return Some((res, None));
        }
        if let Some(ns_rest) = rest.strip_prefix("/namespaces/")
            && let Some((ns, plural)) = ns_rest.split_once('/')
            && plural == res.plural()
        {
            return Some((res, Some(ns.to_owned())));
        }
    }
    None
}

pub(crate) async fn answer(inner: Arc<Inner>, request: Request<Incoming>) -> Response<Body> {
    let uri = request.uri().clone();
    inner
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {uri}", request.method()));
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return failure(401, "Unauthorized", "Unauthorized");
    }
    if request.method() != hyper::Method::GET {
        return failure(405, "MethodNotAllowed", "the emulator serves GET only");
    }
    let crds = *inner.crds.lock().unwrap();
    let path = uri.path();
    match path {
        "/version" => {
            return json_reply(
                StatusCode::OK,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-emulator"}),
            );
        }
        "/apis" => {
            let mut groups = vec![json!({"name": "discovery.k8s.io",
                "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}})];
            if crds {
                groups.push(json!({"name": "networking.istio.io",
                    "versions": [{"groupVersion": "networking.istio.io/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "networking.istio.io/v1", "version": "v1"}}));
            }
            return json_reply(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            );
        }
        "/apis/networking.istio.io/v1" if crds => {
            let resources: Vec<Value> = [Res::ServiceEntries, Res::WorkloadEntries]
                .iter()
                .map(|r| json!({"name": r.plural(), "singularName": r.kind().to_lowercase(),
                    "namespaced": true, "kind": r.kind(),
                    "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]}))
                .collect();
            return json_reply(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": "networking.istio.io/v1", "resources": resources}),
            );
        }
        _ => {}
    }
    let Some((res, namespace)) = collection(path) else {
        return not_found();
    };
    if res.is_crd() && !crds {
        return not_found();
    }
    let q = query(&request);
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        watch(inner, res, namespace, &q).await
    } else {
        list(&inner, res, namespace.as_deref(), &q)
    }
}

fn list(
    inner: &Inner,
    res: Res,
    namespace: Option<&str>,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let d = inner.data.lock().unwrap();
    // A continue token is `<resourceVersion>:<offset>`.
    let (rv, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((rv, offset)) = token
                .split_once(':')
                .and_then(|(r, o)| Some((r.parse::<u64>().ok()?, o.parse::<usize>().ok()?)))
            else {
                return failure(400, "BadRequest", "invalid continue token");
            };
            if rv < d.compacted {
                return failure(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                );
            }
            (rv, offset)
        }
        None => (d.rv, 0),
    };
    let mut items = d.state_at(res, namespace, rv);
    let total = items.len();
    items = items.into_iter().skip(offset).collect();
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        metadata["continue"] = json!(format!("{rv}:{}", offset + limit));
        metadata["remainingItemCount"] = json!(total - offset - limit);
    }
    json_reply(
        StatusCode::OK,
        &json!({"kind": format!("{}List", res.kind()), "apiVersion": res.api_version(),
                "metadata": metadata, "items": items}),
    )
}

fn event(kind: &str, object: &Value) -> Result<Frame<Bytes>, Infallible> {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Ok(Frame::data(Bytes::from(line)))
}

async fn watch(
    inner: Arc<Inner>,
    res: Res,
    namespace: Option<String>,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let mut held = inner.held.subscribe();
    let _ = held.wait_for(|h| !*h).await;
    let from: Option<u64> = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return failure(
                    400,
                    "BadRequest",
                    &format!("invalid resourceVersion {rv:?}"),
                );
            }
        },
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (tx, rx) = mpsc::channel(64);
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(ReceiverStream::new(rx))));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    tokio::spawn(async move {
        let mut changed = inner.changed.subscribe();
        let mut close = inner.close.subscribe();
        close.borrow_and_update();
        let deadline = tokio::time::Instant::now() + timeout;
        let every = *inner.bookmark_every.lock().unwrap();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // What to send first: either everything after `from`, or the current objects.
        let (first, mut sent) = {
            let d = inner.data.lock().unwrap();
            match from {
                Some(rv) if rv < d.compacted => {
                    let message = format!("too old resource version: {rv} ({})", d.compacted);
                    let _ = tx.try_send(event("ERROR", &status(410, "Expired", &message)));
                    return;
                }
                Some(rv) => (Vec::new(), rv),
                None => {
                    let objects: Vec<_> = d
                        .state_at(res, namespace.as_deref(), d.rv)
                        .into_iter()
                        .map(|o| ("ADDED", o))
                        .collect();
                    (objects, d.rv)
                }
            }
        };
        for (kind, object) in first {
            if tx.send(event(kind, &object)).await.is_err() {
                return;
            }
        }
        loop {
            // A close asked before a change is seen first: the change is not sent on this
            // stream (a client watching again gets it, or a 410).
            let (pending, now) = {
                let d = inner.data.lock().unwrap();
                if close.has_changed().unwrap_or(true) {
                    return;
                }
                let pending: Vec<_> = d
                    .log
                    .iter()
                    .filter(|c| {
                        c.rv > sent
                            && c.res == res
                            && namespace.as_deref().is_none_or(|ns| ns == c.namespace)
                    })
                    .map(|c| (c.kind, c.object.clone()))
                    .collect();
                (pending, d.rv)
            };
            for (kind, object) in pending {
                if tx.send(event(kind, &object)).await.is_err() {
                    return;
                }
            }
            sent = now;
            tokio::select! {
                biased;
                _ = close.changed() => return,
                _ = changed.changed() => {}
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"kind": res.kind(), "apiVersion": res.api_version(),
                        "metadata": {"resourceVersion": sent.to_string()}});
                    if tx.send(event("BOOKMARK", &mark)).await.is_err() {
                        return;
                    }
                    *inner.bookmarks_sent.lock().unwrap() += 1;
                }
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            }
        }
    });
    response
}

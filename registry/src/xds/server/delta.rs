//! `DeltaAggregatedResources`: the incremental protocol.
//!
//! Per type URL the stream remembers the subscription (wildcard and explicit names) and the
//! version of every resource the client holds (an 8-byte fingerprint per name), so that a
//! push carries only resources whose version changed and the names that went away. The
//! client's `initial_resource_versions` seed that record, so nothing it already has is sent
//! again. ACK and NACK are matched by nonce; a NACKed resource is not resent until its
//! version changes again. Large answers are split into several responses
//! ([`MAX_RESPONSE_BYTES`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use prost::Message;
use tonic::Status;
use tracing::{debug, warn};

use super::generation::{Name, NodeView, version_key};
use super::session::{Context, Protocol, is_wildcard_type, served_type};
use super::status::Mode;
use crate::xds::type_url;

/// Unanswered responses remembered per type, for matching ACKs.
const PENDING: usize = 16;

/// Resources of one response are cut after this many encoded bytes (a single larger resource
/// still goes alone). Large answers, such as the first one to a wildcard subscription, go out
/// as several responses: the client receives the same resources, the server's per-stream
/// encode buffer (which keeps the size of the largest message) stays small, and no message
/// approaches gRPC's 4 MiB default limit.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    /// Explicit names (sharing the generation's string when the resource exists).
    names: HashSet<Name>,
    /// What the client holds: name → version fingerprint.
    known: HashMap<Name, u64>,
    /// Nonce and system version of responses not yet ACKed or NACKed, oldest first.
    pending: VecDeque<(String, String)>,
}

impl Subscription {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Resources and removals gathered for one response.
#[derive(Debug, Default)]
struct Changes {
    resources: Vec<WireResource>,
    sent: HashSet<Name>,
    removed: BTreeSet<String>,
}

impl Changes {
    /// Sends `name` if the client does not hold its current version (or if `force`), or
    /// removes it if the client holds it and it no longer exists.
    fn consider(
        &mut self,
        sub: &mut Subscription,
        view: &NodeView,
        type_url: &str,
        name: &str,
        force: bool,
    ) {
        match view.get(type_url, name) {
            Some((key, r)) => {
                let v = version_key(&r.version);
                if (force || sub.known.get(name) != Some(&v)) && self.sent.insert(key.clone()) {
                    sub.known.insert(key.clone(), v);
                    self.resources.push(WireResource {
                        name: r.name.clone(),
                        version: r.version.clone(),
                        resource: Some((*r.body).clone()),
                        ..Default::default()
                    });
                }
            }
            None => {
                if sub.known.remove(name).is_some() {
                    self.removed.insert(name.to_owned());
                }
            }
        }
    }

    /// Compares every resource of the type and everything the client holds.
    fn everything(&mut self, sub: &mut Subscription, view: &NodeView, type_url: &str) {
        let mut names: BTreeSet<Name> = view
            .all(type_url)
            .filter(|(n, _)| sub.wants(n))
            .map(|(n, _)| n.clone())
            .collect();
        names.extend(sub.known.keys().cloned());
        for name in names {
            self.consider(sub, view, type_url, &name, false);
        }
    }

    fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.removed.is_empty()
    }
}

/// The delta state machine of one stream.
#[derive(Debug, Default)]
pub struct Delta {
    types: BTreeMap<&'static str, Subscription>,
}

/// Splits `changes` into responses of at most [`MAX_RESPONSE_BYTES`] of resources each
/// (removals go in the first), each with its own nonce.
fn respond(
    ctx: &mut Context,
    sub: &mut Subscription,
    type_url: &'static str,
    changes: Changes,
) -> Vec<DeltaDiscoveryResponse> {
    let mut chunks: Vec<Vec<WireResource>> = vec![Vec::new()];
    let mut size = 0;
    for resource in changes.resources {
        let len = resource.encoded_len();
        if size + len > MAX_RESPONSE_BYTES && chunks.last().is_some_and(|c| !c.is_empty()) {
            chunks.push(Vec::new());
            size = 0;
        }
        size += len;
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(resource);
        }
    }
    let mut removed: Vec<String> = changes.removed.into_iter().collect();
    let version = ctx.view.generation.number.to_string();
    let mut responses = Vec::with_capacity(chunks.len());
    for resources in chunks {
        let nonce = ctx.nonce();
        if sub.pending.len() == PENDING {
            sub.pending.pop_front();
        }
        sub.pending.push_back((nonce.clone(), version.clone()));
        debug!(connection = ctx.connection, type_url, %version, %nonce, resources = resources.len(), removed = removed.len(), "sending");
        responses.push(DeltaDiscoveryResponse {
            system_version_info: version.clone(),
            resources,
            type_url: type_url.to_owned(),
            removed_resources: std::mem::take(&mut removed),
            nonce,
            ..Default::default()
        });
    }
    ctx.status.sent(type_url, &version);
    responses
}

fn ack_or_nack(
    ctx: &Context,
    sub: &mut Subscription,
    type_url: &str,
    request: &DeltaDiscoveryRequest,
) {
    let nonce = &request.response_nonce;
    if nonce.is_empty() {
        return;
    }
    let Some(at) = sub.pending.iter().position(|(n, _)| n == nonce) else {
        debug!(connection = ctx.connection, type_url, %nonce, "unknown or stale nonce: no ACK recorded");
        return;
    };
    // Older responses can no longer be answered.
    let Some((_, version)) = sub.pending.drain(..=at).next_back() else {
        return;
    };
    match &request.error_detail {
        Some(error) => {
            warn!(connection = ctx.connection, node = %ctx.node.id, type_url, %version, reason = %error.message, "NACK");
            ctx.status.nacked(type_url, &version, &error.message);
        }
        None => {
            debug!(connection = ctx.connection, node = %ctx.node.id, type_url, %version, "ACK");
            ctx.status.acked(type_url, &version);
        }
    }
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const MODE: Mode = Mode::Delta;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        ctx: &mut Context,
        request: DeltaDiscoveryRequest,
    ) -> Result<Vec<DeltaDiscoveryResponse>, Status> {
        let type_url = served_type(&request.type_url)?;
        let first = !self.types.contains_key(type_url);
        let sub = self.types.entry(type_url).or_default();
        ack_or_nack(ctx, sub, type_url, &request);

        let mut compare_all = false;
        if first {
            sub.known = request
                .initial_resource_versions
                .iter()
                .map(|(n, v)| (Name::from(n.as_str()), version_key(v)))
                .collect();
            if request.resource_names_subscribe.is_empty() && is_wildcard_type(type_url) {
                sub.wildcard = true;
                compare_all = true;
            }
        }
        let mut added = Vec::new();
        for name in &request.resource_names_subscribe {
            if name == "*" {
                compare_all |= !sub.wildcard || first;
                sub.wildcard = true;
            } else {
                let key = ctx
                    .view
                    .get(type_url, name)
                    .map_or_else(|| Name::from(name.as_str()), |(k, _)| k.clone());
                sub.names.insert(key);
                added.push(name.as_str());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                sub.wildcard = false;
            } else {
                sub.names.remove(name.as_str());
            }
        }
        if first || !request.resource_names_unsubscribe.is_empty() {
            // The client forgets what it no longer subscribes to.
            let (wildcard, names, known) = (sub.wildcard, &sub.names, &mut sub.known);
            known.retain(|k, _| wildcard || names.contains(&**k));
        }

        let mut changes = Changes::default();
        if compare_all {
            changes.everything(sub, &ctx.view, type_url);
        }
        for name in added {
            if ctx.view.get(type_url, name).is_none() && !sub.known.contains_key(name) {
                // Tells the client at once that the resource does not exist.
                changes.removed.insert(name.to_owned());
            } else {
                // A name in `resource_names_subscribe` is sent even if the server thinks the
                // client holds it, unless the client said so in `initial_resource_versions`.
                changes.consider(sub, &ctx.view, type_url, name, !first);
            }
        }
        if first || !changes.is_empty() {
            Ok(respond(ctx, sub, type_url, changes))
        } else {
            Ok(Vec::new())
        }
    }

    fn on_push(&mut self, ctx: &mut Context) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = Vec::new();
        for type_url in type_url::ALL {
            let Some(sub) = self.types.get_mut(type_url) else {
                continue;
            };
            let mut changes = Changes::default();
            match ctx.view.changed(type_url) {
                Some(names) => {
                    for name in names {
                        if sub.wants(name) || sub.known.contains_key(name) {
                            changes.consider(sub, &ctx.view, type_url, name, false);
                        }
                    }
                }
                None => changes.everything(sub, &ctx.view, type_url),
            }
            if !changes.is_empty() {
                responses.extend(respond(ctx, sub, type_url, changes));
            }
        }
        responses
    }
}

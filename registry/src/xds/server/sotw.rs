//! `StreamAggregatedResources`: the state-of-the-world protocol.
//!
//! Per type URL the stream remembers the subscription and the last response (version and
//! nonce). A request carrying the last nonce is an ACK of that version, or a NACK when it has
//! an `error_detail`; a request carrying any other nonce is stale and ignored. Every response
//! carries every subscribed resource of its type, and its version is a digest of their names
//! and versions: a push whose digest equals the last response's is not sent, so a NACKed
//! version is never sent again in a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::Status;
use tracing::{debug, warn};

use super::session::{Context, Protocol, is_wildcard_type, served_type};
use super::status::Mode;
use crate::xds::type_url;

#[derive(Debug, Default)]
struct Subscription {
    wildcard: bool,
    /// The first request had no names: an empty list keeps meaning "everything".
    legacy_wildcard: bool,
    names: BTreeSet<String>,
    /// Version and nonce of the last response.
    sent: Option<(String, String)>,
}

impl Subscription {
    fn first(type_url: &str, names: &[String]) -> Self {
        let mut sub = Self {
            legacy_wildcard: names.is_empty() && is_wildcard_type(type_url),
            ..Self::default()
        };
        sub.update(names);
        sub
    }

    /// Applies a request's names; true when the subscription changed.
    fn update(&mut self, names: &[String]) -> bool {
        if !names.is_empty() {
            self.legacy_wildcard = false;
        }
        let wildcard = self.legacy_wildcard || names.iter().any(|n| n == "*");
        let names: BTreeSet<String> = names.iter().filter(|n| *n != "*").cloned().collect();
        let changed = wildcard != self.wildcard || names != self.names;
        self.wildcard = wildcard;
        self.names = names;
        changed
    }

    fn version(&self, ctx: &Context, type_url: &str) -> String {
        let digest = if self.wildcard {
            ctx.view.digest(type_url)
        } else {
            let mut h = DefaultHasher::new();
            for name in &self.names {
                if let Some((_, r)) = ctx.view.get(type_url, name) {
                    name.hash(&mut h);
                    r.version.hash(&mut h);
                }
            }
            h.finish()
        };
        format!("{digest:016x}")
    }

    fn response(&self, ctx: &Context, type_url: &str, version: String) -> DiscoveryResponse {
        let resources = if self.wildcard {
            ctx.view
                .all(type_url)
                .map(|(_, r)| (*r.body).clone())
                .collect()
        } else {
            self.names
                .iter()
                .filter_map(|n| ctx.view.get(type_url, n))
                .map(|(_, r)| (*r.body).clone())
                .collect()
        };
        DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_owned(),
            ..Default::default()
        }
    }
}

/// The state-of-the-world state machine of one stream.
#[derive(Debug, Default)]
pub struct Sotw {
    types: BTreeMap<&'static str, Subscription>,
}

impl Sotw {
    /// The response for `type_url`, unless `force` is false and the client already got this
    /// version.
    fn respond(
        &mut self,
        ctx: &mut Context,
        type_url: &'static str,
        force: bool,
    ) -> Option<DiscoveryResponse> {
        let sub = self.types.get_mut(type_url)?;
        let version = sub.version(ctx, type_url);
        if !force && sub.sent.as_ref().is_some_and(|(v, _)| *v == version) {
            return None;
        }
        let mut response = sub.response(ctx, type_url, version.clone());
        response.nonce = ctx.nonce();
        ctx.status.sent(type_url, &version);
        debug!(connection = ctx.connection, type_url, %version, nonce = %response.nonce, resources = response.resources.len(), "sending");
        sub.sent = Some((version, response.nonce.clone()));
        Some(response)
    }
}

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const MODE: Mode = Mode::StateOfTheWorld;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        ctx: &mut Context,
        request: DiscoveryRequest,
    ) -> Result<Vec<DiscoveryResponse>, Status> {
        let type_url = served_type(&request.type_url)?;
        let Some(sub) = self.types.get_mut(type_url) else {
            self.types.insert(
                type_url,
                Subscription::first(type_url, &request.resource_names),
            );
            return Ok(self.respond(ctx, type_url, true).into_iter().collect());
        };
        let Some((version, nonce)) = sub.sent.clone() else {
            return Ok(Vec::new());
        };
        if request.response_nonce != nonce {
            debug!(connection = ctx.connection, type_url, nonce = %request.response_nonce, expected = %nonce, "stale nonce, request ignored");
            return Ok(Vec::new());
        }
        match &request.error_detail {
            Some(error) => {
                warn!(connection = ctx.connection, node = %ctx.node.id, type_url, %version, running = %request.version_info, reason = %error.message, "NACK");
                ctx.status.nacked(type_url, &version, &error.message);
            }
            None => {
                debug!(connection = ctx.connection, node = %ctx.node.id, type_url, %version, "ACK");
                ctx.status.acked(type_url, &version);
            }
        }
        let changed = sub.update(&request.resource_names);
        Ok(if changed {
            self.respond(ctx, type_url, true).into_iter().collect()
        } else {
            Vec::new()
        })
    }

    fn on_push(&mut self, ctx: &mut Context) -> Vec<DiscoveryResponse> {
        let mut responses = Vec::new();
        for type_url in type_url::ALL {
            let Some(sub) = self.types.get(type_url) else {
                continue;
            };
            if let Some(changed) = ctx.view.changed(type_url) {
                let relevant = if sub.wildcard {
                    !changed.is_empty()
                } else {
                    changed.iter().any(|n| sub.names.contains(*n))
                };
                if !relevant {
                    continue;
                }
            }
            responses.extend(self.respond(ctx, type_url, false));
        }
        responses
    }
}

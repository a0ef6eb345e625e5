//! Validated CORS policies, mirror policies and service-degradation fallbacks, in the form
//! the data path applies them (`crate::route_l7`): origins as compiled matchers, header
//! values checked, the mirror's cluster resolved, the fallback's status, headers and body
//! ready to send. Built by `build`; must not do I/O.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;

use super::cluster::Cluster;
use super::policy::HeaderEdits;
use super::route::HeaderValueMatch;

/// A route's CORS policy (Envoy's CORS filter semantics).
#[derive(Debug)]
pub struct Cors {
    pub(crate) origins: Vec<HeaderValueMatch>,
    pub(crate) allow_methods: Option<HeaderValue>,
    pub(crate) allow_headers: Option<HeaderValue>,
    pub(crate) expose_headers: Option<HeaderValue>,
    pub(crate) max_age: Option<HeaderValue>,
    pub(crate) allow_credentials: bool,
    pub(crate) forward_not_matching_preflights: bool,
}

impl Cors {
    /// Is `origin` allowed? A matcher that matches `*` allows every origin, as Envoy's does.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches_str("*") || m.matches_str(origin))
    }

    pub fn forwards_unmatched_preflights(&self) -> bool {
        self.forward_not_matching_preflights
    }
}

/// A copy of a share (millionths) of the route's requests to `cluster`.
#[derive(Debug)]
pub struct Mirror {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) share: u32,
}

impl Mirror {
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn share(&self) -> u32 {
        self.share
    }
}

/// The answer a cluster gives instead of its `UO`/`UH` error page.
#[derive(Debug)]
pub struct Fallback {
    pub(crate) overflow: bool,
    pub(crate) no_healthy: bool,
    /// `None`: the status of the error it replaces.
    pub(crate) status: Option<StatusCode>,
    pub(crate) headers: HeaderEdits,
    pub(crate) body: Bytes,
}

impl Fallback {
    /// Does it answer requests that end with this response flag?
    pub fn answers(&self, response_flag: &str) -> bool {
        match response_flag {
            "UO" => self.overflow,
            "UH" => self.no_healthy,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    pub fn headers(&self) -> &HeaderEdits {
        &self.headers
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

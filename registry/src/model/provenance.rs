//! Where a service or an endpoint came from: the registry source, the object in that source,
//! and the source's revision of it. Set by the sources, kept through the merge, shown by
//! `hostmesh describe`. Pure data: no I/O.

use std::fmt;
use std::sync::Arc;

/// The name of a registry source (`static`, `kubernetes`, `consul`, `auto-registration`).
/// Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceName(Arc<str>);

impl SourceName {
    pub const STATIC: &'static str = "static";
    pub const KUBERNETES: &'static str = "kubernetes";
    pub const CONSUL: &'static str = "consul";
    pub const AUTO_REGISTRATION: &'static str = "auto-registration";

    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Provenance of a service or an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Provenance {
    pub source: SourceName,
    /// The object in the source's own terms (`ServiceEntry demo/bill`,
    /// `consul service web, instance web-1 on node n1`).
    pub object: Arc<str>,
    /// The source's revision of the object (the static registry's version, Consul's
    /// `ModifyIndex`).
    pub revision: Arc<str>,
}

impl Provenance {
    pub fn new(
        source: SourceName,
        object: impl Into<Arc<str>>,
        revision: impl fmt::Display,
    ) -> Self {
        Self {
            source,
            object: object.into(),
            revision: Arc::from(revision.to_string()),
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (revision {})",
            self.source, self.object, self.revision
        )
    }
}

//! What every source reports about itself, and the registry report the status API serves
//! (`GET /debug/sources`, `GET /debug/services/<host>`). Plain data: no I/O.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::merge::{Conflict, Rejection};

/// One source's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub name: String,
    /// False while the source cannot read its source of truth; its last good view stays
    /// in force meanwhile.
    pub healthy: bool,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    /// When the source's view last changed (RFC 3339).
    pub last_update: Option<String>,
    /// The source's revision of its view.
    pub revision: u64,
    pub services: usize,
    pub endpoints: usize,
    pub objects: usize,
    pub rejected: usize,
    /// Anything else the operator should know (e.g. results filtered by ACLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The registry as the control server runs it: per-source health, and the merge's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryReport {
    /// The version of the snapshot in force.
    pub version: u64,
    pub sources: Vec<SourceStatus>,
    pub conflicts: Vec<Conflict>,
    pub rejected: Vec<Rejection>,
}

/// One endpoint of a described service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDescription {
    pub service_port: u16,
    pub address: String,
    pub port: u16,
    pub identity: String,
    pub source: String,
    pub object: String,
    pub revision: String,
}

/// A merged service and where everything in it came from (`hostmesh describe service`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDescription {
    pub host: String,
    pub namespace: String,
    pub source: String,
    pub object: String,
    pub revision: String,
    /// `number/PROTOCOL`.
    pub ports: Vec<String>,
    pub location: String,
    pub endpoints: Vec<EndpointDescription>,
    /// Conflicts about this host or its addresses.
    pub conflicts: Vec<Conflict>,
}

/// Now, as the status API writes times.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The merged services named `host`, with the provenance of each endpoint and the conflicts
/// about the host or its addresses.
pub fn describe(
    snapshot: &crate::model::Snapshot,
    conflicts: &[Conflict],
    host: &str,
) -> Vec<ServiceDescription> {
    snapshot
        .services_named(host)
        .map(|s| ServiceDescription {
            host: s.hostname.to_string(),
            namespace: s.namespace.to_string(),
            source: s.provenance.source.to_string(),
            object: s.provenance.object.to_string(),
            revision: s.provenance.revision.to_string(),
            ports: s
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.number, p.protocol.as_str()))
                .collect(),
            location: match s.location {
                crate::model::config::MeshLocation::Internal => "MESH_INTERNAL".into(),
                crate::model::config::MeshLocation::External => "MESH_EXTERNAL".into(),
            },
            endpoints: s
                .endpoints
                .iter()
                .map(|e| EndpointDescription {
                    service_port: e.service_port.get(),
                    address: e.address.to_string(),
                    port: e.port.get(),
                    identity: e.identity.to_string(),
                    source: e.provenance.source.to_string(),
                    object: e.provenance.object.to_string(),
                    revision: e.provenance.revision.to_string(),
                })
                .collect(),
            conflicts: conflicts
                .iter()
                .filter(|c| {
                    c.subject == host
                        || c.winner_object.starts_with(&format!("{host} "))
                        || c.loser_object.starts_with(&format!("{host} "))
                })
                .cloned()
                .collect(),
        })
        .collect()
}

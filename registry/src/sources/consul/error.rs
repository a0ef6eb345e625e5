//! The Consul source's errors, worded for the operator reading the log or `hostmesh status`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("cannot reach Consul at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Consul did not answer {url} within {after:?} (wait plus wait/16 plus margin)")]
    Timeout { url: String, after: Duration },
    #[error("Consul refused the ACL token for {url} (403: {body}); check consul.token")]
    AclDenied { url: String, body: String },
    #[error("Consul answered {status} for {url}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Consul's answer to {url} has no valid X-Consul-Index header")]
    MissingIndex { url: String },
    #[error("Consul's answer to {url} is not the expected JSON: {reason}")]
    Decode { url: String, reason: String },
    #[error("{path}: {reason}")]
    TlsFile { path: PathBuf, reason: String },
    #[error("consul TLS settings: {0}")]
    Tls(String),
}

//! The Kubernetes source's errors, worded for the operator reading the log or
//! `hostmesh status`.

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("kubernetes: {0}")]
    Config(String),
    #[error("API discovery of {group}: {reason}")]
    Discovery { group: String, reason: String },
}

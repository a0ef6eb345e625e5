//! The lab's error type: which command or file failed, and why.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while building, running or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Network namespaces and nftables need root.
    #[error(
        "the lab needs root (network namespaces, veths, nftables); run it with sudo or as root"
    )]
    NotRoot,
    /// A program the lab needs is not installed.
    #[error("`{program}` is not installed: {hint}")]
    MissingTool { program: String, hint: &'static str },
    /// A hostmesh binary was not found.
    #[error("cannot find `{name}` (looked in {searched}); build it with `cargo build --bins`")]
    MissingBinary { name: String, searched: String },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A file or socket operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("{what}: not within {bound:?}{detail}")]
    Timeout {
        what: String,
        bound: Duration,
        /// Extra context, e.g. the end of a process's log.
        detail: String,
    },
}

impl LabError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

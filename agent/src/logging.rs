//! Logs: to the journal, with structured fields, when systemd connected stderr to it
//! (`JOURNAL_STREAM` is set); else to stderr. The filter can be changed while running
//! ([`LogControl::set`], behind the admin's `/logging?level=`).

use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log filter of the running process.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl").finish_non_exhaustive()
    }
}

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{level:?} is not a log filter: {reason}")]
    Filter { level: String, reason: String },
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

impl LogControl {
    /// Replaces the filter (`debug`, `hostmesh_proxy=trace,info`, …).
    pub fn set(&self, level: &str) -> Result<(), LogError> {
        let filter = EnvFilter::try_new(level).map_err(|e| LogError::Filter {
            level: level.to_owned(),
            reason: e.to_string(),
        })?;
        self.handle
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))?;
        if let Ok(mut current) = self.current.lock() {
            *current = level.to_owned();
        }
        tracing::info!(level, "log filter changed");
        Ok(())
    }

    pub fn current(&self) -> String {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Installs the global subscriber with `level` (`RUST_LOG` wins when set). Returns where the
/// logs go and the handle that changes the filter.
pub fn init(level: &str) -> (LogControl, &'static str) {
    let text = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned());
    let filter = EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let journal = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    let target = match journal {
        Some(journald) => {
            registry.with(journald).init();
            "journal"
        }
        None => {
            registry
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .init();
            "stderr"
        }
    };
    let control = LogControl {
        handle,
        current: Mutex::new(text),
    };
    (control, target)
}

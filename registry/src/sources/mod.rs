//! Registry sources: each reads one kind of source of truth and produces validated model
//! objects plus the errors of what it rejected.
//!
//! - [`static_files`]: a folder of Istio YAML documents, hot-reloaded.

pub mod static_files;

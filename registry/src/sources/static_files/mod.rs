//! The static registry: a folder (by default `/etc/hostmesh/registry.d`) of multi-document
//! YAML files in Istio's shapes.
//!
//! - [`document`]: cutting files into documents, finding the line of a field.
//! - [`parse`]: one file's text → validated objects + errors (`file:line: object: field: …`).
//! - [`load`]: the pure core, folder contents + previous state → objects in force + errors,
//!   keeping the last good version of each object.
//! - [`watch`]: reading the folder, watching it (debounced) and publishing each new
//!   [`StaticView`] through a `tokio::sync::watch` channel.

pub mod document;
pub mod error;
pub mod load;
pub mod parse;
pub mod watch;

pub use error::{DocumentError, SourceError};
pub use load::{Entry, FileContents, LoadOutcome, State, load};
pub use parse::{LoadedObject, ParsedFile, parse_file};
pub use watch::{DEFAULT_DIR, StaticSource, StaticView, StaticWatcher, read_dir};

#[cfg(test)]
mod tests;

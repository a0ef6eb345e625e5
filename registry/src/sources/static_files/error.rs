//! Errors of the static-file source: a rejected document ([`DocumentError`], always naming
//! the file, the line and, where known, the object and the field) and failures to read the
//! folder or watch it ([`SourceError`]).

use std::fmt;
use std::path::PathBuf;

use crate::model::ObjectKey;

/// Why one document (or one object of it) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub file: PathBuf,
    /// 1-based line in the file.
    pub line: usize,
    /// How the object presents itself (`ServiceEntry demo/bill-service`), when known.
    pub object: Option<String>,
    /// The object's key, when the header was readable: its last good version stays in force.
    pub key: Option<ObjectKey>,
    /// Path of the bad field (`spec.ports[0].number`), when the problem is in one field.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for DocumentError {}

/// Failures of the source itself (not of a document).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read registry folder {}: {error}", path.display())]
    ReadDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot watch registry folder {}: {error}", path.display())]
    Watch { path: PathBuf, error: notify::Error },
}

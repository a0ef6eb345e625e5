//! The pure core of the static source: the contents of a folder in, the objects in force and
//! the errors out. Keeps, per object, the last good version: when a document that loaded
//! before becomes invalid, the old version stays in force and the error is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::error::DocumentError;
use super::parse::parse_file;
use crate::model::config::{ConfigObject, ObjectKey};
use crate::model::validate::Context;

/// One file of the folder as read.
#[derive(Debug, Clone)]
pub struct FileContents {
    pub path: PathBuf,
    /// The text (shared: a reload keeps the texts of files it did not read again), or why
    /// it could not be read.
    pub text: Result<Arc<str>, String>,
}

/// An object in force and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub object: ConfigObject,
    pub file: PathBuf,
    pub line: usize,
    /// True when the current text of the object is invalid and this is its last good version.
    pub stale: bool,
}

/// The objects in force after a load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub objects: BTreeMap<ObjectKey, Entry>,
}

impl State {
    /// The objects, for [`crate::model::Snapshot::build`].
    pub fn config_objects(&self) -> impl Iterator<Item = ConfigObject> + '_ {
        self.objects.values().map(|e| e.object.clone())
    }
}

/// The result of one load.
#[derive(Debug, Clone, Default)]
pub struct LoadOutcome {
    pub state: State,
    /// Every rejected document or object, in file order.
    pub errors: Vec<DocumentError>,
}

/// Loads the files (in the order given; callers sort by name) on top of the previous state.
///
/// - A good object replaces its previous version; objects no longer in any file go away.
/// - An object defined twice keeps its first definition; the second is reported.
/// - An invalid document whose key is known keeps that object's previous good version.
/// - When a file cannot be read, or holds a document so broken that its key is unknown, the
///   previous objects of that file that are not otherwise defined stay in force.
pub fn load(files: &[FileContents], previous: &State, ctx: &Context) -> LoadOutcome {
    load_with(files, previous, |path, text| parse_file(path, text, ctx))
}

/// [`load`] with the parsing of one file supplied by the caller (the watcher reuses the parse
/// of files whose text did not change).
pub fn load_with(
    files: &[FileContents],
    previous: &State,
    mut parse: impl FnMut(&std::path::Path, &str) -> super::parse::ParsedFile,
) -> LoadOutcome {
    let mut out = LoadOutcome::default();
    let mut keep_file_objects: BTreeSet<PathBuf> = BTreeSet::new();
    let mut failed_keys: Vec<(ObjectKey, PathBuf)> = Vec::new();
    for file in files {
        let text: &str = match &file.text {
            Ok(t) => t,
            Err(reason) => {
                out.errors.push(DocumentError {
                    file: file.path.clone(),
                    line: 0,
                    object: None,
                    key: None,
                    field: None,
                    message: format!("cannot read file: {reason}"),
                });
                keep_file_objects.insert(file.path.clone());
                continue;
            }
        };
        let parsed = parse(&file.path, text);
        for err in parsed.errors {
            match &err.key {
                Some(key) => failed_keys.push((key.clone(), file.path.clone())),
                None => {
                    keep_file_objects.insert(file.path.clone());
                }
            }
            out.errors.push(err);
        }
        for loaded in parsed.objects {
            let key = loaded.object.key();
            if let Some(first) = out.state.objects.get(&key) {
                out.errors.push(DocumentError {
                    file: file.path.clone(),
                    line: loaded.line,
                    object: Some(key.to_string()),
                    key: None,
                    field: None,
                    message: format!(
                        "duplicate: already defined at {}:{}; this one is ignored",
                        first.file.display(),
                        first.line
                    ),
                });
                continue;
            }
            out.state.objects.insert(
                key,
                Entry {
                    object: loaded.object,
                    file: file.path.clone(),
                    line: loaded.line,
                    stale: false,
                },
            );
        }
    }
    for (key, _file) in failed_keys {
        if out.state.objects.contains_key(&key) {
            continue;
        }
        if let Some(prev) = previous.objects.get(&key) {
            out.state.objects.insert(
                key,
                Entry {
                    stale: true,
                    ..prev.clone()
                },
            );
        }
    }
    for (key, prev) in &previous.objects {
        if keep_file_objects.contains(&prev.file) && !out.state.objects.contains_key(key) {
            out.state.objects.insert(
                key.clone(),
                Entry {
                    stale: true,
                    ..prev.clone()
                },
            );
        }
    }
    out
}

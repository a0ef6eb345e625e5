//! The I/O edge of the static source: reading the folder, and watching it. The folder is
//! watched (not the files: editors and Ansible replace files by rename); events are
//! debounced ([`QUIET`] without a new event, at most [`MAX_DELAY`] after the first), the
//! folder is read again, and the new [`StaticView`] is published at once through a
//! `tokio::sync::watch` channel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::watch;

use super::error::{DocumentError, SourceError};
use super::load::{FileContents, State, load_with};
use super::parse::{ParsedFile, parse_file};
use crate::model::Snapshot;
use crate::model::types::TrustDomain;
use crate::model::validate::Context;

/// Where the static registry lives unless configured otherwise.
pub const DEFAULT_DIR: &str = "/etc/hostmesh/registry.d";

/// How long the folder must stay quiet after an event before it is read again. A rename
/// (how editors and Ansible replace a file) is one burst of events well inside it.
pub const QUIET: Duration = Duration::from_millis(15);

/// The longest a change waits to be read while events keep coming (a long copy of many
/// files): the folder is read then, and again once it is quiet.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

/// What the static source publishes: the snapshot in force and the current errors.
#[derive(Debug, Clone, Default)]
pub struct StaticView {
    pub snapshot: Snapshot,
    pub errors: Arc<[DocumentError]>,
}

/// Is this a registry file: `*.yaml` or `*.yml`, not hidden (editors' temporary files)?
fn is_registry_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    yaml && !hidden
}

/// Reads every registry file of `dir`, sorted by name. A file that cannot be read is
/// returned with the reason, so that its objects keep their last good versions.
pub fn read_dir(dir: &Path) -> Result<Vec<FileContents>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|error| SourceError::ReadDir {
        path: dir.to_owned(),
        error,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_registry_file(p) && p.is_file())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let text = read_text(&path);
            FileContents { path, text }
        })
        .collect())
}

/// The static source: a folder, the objects in force, and the version of the last snapshot.
#[derive(Debug)]
pub struct StaticSource {
    dir: PathBuf,
    ctx: Context,
    trust_domain: TrustDomain,
    state: State,
    version: u64,
    /// The last parse of each file, by path (made from its text in `files`): a reload parses
    /// only files whose text changed.
    parsed: HashMap<PathBuf, ParsedFile>,
    /// The registry files of the last load and what reading each gave.
    files: Files,
}

impl StaticSource {
    pub fn new(dir: impl Into<PathBuf>, ctx: Context, trust_domain: TrustDomain) -> Self {
        Self {
            dir: dir.into(),
            ctx,
            trust_domain,
            state: State::default(),
            version: 0,
            parsed: HashMap::new(),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the folder and builds the next view. When the folder cannot be read, the state
    /// is left as it was and the error returned.
    pub fn reload(&mut self) -> Result<StaticView, SourceError> {
        let files = listing(read_dir(&self.dir)?);
        Ok(self.load(files))
    }

    /// Like [`StaticSource::reload`], but `None` when no file was added, removed or changed
    /// since the last load (a watcher sees several events for one edit).
    pub fn reload_if_changed(&mut self) -> Result<Option<StaticView>, SourceError> {
        let files = listing(read_dir(&self.dir)?);
        if files == self.files && self.version > 0 {
            return Ok(None);
        }
        Ok(Some(self.load(files)))
    }

    /// Reads again only the files named (by name, in the folder): each is re-read, or drops
    /// out when it is gone or is no registry file. `None` when none of them changed. The
    /// watcher's path for ordinary edits: the other files are neither read nor parsed.
    pub fn reload_files(&mut self, names: &BTreeSet<OsString>) -> Option<StaticView> {
        let mut files = self.files.clone();
        let mut changed = false;
        for name in names {
            let path = self.dir.join(name);
            if is_registry_file(&path) && path.is_file() {
                let text = read_text(&path);
                if files.get(&path) != Some(&text) {
                    files.insert(path, text);
                    changed = true;
                }
            } else {
                changed |= files.remove(&path).is_some();
            }
        }
        changed.then(|| self.load(files))
    }

    fn load(&mut self, files: Files) -> StaticView {
        let started = Instant::now();
        let contents: Vec<FileContents> = files
            .iter()
            .map(|(path, text)| FileContents {
                path: path.clone(),
                text: text.clone(),
            })
            .collect();
        let old_files = std::mem::replace(&mut self.files, files);
        let mut parsed = HashMap::with_capacity(contents.len());
        let (ctx, previous) = (&self.ctx, &mut self.parsed);
        let outcome = load_with(&contents, &self.state, |path, text| {
            let unchanged = matches!(old_files.get(path), Some(Ok(old)) if **old == *text);
            let result = match previous.remove(path) {
                Some(result) if unchanged => result,
                _ => parse_file(path, text, ctx),
            };
            parsed.insert(path.to_owned(), result.clone());
            result
        });
        crate::drop_later::drop_later((old_files, std::mem::replace(&mut self.parsed, parsed)));
        crate::drop_later::drop_later(std::mem::replace(&mut self.state, outcome.state));
        self.version += 1;
        for e in &outcome.errors {
            tracing::warn!(
                file = %e.file.display(),
                line = e.line,
                object = e.object.as_deref().unwrap_or(""),
                field = e.field.as_deref().unwrap_or(""),
                "rejected: {}",
                e.message
            );
        }
        let snapshot = Snapshot::build(
            self.version,
            self.state.config_objects(),
            &self.trust_domain,
        );
        tracing::info!(
            dir = %self.dir.display(),
            version = self.version,
            objects = self.state.objects.len(),
            services = snapshot.services().len(),
            errors = outcome.errors.len(),
            took = ?started.elapsed(),
            "static registry loaded"
        );
        StaticView {
            snapshot,
            errors: outcome.errors.into(),
        }
    }

    /// Loads the folder once, then watches it. The first view is in the channel when this
    /// returns; a folder that cannot be read at start is an error.
    pub fn watch(mut self) -> Result<StaticWatcher, SourceError> {
        let first = self.reload()?;
        let (tx, rx) = watch::channel(first);
        let dir = self.dir.clone();
        let watch_err = |error| SourceError::Watch {
            path: dir.clone(),
            error,
        };
        let (events_tx, events) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only when the watch stopped.
            let _ = events_tx.send(event);
        })
        .map_err(watch_err)?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_err)?;
        std::thread::Builder::new()
            .name("registry-watch".to_owned())
            .spawn(move || {
                while let Some(change) = wait_for_change(&events) {
                    let reloaded = match change {
                        Change::Files(names) => Ok(self.reload_files(&names)),
                        Change::Folder => self.reload_if_changed(),
                    };
                    match reloaded {
                        Ok(Some(view)) => {
                            crate::drop_later::drop_later(tx.send_replace(view));
                        }
                        Ok(None) => tracing::debug!("registry folder event without a change"),
                        Err(e) => {
                            tracing::warn!(error = %e, "keeping the previous static registry")
                        }
                    }
                }
            })
            .map_err(|error| SourceError::Watch {
                path: dir.clone(),
                error: notify::Error::io(error),
            })?;
        Ok(StaticWatcher {
            rx,
            _watcher: watcher,
        })
    }
}

/// Registry files by path, with what reading each gave.
type Files = BTreeMap<PathBuf, Result<Arc<str>, String>>;

/// One file's text, or why it could not be read.
fn read_text(path: &Path) -> Result<Arc<str>, String> {
    std::fs::read_to_string(path)
        .map(Arc::from)
        .map_err(|e| e.to_string())
}

/// The registry files of a folder listing, by path.
fn listing(files: Vec<FileContents>) -> Files {
    files.into_iter().map(|f| (f.path, f.text)).collect()
}

/// What a burst of events asks to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These registry files (by name) were created, written, renamed or removed.
    Files(BTreeSet<OsString>),
    /// The whole folder: the watch lost events or failed, or the folder itself changed.
    Folder,
}

impl Change {
    fn absorb(self, other: Change) -> Change {
        match (self, other) {
            (Change::Files(mut a), Change::Files(b)) => {
                a.extend(b);
                Change::Files(a)
            }
            _ => Change::Folder,
        }
    }
}

/// What one event asks for, if anything. Reading a file (ours included: a reload opens
/// every file it reads) raises access events, which change nothing and must not cause
/// another reload; nor do editors' and Ansible's temporary files.
pub fn change_of(event: &notify::Result<notify::Event>) -> Option<Change> {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "watch error; reading the whole folder");
            return Some(Change::Folder);
        }
    };
    if event.need_rescan() {
        return Some(Change::Folder);
    }
    if matches!(event.kind, EventKind::Access(_)) {
        return None;
    }
    let names: BTreeSet<OsString> = event
        .paths
        .iter()
        .filter(|p| is_registry_file(p))
        .filter_map(|p| p.file_name().map(OsString::from))
        .collect();
    (!names.is_empty()).then_some(Change::Files(names))
}

/// Blocks until an event asked for a change and the folder has been quiet for [`QUIET`]
/// (or [`MAX_DELAY`] has passed since that event); returns everything asked meanwhile.
/// `None` when the watch has stopped.
fn wait_for_change(events: &Receiver<notify::Result<notify::Event>>) -> Option<Change> {
    let mut change = loop {
        if let Some(change) = change_of(&events.recv().ok()?) {
            break change;
        }
    };
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let wait = QUIET.min(deadline.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            return Some(change);
        }
        match events.recv_timeout(wait) {
            Ok(event) => {
                if let Some(more) = change_of(&event) {
                    change = change.absorb(more);
                }
            }
            Err(RecvTimeoutError::Timeout) => return Some(change),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// A running watch of the folder. Dropping it stops the watch.
pub struct StaticWatcher {
    rx: watch::Receiver<StaticView>,
    /// Dropping it ends the watch, and with it the reading thread.
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for StaticWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticWatcher")
            .field("version", &self.rx.borrow().snapshot.version())
            .finish_non_exhaustive()
    }
}

impl StaticWatcher {
    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<StaticView> {
        self.rx.clone()
    }

    /// The view in force.
    pub fn current(&self) -> StaticView {
        self.rx.borrow().clone()
    }
}

//! File hygiene for secrets: atomic replacement (write a temporary file in the same directory,
//! fsync, rename, fsync the directory) and the permission check on private key files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "{path}: private key is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
}

impl FileError {
    pub fn io(path: &Path, error: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            error,
        }
    }
}

/// Mode for private keys and other secrets.
pub const SECRET_MODE: u32 = 0o600;
/// Mode for certificates and other public material.
pub const PUBLIC_MODE: u32 = 0o644;

/// Replaces `path` with `contents` so that a reader sees either the old or the new file, never a
/// part of one, and a crash leaves one of the two on disk.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| FileError::io(path, io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| FileError::io(path, e))
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, FileError> {
    let meta = fs::metadata(path).map_err(|e| FileError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map_err(|e| FileError::io(path, e))
}

pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|e| FileError::io(path, e))
}

pub fn create_dir(path: &Path, mode: u32) -> Result<(), FileError> {
    fs::create_dir_all(path).map_err(|e| FileError::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| FileError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"one", SECRET_MODE)?;
        write_atomic(&path, b"two", SECRET_MODE)?;
        assert_eq!(fs::read(&path)?, b"two");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path())?.count(),
            1,
            "temporary file left behind"
        );
        Ok(())
    }

    #[test]
    fn refuses_group_readable_secret() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.pem");
        write_atomic(&path, b"secret", 0o640)?;
        let err = read_secret(&path).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                format!(
                    "{}: private key is readable by group or others (mode 0640); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                )
                .as_str()
            )
        );
        Ok(())
    }
}

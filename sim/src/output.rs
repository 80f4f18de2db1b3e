//! Output files written whole or not at all. [`OutputFile::create`] opens a temporary file in
//! the destination's folder (so a bad path fails before any work, and nothing is truncated);
//! [`OutputFile::write`] fills it and renames it over the destination. A command that fails
//! in between leaves the destination as it was: no empty or half-written file.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Why an output file could not be written.
#[derive(Debug)]
pub enum OutputError {
    /// The file (or its temporary file beside it) could not be created.
    Create {
        /// The destination.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Writing or renaming failed.
    Write {
        /// The destination.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Create { path, error } => {
                write!(f, "cannot create {}: {error}", path.display())
            }
            OutputError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for OutputError {}

/// Where the bytes go until they are complete.
#[derive(Debug)]
enum Pending {
    /// A temporary file beside the destination, renamed over it at the end.
    Temp(NamedTempFile),
    /// The destination itself: it exists and is not a regular file (`/dev/null`, a pipe), or
    /// is reached through `/dev` or `/proc` (`/dev/stdout`), so it is written in place;
    /// renaming over it would replace the device, or the file the process prints to.
    InPlace(File),
}

/// An output file being prepared; see the module documentation.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    pending: Pending,
}

impl OutputFile {
    /// Prepares `path` for writing; the destination is untouched until [`OutputFile::write`].
    pub fn create(path: &Path) -> Result<OutputFile, OutputError> {
        let create = |error| OutputError::Create {
            path: path.into(),
            error,
        };
        let existing = std::fs::metadata(path).ok();
        // `/dev/stdout` may lead to a regular file that is the process's own output: renamed
        // over, what is printed after would go to a file no longer there.
        let system = path.starts_with("/dev") || path.starts_with("/proc");
        if let Some(m) = existing.as_ref().filter(|m| !m.is_file() || system) {
            if m.is_dir() {
                return Err(create(std::io::Error::other("is a folder")));
            }
            let file = File::options().write(true).open(path).map_err(create)?;
            return Ok(OutputFile {
                path: path.into(),
                pending: Pending::InPlace(file),
            });
        }
        // A symbolic link keeps pointing where it did: its target is replaced.
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(create)?,
            _ => path.to_path_buf(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".fwsim-").suffix(".tmp");
        // The mode `File::create` gives (the umask applies), not the owner-only default.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder.tempfile_in(dir).map_err(create)?;
        if let Some(m) = existing {
            // A replaced file keeps its mode.
            temp.as_file()
                .set_permissions(m.permissions())
                .map_err(create)?;
        }
        Ok(OutputFile {
            path: target,
            pending: Pending::Temp(temp),
        })
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` as the whole file and puts it in place.
    pub fn write(self, bytes: &[u8]) -> Result<(), OutputError> {
        let failed = |error| OutputError::Write {
            path: self.path.clone(),
            error,
        };
        match self.pending {
            Pending::InPlace(mut file) => file.write_all(bytes).and_then(|()| file.flush()),
            Pending::Temp(mut temp) => temp
                .write_all(bytes)
                .and_then(|()| temp.as_file().sync_all())
                .and_then(|()| temp.persist(&self.path).map(drop).map_err(|e| e.error)),
        }
        .map_err(failed)
    }
}

/// Writes `bytes` as the whole of `path`, atomically: [`OutputFile::create`] then
/// [`OutputFile::write`].
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    OutputFile::create(path)?.write(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_changes_only_when_the_file_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let pending = OutputFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        drop(pending);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        write_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let missing = dir.path().join("no/such/dir/x");
        let e = OutputFile::create(&missing).unwrap_err().to_string();
        assert!(e.contains("no/such/dir/x"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_keeps_pointing_at_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (file, link) = (dir.path().join("file"), dir.path().join("link"));
        std::fs::write(&file, "old").unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_in_place_and_name_the_file() {
        write_file(Path::new("/dev/null"), b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        if Path::new("/dev/full").exists() {
            let e = write_file(Path::new("/dev/full"), b"x")
                .unwrap_err()
                .to_string();
            assert!(e.contains("/dev/full"), "{e}");
        }
    }
}

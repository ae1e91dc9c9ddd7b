//! Opening the diagnostic log: refuse symlinks, rotate once, private mode.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The log, opened for appending, and its size right after opening.
#[derive(Debug)]
pub(super) struct OpenedLog {
    pub(super) file: File,
    pub(super) len: u64,
}

/// Open `path` for appending, rotating it to `<path>.1` first when it is larger than
/// `rotate_at`, creating missing parent directories (0700) first.
pub(super) fn open(path: &Path, rotate_at: u64) -> io::Result<OpenedLog> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            // O_NOFOLLOW would refuse it too, but rename() below must not move a symlink.
            if meta.file_type().is_symlink() {
                return Err(refused(path, "is a symlink"));
            }
            if !meta.is_file() {
                return Err(refused(path, "is not a regular file"));
            }
            if meta.len() > rotate_at {
                fs::rename(path, rotated_path(path))?;
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            crate::sys::private_file::create_parent_dirs(path)?;
        }
        Err(err) => return Err(err),
    }
    let file = crate::sys::private_file::open_append(path)?;
    let meta = file.metadata()?;
    Ok(OpenedLog {
        file,
        len: meta.len(),
    })
}

/// `<path>.1`.
pub(super) fn rotated_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".1");
    PathBuf::from(name)
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing diagnostic log {}: the path {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_path_appends_suffix() {
        assert_eq!(
            rotated_path(Path::new("/x/diag.log")),
            PathBuf::from("/x/diag.log.1")
        );
    }
}

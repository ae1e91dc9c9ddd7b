//! Files that may hold what a process should keep to itself (contexts, diagnostics, reports):
//! opened without following symlinks, never blocking on a FIFO, created 0600 and narrowed to
//! 0600 when they already existed with a wider mode.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {why}", path.display()),
    )
}

/// Creates the missing directories above `path`, each mode 0700 (less the umask), as
/// tracing-appender does for its log directory. The error names the directory that could not
/// be created and why.
pub(crate) fn create_parent_dirs(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            let why = if e.kind() == io::ErrorKind::AlreadyExists {
                "it exists and is not a directory".to_owned()
            } else {
                e.to_string()
            };
            io::Error::new(
                e.kind(),
                format!("create directory {}: {why}", dir.display()),
            )
        })
}

/// Opens `path` for appending (created 0600). A symlink, a FIFO or any other non-regular file at
/// the path is refused; an existing file with group or other bits is narrowed to 0600 through
/// the open descriptor (no path race).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO for writing must not wait for a reader.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(path, "is a symlink")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Opens the regular file at `path` for reading without following a symlink or blocking on a
/// FIFO. `Ok(None)` when there is no file.
pub(crate) fn open_read(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(path, "is a symlink"))
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    Ok(Some(file))
}

/// Reads at most `limit` bytes of the regular file at `path` (see [`open_read`]). `Ok(None)`
/// when there is no file; `InvalidData` when it is larger.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = open_read(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew (or lied about its size) from one that fits.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {limit} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` the way this crate writes its own files: a new temporary file
/// next to it, mode 0600, created exclusively and without following symlinks (a file or link
/// planted at the path is replaced, never written through), synced, renamed over `path`, and
/// the directory synced so that the rename survives a crash. Readers see the old content or
/// the new, never a mix.
///
/// Use it for what a shutdown leaves behind (reports, traces) in directories others may write.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("shutdown-trace.json");
/// let victim = dir.path().join("victim");
/// std::fs::write(&victim, "keep")?;
/// std::os::unix::fs::symlink(&victim, &path)?; // planted
/// shutdown_forensics::report::write_private_file(&path, b"{}")?;
/// assert_eq!(std::fs::read_to_string(&victim)?, "keep");
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// When the temporary file cannot be created, written or synced, or the rename fails (the
/// temporary file is removed then). A failure to sync the directory is not reported.
pub fn write_private_file(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), crate::Error> {
    let path = path.as_ref();
    write_atomic(path, bytes).map_err(|e| crate::Error::io(format!("write {}", path.display()), e))
}

/// Replaces `path` with `bytes` atomically: a new 0600 temporary file next to it (created
/// exclusively, so a planted file or symlink is never written through), synced, renamed over,
/// and the directory synced (the rename is an entry in it).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| refused(path, "has no file name"))?;
    let mut last = None;
    for attempt in 0..8u32 {
        let mut tmp_name = name.to_owned();
        tmp_name.push(format!(".tmp.{}.{}", std::process::id(), unique(attempt)));
        let tmp = path.with_file_name(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(mut f) => {
                let written = f
                    .write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, path));
                if written.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                } else {
                    sync_dir(path);
                }
                return written;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Replaces the content of `path` with `bytes`: atomically ([`write_atomic`]) where a rename
/// can replace it, else in place ([`overwrite_in_place`]) when it is an existing regular file
/// that cannot be renamed over (a bind mount, as Kubernetes mounts `terminationMessagePath`:
/// `EBUSY`) or whose directory we may not write (`/dev` in a container run as non-root).
pub(crate) fn replace_contents(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let Err(e) = write_atomic(path, bytes) else {
        return Ok(());
    };
    let in_place = matches!(
        e.raw_os_error(),
        Some(libc::EBUSY | libc::EXDEV | libc::EACCES | libc::EPERM | libc::EROFS)
    ) && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if !in_place {
        return Err(e);
    }
    overwrite_in_place(path, bytes)
        .map_err(|e2| io::Error::new(e2.kind(), format!("replace: {e}; overwrite in place: {e2}")))
}

/// Longest old content that is blanked out by the same write (beyond it, the file is
/// truncated first).
const BLANK_MAX: u64 = 64 * 1024;

/// Overwrites the existing regular file `path` (never created, no symlink followed, no FIFO
/// waited on) with `bytes` in one `pwrite(2)` at offset 0, padded with spaces over the old
/// content, then truncates it to `bytes` and syncs it. A kill between the write and the
/// truncation leaves the new text followed by blanks, never by the tail of the old text. Group
/// and other bits are narrowed to 0600 when we may (a file that is not ours keeps its mode).
pub(crate) fn overwrite_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(path, "is a symlink")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        let _ = file.set_permissions(Permissions::from_mode(0o600));
    }
    let new_len = bytes.len() as u64;
    let mut text = bytes.to_vec();
    if meta.len() > BLANK_MAX {
        file.set_len(0)?;
    } else if meta.len() > new_len {
        text.resize(usize::try_from(meta.len()).unwrap_or(text.len()), b' ');
    }
    file.write_all_at(&text, 0)?;
    file.set_len(new_len)?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so that a rename into it survives a crash. Best
/// effort: some file systems refuse to sync a directory, and the file itself is synced already.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir);
    if let Ok(d) = opened {
        let _ = d.sync_all();
    }
}

/// A value that differs between calls and processes, for temporary names.
fn unique(attempt: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_is_private_and_refuses_links_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "x").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        drop(open_append(&p).unwrap());
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(open_append(&link)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(open_append(&fifo).is_err());
        assert!(read_bounded(&fifo, 10).is_err());
    }

    #[test]
    fn missing_parents_are_created_private_and_failures_name_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/f");
        create_parent_dirs(&p).unwrap();
        let mode = std::fs::metadata(d.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        create_parent_dirs(&p).unwrap(); // already there
        create_parent_dirs(Path::new("f")).unwrap(); // the current directory
        std::fs::write(d.path().join("file"), "").unwrap();
        let err = create_parent_dirs(&d.path().join("file/sub/f")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("create directory ") && text.contains("file/sub"),
            "{text}"
        );
    }

    #[test]
    fn bounded_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        assert!(read_bounded(&p, 4).unwrap().is_none());
        std::fs::write(&p, "1234").unwrap();
        assert_eq!(read_bounded(&p, 4).unwrap().unwrap(), b"1234");
        assert_eq!(
            read_bounded(&p, 3).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // A zero-size file that yields bytes (as /proc files do) is still bounded.
        assert_eq!(
            read_bounded(Path::new("/proc/self/environ"), 0)
                .map(|b| b.map(|b| b.len()))
                .ok(),
            None
        );
    }

    #[test]
    fn in_place_overwrite_replaces_all_of_the_old_text_and_refuses_links_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("termination-log");
        std::fs::write(&p, "a much longer old message\nwith two lines").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o666)).unwrap();
        overwrite_in_place(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        overwrite_in_place(&p, b"longer than before").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"longer than before");
        // Never created, never through a link, never a FIFO.
        assert!(overwrite_in_place(&d.path().join("missing"), b"x").is_err());
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(overwrite_in_place(&link, b"x")
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(overwrite_in_place(&fifo, b"x").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"longer than before");
    }

    #[test]
    fn replacing_contents_is_atomic_where_a_rename_can_do_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("termination-log");
        replace_contents(&p, b"first").unwrap();
        replace_contents(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // Not a case for the in-place fallback: a missing directory.
        assert!(replace_contents(&d.path().join("no/such/dir/f"), b"x").is_err());
    }

    #[test]
    fn atomic_write_never_writes_through_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("victim");
        std::fs::write(&target, "keep").unwrap();
        let p = d.path().join("report.json");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        assert_eq!(
            std::fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}

//! One start at a time on a record path: recovering a start killed halfway, reading the
//! previous record, putting it aside, putting the new one in place and judging takeovers are
//! one critical section across processes.
//!
//! Without it, starts racing on one state directory (a restart loop, two instances of one
//! unit, a deploy script that starts the new one early) interleave those steps: two read the
//! same record and both report it, and one renames another's fresh record to `.prev` before
//! anyone judged it, so that run's death is never reported. The lock is an `flock(2)` on
//! `<path>.lock` (created 0600, opened without following a symlink or blocking on a FIFO, never
//! removed: removing a lock file lets two holders in). The kernel drops it when its holder
//! dies, so a start SIGKILLed inside the section blocks nobody.
//!
//! Never the reason a service does not start: where no lock file can be made (a read-only
//! directory) the directory itself is locked, and a holder that does not let go (stopped with
//! SIGSTOP, traced) is waited for at most [`PATIENCE`], then the start goes on unlocked.

use std::fs::{File, OpenOptions, Permissions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a start waits for another start's critical section (which takes milliseconds).
const PATIENCE: Duration = Duration::from_secs(5);
/// Between two tries of a non-blocking `flock` (a blocking one could not give up).
const RETRY: Duration = Duration::from_millis(2);

/// Held while a start replaces the record; released on drop (or by the kernel at death).
#[derive(Debug)]
pub(crate) struct StartLock {
    /// `None` when no lock could be had: the start goes on as before this lock existed.
    _file: Option<File>,
}

/// `<path>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StartLock {
    /// Takes the lock for the record at `path` (its directory must exist), waiting at most
    /// [`PATIENCE`]; never fails.
    pub(crate) fn acquire(path: &Path) -> Self {
        let file = open_lock_file(&lock_path(path)).or_else(|| open_dir(path));
        Self {
            _file: file.filter(|f| lock(f, PATIENCE)),
        }
    }

    /// The lock on `<path>.lock` only (no directory fallback: where no lock file can be made,
    /// nothing else can be written there either, and the directory may be locked by this very
    /// start), waiting at most `patience`. For the history (`record/history.rs`).
    pub(crate) fn acquire_file(path: &Path, patience: Duration) -> Self {
        Self {
            _file: open_lock_file(&lock_path(path)).filter(|f| lock(f, patience)),
        }
    }

    /// Whether the lock is held (false: no lock file nor directory could be locked in time).
    pub(crate) fn held(&self) -> bool {
        self._file.is_some()
    }
}

/// Opens (creating, 0600) the regular file at `path`; `None` for a symlink, FIFO, or anything
/// that cannot be opened.
fn open_lock_file(path: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        let _ = file.set_permissions(Permissions::from_mode(0o600));
    }
    Some(file)
}

/// The record's directory, opened for locking (read only: it may not be writable).
fn open_dir(path: &Path) -> Option<File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .ok()
}

/// `flock(LOCK_EX)`, retried without blocking until `patience` runs out.
fn lock(file: &File, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        // SAFETY: flock(2) on a descriptor this `File` owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        let e = std::io::Error::last_os_error();
        let busy = matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EINTR));
        if !busy || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_stalled_one_is_waited_for_only_so_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        let first = StartLock::acquire(&path);
        assert!(first.held());
        let meta = std::fs::symlink_metadata(lock_path(&path)).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A second open file description (as another process has) cannot take it.
        let other = open_lock_file(&lock_path(&path)).unwrap();
        let start = Instant::now();
        assert!(!lock(&other, Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        drop(first);
        assert!(lock(&other, Duration::from_millis(50)));
    }

    #[test]
    fn a_planted_symlink_is_not_followed_and_the_directory_is_locked_instead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, lock_path(&path)).unwrap();
        let held = StartLock::acquire(&path);
        assert!(held.held());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the link's target is not narrowed");
        // The directory is what is locked now: a second start waits for it.
        let dir_fd = open_dir(&path).unwrap();
        assert!(!lock(&dir_fd, Duration::from_millis(20)));
        drop(held);
        assert!(lock(&dir_fd, Duration::from_millis(20)));
    }
}

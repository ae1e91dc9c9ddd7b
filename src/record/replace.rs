//! Starting a new record without a moment where a kill loses the old one's verdict.
//!
//! The new record is written first, `run` line and all (it carries the verdict this start
//! read), under a name of its own: `<path>.<pid>.new`. Then the old record gets a second name
//! (`.prev`, or `<path>.<pid>.takeover` for a live predecessor), and one `rename(2)` puts the
//! new record in its place. A SIGKILL at any step leaves at `path` either the old record,
//! judged again by the next start, or the new one, which carries the verdict. Where hard
//! links cannot be made, the old record is moved instead, and a start killed in that gap
//! leaves its new record under its own name: the next start finishes the move ([`recover`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::record::takeover::numbered_siblings;

/// `<path>.<pid>.new`: the record a start writes before it puts it in place.
pub(crate) fn fresh_path(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{pid}.new"));
    PathBuf::from(name)
}

/// What [`put_aside`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aside {
    /// A second name: the record is still at `path` too.
    Linked,
    /// Moved: nothing is at `path` until the new record is renamed there.
    Moved,
    /// Neither (a single-file bind mount, a directory in the way): still at `path` only.
    Failed,
}

/// Gives the record at `path` the second name `aside` (replacing what had it), keeping it at
/// `path`; where hard links cannot be made, moves it.
pub(crate) fn put_aside(path: &Path, aside: &Path) -> Aside {
    // `remove_file` removes a symlink planted under that name, never what it points to.
    let _ = fs::remove_file(aside);
    if fs::hard_link(path, aside).is_ok() {
        Aside::Linked
    } else if fs::rename(path, aside).is_ok() {
        Aside::Moved
    } else {
        Aside::Failed
    }
}

/// Records of starts killed before they put theirs in place: when no record is at `path`,
/// the newest one is put there (its `run` line carries what that start read); the others,
/// and all of them when a record is at `path`, are removed (the record at `path` is the one
/// they were about to replace, judged again now). A file of a live process other than this
/// one is left alone: a start under way (`alive` judges a file by its `run` line: pid, start
/// time and boot, so a pid reused by another process does not count).
pub(crate) fn recover(path: &Path, alive: impl Fn(&Path) -> bool) {
    let mut stale: Vec<(SystemTime, PathBuf)> = Vec::new();
    for found in numbered_siblings(path, ".new") {
        // Only regular files are ours (a symlink or FIFO under that name is left alone).
        let Ok(meta) = found.symlink_metadata() else {
            continue;
        };
        if meta.is_file() && !alive(&found) {
            stale.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), found));
        }
    }
    stale.sort();
    let missing =
        matches!(path.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if missing {
        if let Some((_, newest)) = stale.pop() {
            let _ = fs::rename(newest, path);
        }
    }
    for (_, file) in stale {
        let _ = fs::remove_file(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_start_is_finished_or_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        // A dead pid: a process that ran and was reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        // No record at `path`: the dead start's record is put there.
        let alive = |p: &Path| fs::read_to_string(p).is_ok_and(|t| t.contains("alive"));
        fs::write(fresh_path(&path, dead), "{\"kind\":\"run\",\"pid\":1}\n").unwrap();
        recover(&path, alive);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"kind\":\"run\",\"pid\":1}\n"
        );
        assert!(!fresh_path(&path, dead).exists());
        // A record at `path`: the leftover goes, the record stays.
        fs::write(fresh_path(&path, dead), "other").unwrap();
        recover(&path, alive);
        assert!(!fresh_path(&path, dead).exists());
        assert!(fs::read_to_string(&path).unwrap().contains("\"pid\":1"));
        // A live process's start under way is left alone; so is a symlink.
        let live = fresh_path(&path, 1);
        fs::write(&live, "alive").unwrap();
        let link = dir.path().join("flight.jsonl.22.new");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        fs::remove_file(&path).unwrap();
        recover(&path, alive);
        assert!(live.exists() && link.symlink_metadata().is_ok());
        assert!(!path.exists());
        // Two left by dead starts: the newest is put in place.
        fs::remove_file(&live).unwrap();
        fs::write(fresh_path(&path, 5), "older").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(fresh_path(&path, 6), "newer").unwrap();
        recover(&path, alive);
        assert_eq!(fs::read_to_string(&path).unwrap(), "newer");
        assert!(!fresh_path(&path, 5).exists() && !fresh_path(&path, 6).exists());
    }

    #[test]
    fn the_old_record_keeps_its_place_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        let aside = dir.path().join("flight.jsonl.prev");
        fs::write(&path, "old").unwrap();
        fs::write(&aside, "older").unwrap();
        assert_eq!(put_aside(&path, &aside), Aside::Linked);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_to_string(&aside).unwrap(), "old");
        // A symlink planted as `.prev` is replaced, its target untouched.
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        fs::remove_file(&aside).unwrap();
        std::os::unix::fs::symlink(&target, &aside).unwrap();
        assert_eq!(put_aside(&path, &aside), Aside::Linked);
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
        assert!(aside.symlink_metadata().unwrap().is_file());
        // A directory in the way: false, and the record is still at `path`.
        fs::remove_file(&aside).unwrap();
        fs::create_dir(&aside).unwrap();
        assert_eq!(put_aside(&path, &aside), Aside::Failed);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    }
}

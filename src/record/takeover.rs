//! Takeovers: a new instance opens the record while its predecessor still runs (a rolling
//! restart, `--replace`). The live record is moved to `<path>.<pid>.takeover` instead of
//! `.prev`: the predecessor keeps writing into it through its open descriptor, and a later
//! start judges it once that process is gone, so its death is still reported.

use std::path::{Path, PathBuf};

use crate::verdict::PreviousShutdown;

/// At most this many directory entries are looked at, and this many takeover files judged,
/// per start: a state directory full of junk must not slow a start down.
const SCAN_LIMIT: usize = 4096;
const JUDGE_LIMIT: usize = 16;

/// `<path>.<pid>.takeover`.
pub(crate) fn takeover_path(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{pid}.takeover"));
    PathBuf::from(name)
}

/// The verdicts (by `judge`, the record reader) on the takeover files next to `path` whose
/// process is gone; each judged file is removed (its verdict is what it was kept for). Files
/// of live processes stay.
/// The entries next to `path` named `<file name>.<digits><suffix>` (at most [`SCAN_LIMIT`]
/// looked at): the takeover files (`.takeover`) and the records of starts under way (`.new`).
pub(crate) fn numbered_siblings(path: &Path, suffix: &str) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    entries
        .take(SCAN_LIMIT)
        .flatten()
        .filter(|entry| {
            let file = entry.file_name();
            file.to_string_lossy()
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|entry| entry.path())
        .collect()
}

pub(crate) fn judge_takeovers<E>(
    path: &Path,
    mut judge: impl FnMut(&Path) -> Result<PreviousShutdown, E>,
) -> Vec<PreviousShutdown> {
    // A takeover name that is another name of the record or of `.prev` (a start killed after
    // it linked the live record aside, before it replaced it; the process has died since and
    // its record was judged as the previous run): the same run, not a second one.
    let inode = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        p.symlink_metadata().ok().map(|m| (m.dev(), m.ino()))
    };
    let mut prev = path.as_os_str().to_owned();
    prev.push(".prev");
    let judged: Vec<(u64, u64)> = [inode(path), inode(Path::new(&prev))]
        .into_iter()
        .flatten()
        .collect();
    let mut verdicts = Vec::new();
    for found in numbered_siblings(path, ".takeover") {
        if inode(&found).is_some_and(|i| judged.contains(&i)) {
            let _ = std::fs::remove_file(&found);
            continue;
        }
        match judge(&found) {
            Ok(PreviousShutdown::StillRunning { .. }) => {}
            Ok(verdict) => {
                if verdict != PreviousShutdown::None {
                    verdicts.push(verdict);
                }
                let _ = std::fs::remove_file(&found);
            }
            // A symlink or FIFO planted under that name: not ours, left alone.
            Err(_) => {}
        }
        if verdicts.len() >= JUDGE_LIMIT {
            break;
        }
    }
    verdicts
}

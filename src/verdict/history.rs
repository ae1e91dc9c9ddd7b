//! Reading the history of the last stops (`history.jsonl` beside the flight record).
//!
// For contributors: the one function of `verdict/` that reads a file (the public entry point
// `verdict::history`). It never follows a symlink nor blocks on a FIFO, and reads at most the
// last `READ_LIMIT` bytes; the parsing is `summary::parse_history`, pure. Writing the history
// is `record/history.rs`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::summary::{parse_history, StopSummary};
use crate::error::Error;

/// The history's file name, in the flight record's directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The most of a history file read (its last bytes): far more than the stops it keeps.
pub(crate) const READ_LIMIT: u64 = 4 << 20;

/// The history file beside the flight record at `record`.
pub(crate) fn beside(record: &Path) -> PathBuf {
    match record.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(HISTORY_FILE),
        _ => PathBuf::from(HISTORY_FILE),
    }
}

/// The history file `path` names: `path` itself when it is the history, else the one in the
/// directory `path` is, or the one beside the record `path` is.
///
/// # Errors
/// `path` does not exist, is a symlink, or neither a regular file nor a directory.
pub(crate) fn history_file(path: &Path) -> io::Result<PathBuf> {
    let meta = path.symlink_metadata()?;
    if meta.is_dir() {
        return Ok(path.join(HISTORY_FILE));
    }
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symlink (give the state directory or the record itself)",
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is neither a directory nor a regular file",
        ));
    }
    if path.file_name().is_some_and(|n| n == HISTORY_FILE) {
        return Ok(path.to_path_buf());
    }
    Ok(beside(path))
}

/// The last stops of the service whose state directory (or flight record, or history file)
/// is `path`, oldest first: one [`StopSummary`] per stop, written at
/// [`Forensics::finish`](crate::Forensics::finish) by a run that finished and by the next
/// start for one that did not (SIGKILLed, crashed, exited early). A line a kill cut short is
/// skipped. No history yet (no stop since the history began) is an empty list.
///
/// ```
/// use shutdown_forensics::verdict;
///
/// let dir = tempfile::tempdir()?;
/// assert!(verdict::history(dir.path())?.is_empty()); // no stop yet
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// When `path` does not exist, is a symlink, a FIFO or another non-regular file, or the
/// history file cannot be read (it, too, is never read through a symlink).
pub fn history(path: impl AsRef<Path>) -> Result<Vec<StopSummary>, Error> {
    let path = path.as_ref();
    let error = |e| Error::io(format!("read shutdown history {}", path.display()), e);
    let file = history_file(path).map_err(error)?;
    let text = read_history_text(&file)
        .map_err(|e| Error::io(format!("read shutdown history {}", file.display()), e))?;
    Ok(text.map(|t| parse_history(&t)).unwrap_or_default())
}

/// The history beside the flight record at `record` (which need not exist yet).
pub(crate) fn read_beside(record: &Path) -> Result<Vec<StopSummary>, Error> {
    let file = beside(record);
    let text = read_history_text(&file)
        .map_err(|e| Error::io(format!("read shutdown history {}", file.display()), e))?;
    Ok(text.map(|t| parse_history(&t)).unwrap_or_default())
}

/// The history file's last [`READ_LIMIT`] bytes from their first whole line; `None` when
/// there is no file.
pub(crate) fn read_history_text(path: &Path) -> io::Result<Option<String>> {
    let Some(file) = crate::sys::private_file::open_read(path)? else {
        return Ok(None);
    };
    read_tail(file).map(Some)
}

fn read_tail(mut file: File) -> io::Result<String> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(READ_LIMIT);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    (&mut file).take(READ_LIMIT).read_to_end(&mut buf)?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(history_file(d).unwrap(), d.join(HISTORY_FILE));
        std::fs::write(d.join("flight.jsonl"), "").unwrap();
        assert_eq!(
            history_file(&d.join("flight.jsonl")).unwrap(),
            d.join(HISTORY_FILE)
        );
        std::fs::write(d.join(HISTORY_FILE), "").unwrap();
        assert_eq!(
            history_file(&d.join(HISTORY_FILE)).unwrap(),
            d.join(HISTORY_FILE)
        );
        assert_eq!(
            history_file(&d.join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::os::unix::fs::symlink(d.join("flight.jsonl"), d.join("link")).unwrap();
        assert!(history_file(&d.join("link"))
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        assert_eq!(beside(Path::new("flight.jsonl")), Path::new(HISTORY_FILE));
    }

    #[test]
    fn a_history_read_is_bounded_and_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let line = r#"{"verdict":"clean","recorded_by":"finish","pid":1}"#;
        let mut text = "x".repeat(usize::try_from(READ_LIMIT).unwrap());
        text.push('\n');
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let read = history(dir.path()).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].pid, Some(1));
    }
}

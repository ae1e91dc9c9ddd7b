//! `PATH` to a flight record: the record itself, or the one record in a state directory.
//! Nothing is followed or opened that could hang or lie: a symlink is refused (the library
//! never reads its files through one), a FIFO or device is refused before it is opened, and a
//! file whose tail holds no record line is not taken for one, whatever its size.

use std::path::{Path, PathBuf};

use shutdown_forensics::report::{read_flight_record, RecordedRun};
use shutdown_forensics::verdict::HISTORY_FILE;

/// Names in a state directory that are not the record (its siblings, the history, temporary
/// files).
fn is_sibling(name: &str) -> bool {
    name == HISTORY_FILE
        || [".prev", ".lock", ".new", ".takeover"]
            .iter()
            .any(|s| name.ends_with(s))
        || name.contains(".tmp.")
}

/// What kind of thing `path` is, or why it cannot be used.
fn kind(path: &Path) -> Result<std::fs::Metadata, String> {
    let meta = path
        .symlink_metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symlink: give the state directory or the flight record itself",
            path.display()
        ));
    }
    if !meta.is_dir() && !meta.is_file() {
        return Err(format!(
            "{} is neither a directory nor a regular file (a FIFO, a socket or a device)",
            path.display()
        ));
    }
    Ok(meta)
}

/// The flight record `path` names, read.
pub(crate) fn record(path: &Path) -> Result<RecordedRun, String> {
    let meta = kind(path)?;
    if meta.is_file() {
        return read(path);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut found: Vec<RecordedRun> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".jsonl") || is_sibling(&name) {
            continue;
        }
        // Regular files only (a FIFO named x.jsonl is not opened).
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(run) = read(&entry.path()) {
            found.push(run);
        }
    }
    match found.len() {
        0 => Err(format!(
            "no flight record in {} (no *.jsonl file there holds record lines)",
            path.display()
        )),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found.iter().map(|r| r.path.display().to_string()).collect();
            Err(format!(
                "{} holds several flight records ({}): give one of them",
                path.display(),
                names.join(", ")
            ))
        }
    }
}

/// The record at `path`, refused when its tail holds no record line.
fn read(path: &Path) -> Result<RecordedRun, String> {
    let run = read_flight_record(path).map_err(|e| e.to_string())?;
    if run.records == 0 {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        return Err(format!(
            "{} is not a flight record: no record line in its last 64 KiB ({size} bytes)",
            path.display()
        ));
    }
    Ok(run)
}

/// `<record>.prev`: the run before the one at `record`.
pub(crate) fn previous_of(record: &Path) -> PathBuf {
    let mut name = record.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// The directory a record is in (for the marker and for messages).
pub(crate) fn dir_of(record: &Path) -> PathBuf {
    match record.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `PATH` for the history: refused like [`record`]'s, and a regular file that is neither
/// the history nor a record is not taken for a record's neighbour.
pub(crate) fn history_path(path: &Path) -> Result<(), String> {
    let meta = kind(path)?;
    let is_history = path.file_name().is_some_and(|n| n == HISTORY_FILE);
    if meta.is_file() && !is_history {
        read(path)?;
    }
    Ok(())
}

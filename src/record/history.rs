//! Writing the history of the last stops: `history.jsonl` beside the flight record, one
//! [`StopSummary`] a line, mode 0600, the last [`KEEP`] stops.
//!
//! It keeps the record's guarantees. A line is one `write(2)` on an `O_APPEND` file (created
//! 0600, never through a symlink or into a FIFO), so a kill mid-write leaves at most a torn
//! last line, which readers skip and the next line does not glue onto. Writers take turns on
//! an `flock(2)` of `history.jsonl.lock` (as starts do on the record's, `start_lock.rs`): each
//! checks that its stop is not there yet (a run that finished wrote its own; a start killed
//! after writing its predecessor's is followed by one that judges the same record again), and
//! only a writer holding the lock rewrites the file when it grew past [`KEEP`] plus a slack,
//! atomically (a new file renamed over it), so no racing writer's line is lost in a rewrite.
//! A writer that cannot have the lock in time still appends: a line is never dropped for a
//! lock.
//!
//! In: a summary (from the record's text at a start, from the report at `finish`). Out: a
//! line on disk.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use crate::record::line_caps::page_padding;
use crate::record::start_lock::StartLock;
use crate::verdict::history::{beside, read_history_text};
use crate::verdict::summary::{parse_history, RecordedBy, StopSummary};
use crate::verdict::PreviousShutdown;

/// Stops kept.
pub(crate) const KEEP: usize = 100;
/// Lines past [`KEEP`] before the file is rewritten (one rewrite per this many stops, not one
/// at every stop once it is full).
const SLACK: usize = 25;
/// How long a start waits for another writer (each holds the lock for milliseconds).
pub(crate) const START_PATIENCE: Duration = Duration::from_secs(2);
/// How long `finish` waits: the process is on its way out, and a line appended without the
/// lock is still safe unless a rewrite runs at that very moment.
pub(crate) const FINISH_PATIENCE: Duration = Duration::from_millis(500);

/// What [`append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// The line was written.
    Written,
    /// The history already holds this stop: nothing written.
    AlreadyThere,
}

/// Appends `summary` to the history beside the record at `record`, unless it holds that stop
/// already; rewrites it down to the last [`KEEP`] stops when it grew past them.
pub(crate) fn append(
    record: &Path,
    summary: &StopSummary,
    patience: Duration,
) -> io::Result<Appended> {
    let path = beside(record);
    let lock = StartLock::acquire_file(&path, patience);
    let text = read_history_text(&path)?.unwrap_or_default();
    let existing = parse_history(&text);
    if existing.iter().any(|s| s.same_stop(summary)) {
        return Ok(Appended::AlreadyThere);
    }
    let file = crate::sys::private_file::open_append(&path)?;
    let mut body = Vec::with_capacity(1024);
    serde_json::to_writer(&mut body, summary).map_err(io::Error::other)?;
    body.push(b'\n');
    // A write a kill cut short: this line starts on a line of its own. (The text just read
    // ends where the file does: writers take turns, and one without the lock is rare.)
    let torn = u64::from(!text.is_empty() && !text.ends_with('\n'));
    // And a line that would cross a page starts on the next one, so a kill cannot cut it.
    let end = file.metadata().ok().map(|m| m.len());
    let lead = torn + end.map_or(0, |e| page_padding(e + torn, body.len()) as u64);
    let mut line = vec![b'\n'; lead as usize];
    line.extend_from_slice(&body);
    // One write_all on an O_APPEND regular file: one write(2), never interleaved.
    (&file).write_all(&line)?;
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() + 1;
    if lock.held() && lines > KEEP + SLACK {
        let _ = rewrite(&path, text.as_bytes(), &line);
    }
    Ok(Appended::Written)
}

/// Replaces the history at `path` with its last [`KEEP`] readable lines (`old` and the line
/// just appended), atomically.
fn rewrite(path: &Path, old: &[u8], appended: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(appended);
    let readable: Vec<&str> = text
        .lines()
        .chain(new.lines())
        .filter(|l| serde_json::from_str::<StopSummary>(l).is_ok())
        .collect();
    let kept = &readable[readable.len().saturating_sub(KEEP)..];
    let mut body = kept.join("\n");
    body.push('\n');
    crate::sys::private_file::write_atomic(path, body.as_bytes())
}

/// At a start, under the record's start lock: the summary of the run the record at `record`
/// holds (`text`, judged `verdict`), appended to the history unless it is there already.
/// Returns the summary and whether this start wrote it (then this start also records its
/// metrics: its process never could).
///
/// A clean stop is written only when the record names its run (the run finished and wrote
/// its own line; only a kill between its `complete` line and its history line leaves it
/// missing), so a stop is never written twice.
pub(crate) fn after_judging(
    record: &Path,
    text: &str,
    verdict: &PreviousShutdown,
) -> Option<(StopSummary, bool)> {
    let summary = crate::verdict::summary::from_record(text, verdict)?;
    if summary.recorded_by != RecordedBy::NextStart
        || (verdict.is_clean() && !summary.identifiable())
    {
        return Some((summary, false));
    }
    let written = matches!(
        append(record, &summary, START_PATIENCE),
        Ok(Appended::Written)
    );
    Some((summary, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn stop(pid: u32, at: f64) -> StopSummary {
        let mut s = StopSummary::new("killed", RecordedBy::NextStart);
        s.pid = Some(pid);
        s.run_started_unix_s = Some(at);
        s
    }

    #[test]
    fn a_stop_is_written_once_privately_and_the_history_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("flight.jsonl");
        let history = dir.path().join("history.jsonl");
        assert_eq!(
            append(&record, &stop(1, 1.0), START_PATIENCE).unwrap(),
            Appended::Written
        );
        assert_eq!(
            append(&record, &stop(1, 1.0), START_PATIENCE).unwrap(),
            Appended::AlreadyThere
        );
        let mode = std::fs::metadata(&history).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A torn last line (a kill mid-write) is skipped, and the next line is not glued to it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&history)
            .unwrap();
        f.write_all(b"{\"pid\":2,\"verd").unwrap();
        append(&record, &stop(3, 3.0), START_PATIENCE).unwrap();
        let read = crate::verdict::history(dir.path()).unwrap();
        let pids: Vec<_> = read.iter().map(|s| s.pid).collect();
        assert_eq!(pids, [Some(1), Some(3)]);
        // Past KEEP + SLACK lines, rewritten to the last KEEP, the newest kept.
        for i in 0..(KEEP + SLACK) {
            append(
                &record,
                &stop(10 + u32::try_from(i).unwrap(), 10.0),
                START_PATIENCE,
            )
            .unwrap();
        }
        let read = crate::verdict::history(dir.path()).unwrap();
        assert!(
            read.len() <= KEEP + SLACK && read.len() >= KEEP,
            "{}",
            read.len()
        );
        assert_eq!(
            read.last().unwrap().pid,
            Some(10 + u32::try_from(KEEP + SLACK - 1).unwrap())
        );
        let mode = std::fs::metadata(&history).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the rewrite is private too");
    }

    #[test]
    fn a_planted_symlink_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("history.jsonl")).unwrap();
        let record = dir.path().join("flight.jsonl");
        assert!(append(&record, &stop(1, 1.0), START_PATIENCE).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn an_appended_line_never_crosses_a_page_so_a_kill_cannot_cut_it() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("flight.jsonl");
        for i in 0..60 {
            let mut s = stop(100 + i, f64::from(i));
            s.stuck = Some("x".repeat(usize::try_from(i * 53 % 700).unwrap()));
            append(&record, &s, START_PATIENCE).unwrap();
        }
        let bytes = std::fs::read(dir.path().join("history.jsonl")).unwrap();
        crate::record::line_caps::assert_no_line_crosses_a_page(&bytes);
        assert!(
            bytes.len() > 3 * 4096,
            "the lines cross pages: {}",
            bytes.len()
        );
        assert_eq!(crate::verdict::history(dir.path()).unwrap().len(), 60);
    }
}

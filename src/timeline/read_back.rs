//! A flight record read back from outside the process that wrote it (the `shutdown-forensics`
//! command-line tool, a support script): the verdict on the run it holds and that run's stop
//! as a report, rebuilt from its lines, complete or not.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::Error;
use crate::record::tail::{judge, read_tail};
use crate::timeline::recovered::rebuild;
use crate::timeline::report::ShutdownReport;
use crate::verdict::PreviousShutdown;

/// The run a flight record holds, as [`read_flight_record`] finds it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedRun {
    /// The record file read.
    pub path: PathBuf,
    /// The verdict on that run, as its next start gives it
    /// ([`PreviousShutdown::StillRunning`] while its process runs).
    pub verdict: PreviousShutdown,
    /// Lines of the record's tail that are records (JSON objects with a `kind`): zero for a
    /// file that is not a flight record (or an empty one).
    pub records: usize,
    /// Its stop as a report: phases (one still running is `open`), stuck snapshots (their
    /// findings), trigger; `complete` when the stop reached `finish`. `None` when the run
    /// began no stop.
    pub report: Option<ShutdownReport>,
    /// Its context (who stopped it), as recorded at the signal, when it was.
    pub context: Option<Value>,
}

/// Reads the flight record at `path` (its last 64 KiB, from their first whole line; never
/// through a symlink nor blocking on a FIFO), judges the run it holds and rebuilds that run's
/// stop as a report. Read-only: nothing is moved or written.
///
/// ```
/// use shutdown_forensics::report::read_flight_record;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("flight.jsonl");
/// std::fs::write(&path, concat!(
///     r#"{"kind":"run","pid":42}"#, "\n",
///     r#"{"kind":"begin","t":0.0,"pid":42}"#, "\n",
///     r#"{"kind":"phase_start","t":0.1,"id":0,"phase":"drain"}"#, "\n",
///     r#"{"kind":"heartbeat","t":3.0}"#, "\n", // then SIGKILL
/// ))?;
/// let run = read_flight_record(&path)?;
/// assert_eq!(run.verdict.kind(), "killed");
/// let report = run.report.unwrap();
/// assert!(!report.complete);
/// assert_eq!(report.phases[0].name, "drain");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// When `path` does not exist, is a symlink, a FIFO or another non-regular file, or cannot be
/// read.
pub fn read_flight_record(path: impl AsRef<Path>) -> Result<RecordedRun, Error> {
    let path = path.as_ref();
    let error = |e| Error::io(format!("read flight record {}", path.display()), e);
    let Some((_, text, oversized)) = read_tail(path).map_err(error)? else {
        return Err(error(std::io::Error::from(std::io::ErrorKind::NotFound)));
    };
    let records = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("kind").is_some_and(Value::is_string))
        .count();
    let verdict = judge(&text, oversized);
    let (report, context) = match rebuild(&text) {
        Some((report, context)) => (Some(report), context),
        None => (None, None),
    };
    Ok(RecordedRun {
        path: path.to_path_buf(),
        verdict,
        records,
        report,
        context,
    })
}

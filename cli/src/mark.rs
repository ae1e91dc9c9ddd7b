//! `mark PATH --reason TEXT`: the planned-stop marker for the service whose flight record is
//! at `PATH`, written before a deploy stops it, so that its `Shutdown context` line says
//! `stop=planned stop_reason=...` instead of `stop=unexpected`.
//!
//! The marker names the process by pid and start time (from `/proc`), both checked against
//! the record: a service that is not running gets no marker (a stale one naming a recycled
//! pid would make some later stop look planned). It is written with the library's writer:
//! a temporary file in the same directory, mode 0600, renamed into place.

use std::path::Path;

use shutdown_forensics::context::markers::{write_marker_with_reason, REASON_MAX};
use shutdown_forensics::verdict::PreviousShutdown;

use crate::resolve::{self, dir_of};

/// The marker's file name: the default of `ContextOptions`.
const MARKER: &str = ".planned-stop.json";

pub(crate) fn run(path: &Path, reason: &str) -> Result<String, String> {
    if reason.trim().is_empty() {
        return Err(
            "mark: --reason needs a text (why the stop is planned: a deploy, a ticket)".into(),
        );
    }
    let run = resolve::record(path)?;
    let PreviousShutdown::StillRunning { pid, .. } = run.verdict else {
        let pid = match &run.report {
            Some(r) => format!("pid {}", r.pid),
            None => "its process".to_owned(),
        };
        return Err(format!(
            "mark: the service recorded in {} is not running ({pid} ended: {}); no marker written",
            run.path.display(),
            run.verdict.kind()
        ));
    };
    let marker = dir_of(&run.path).join(MARKER);
    write_marker_with_reason(&marker, pid, Some(reason)).map_err(|e| format!("mark: {e}"))?;
    let cut = if reason.chars().count() > REASON_MAX {
        format!(" (reason cut to {REASON_MAX} characters)")
    } else {
        String::new()
    };
    Ok(format!(
        "planned-stop marker for pid {pid} written to {}{cut}; its stop logs stop=planned if \
         it comes within 10 minutes (the service must read markers from {}: \
         ContextOptions::with_marker_dir)\n",
        marker.display(),
        dir_of(&run.path).display()
    ))
}

//! `last PATH`: the last stop, from the flight record: who stopped it, its verdict, its
//! waterfall (rebuilt from the record's lines, also after a SIGKILL or with a torn tail), and
//! where it was stuck. While the recorded process still runs, the stop before it (`.prev`).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use shutdown_forensics::report::{read_flight_record, RecordedRun};
use shutdown_forensics::verdict::PreviousShutdown;

use crate::resolve::{self, previous_of};

pub(crate) fn run(path: &Path) -> Result<String, String> {
    let run = resolve::record(path)?;
    let mut out = String::new();
    let PreviousShutdown::StillRunning { pid, .. } = run.verdict else {
        render(&mut out, &run);
        if run.report.is_none() {
            last_in_history(&mut out, &run.path);
        }
        return Ok(out);
    };
    if run.report.is_some() {
        let _ = writeln!(out, "pid {pid} is stopping now; its stop so far:");
        render(&mut out, &run);
        return Ok(out);
    }
    let prev = previous_of(&run.path);
    if prev
        .symlink_metadata()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        let _ = writeln!(
            out,
            "pid {pid} runs now (recorded in {}); no earlier run is recorded beside it",
            run.path.display()
        );
        last_in_history(&mut out, &run.path);
        return Ok(out);
    }
    match read_flight_record(&prev) {
        Ok(before) if before.records > 0 => {
            let _ = writeln!(
                out,
                "pid {pid} runs now (recorded in {}); the run before it:",
                run.path.display()
            );
            render(&mut out, &before);
            if before.report.is_none() {
                last_in_history(&mut out, &run.path);
            }
        }
        Ok(_) => {
            let _ = writeln!(
                out,
                "pid {pid} runs now; {} holds no record",
                prev.display()
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(out)
}

/// When the run shown began no stop: the last stop the history beside it holds, in a line.
fn last_in_history(out: &mut String, record: &Path) {
    let dir = crate::resolve::dir_of(record);
    let Some(last) = shutdown_forensics::verdict::history(&dir)
        .ok()
        .and_then(|mut stops| stops.pop())
    else {
        return;
    };
    let total = last.total_s.map_or(String::new(), |t| format!(", {t:.2}s"));
    let phase = last
        .phase
        .as_deref()
        .map_or(String::new(), |p| format!(" during {}", clean(p)));
    let _ = writeln!(
        out,
        "the last stop in the history: {} pid {}, {}{phase}{total} (shutdown-forensics history {})",
        crate::time::utc(last.started_unix_s.or(last.run_started_unix_s)),
        last.pid.map_or("?".to_owned(), |p| p.to_string()),
        clean(&last.verdict),
        dir.display()
    );
}

/// A text from the record (or its context), control characters escaped.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn text<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v?.get(key)?.as_str()
}

fn render(out: &mut String, run: &RecordedRun) {
    let _ = writeln!(out, "flight record: {}", run.path.display());
    let report = run.report.as_ref();
    let ctx = run.context.as_ref();
    if let Some(trigger) = report.and_then(|r| r.trigger.as_ref()) {
        let _ = write!(out, "stopped by:    {}", trigger.describe());
        let marker = ctx.and_then(|c| c.get("planned_stop_marker"));
        let for_self = marker.and_then(|m| m.get("for_self")) == Some(&Value::Bool(true));
        if let (true, Some(reason)) = (for_self, text(marker, "reason")) {
            let _ = write!(out, " (reason: {})", clean(reason));
        }
        let _ = writeln!(out);
    }
    if let Some(kind) = text(ctx.and_then(|c| c.get("supervisor")), "kind") {
        let unit = text(ctx, "systemd_unit").map_or(String::new(), |u| format!(" ({})", clean(u)));
        let _ = writeln!(out, "supervisor:    {}{unit}", clean(kind));
    }
    let verdict = &run.verdict;
    let _ = writeln!(out, "verdict:       {}", verdict.kind());
    match (verdict.message(), verdict) {
        (Some(m), _) => {
            let _ = writeln!(out, "               {m}");
        }
        (None, PreviousShutdown::Clean { total, .. }) => {
            let _ = writeln!(
                out,
                "               the stop finished (total teardown {:.2}s)",
                total.as_secs_f64()
            );
        }
        (None, PreviousShutdown::Exited { .. }) => {
            let _ = writeln!(out, "               the run ended without a stop");
        }
        (None, _) => {}
    }
    let Some(report) = report else {
        let _ = writeln!(out, "no stop began in this run: no waterfall");
        return;
    };
    let state = if report.complete {
        "complete"
    } else if matches!(verdict, PreviousShutdown::StillRunning { .. }) {
        "under way"
    } else {
        "never finished; durations run to the last record line"
    };
    let _ = writeln!(out, "\nstop: {:.2}s, {state}", report.elapsed_s);
    // The waterfall's rows (its own header says "in progress" for a stop that never finished).
    for line in report.to_string().lines().skip(1) {
        let _ = writeln!(out, "{line}");
    }
    if report.stuck.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nstuck:");
    for snap in &report.stuck {
        let phase = snap.phase.as_deref().unwrap_or("shutdown");
        let first = (snap.first_finding.as_ref().map(|f| f.summary()))
            .or_else(|| snap.findings.first().cloned())
            .unwrap_or_else(|| "no finding".to_owned());
        let reason = serde_json::to_value(snap.reason).unwrap_or(Value::Null);
        let _ = writeln!(
            out,
            "  +{:.2}s {} ({}): {}",
            snap.at_s,
            clean(phase),
            reason.as_str().unwrap_or("?"),
            clean(&first)
        );
    }
}

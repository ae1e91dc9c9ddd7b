//! The termination message: a summary of the stop, at most 4 KiB, in the file Kubernetes shows
//! under the container's `Last State` (`terminationMessagePath`, `/dev/termination-log` by
//! default), so that `kubectl describe pod` says where a SIGKILLed stop was, not only `137`.
//!
//! Written twice, each time with what is known and true then: before a known kill (with the
//! kill deadline's stuck snapshot: the phase, how long it has run, where it is stuck, that a
//! kill is expected at the deadline) and at `finish` (complete, the total, the slowest phase).
//! The second replaces the first; a stop that is killed keeps the first. Text only: phase
//! labels and the sender's name are escaped (`sys/logfmt.rs`), findings are escaped already.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::stuck::snapshot::{StuckReason, StuckSnapshot};
use crate::sys::clock::{Offset, Secs};
use crate::sys::logfmt::Logfmt;
use crate::sys::target::PHASE_TARGET;
use crate::timeline::report::{PhaseOutcome, PhaseRecord, ShutdownReport};
use crate::timeline::state::Timeline;

/// Kubernetes reads at most this much of the file (and truncates the rest).
pub(crate) const MAX_BYTES: usize = 4096;

fn secs(s: f64) -> Secs {
    Secs(Duration::try_from_secs_f64(s).unwrap_or_default())
}

fn offset(s: f64) -> Offset {
    Offset(Duration::try_from_secs_f64(s).unwrap_or_default())
}

/// `drain 3.41s`, `drain 33.41s (over budget 30.00s)`, `drain running since +0.02s (budget
/// 30.00s)` (not how long: the message is of one moment, and that is its first line's).
fn phase_text(p: &PhaseRecord) -> String {
    let name = Logfmt(&p.name);
    let mut out = match p.outcome {
        PhaseOutcome::Open => format!("{name} running since {}", offset(p.start_s)),
        _ => format!("{name} {}", secs(p.duration_s)),
    };
    match (p.outcome, p.budget_s) {
        (PhaseOutcome::OverBudget, Some(b)) => {
            let _ = write!(out, " (over budget {})", secs(b));
        }
        (PhaseOutcome::Open, Some(b)) => {
            let _ = write!(out, " (budget {})", secs(b));
        }
        _ => {}
    }
    out
}

/// The common tail: who stopped us, the phases (outermost first, in their order).
fn tail(out: &mut String, report: &ShutdownReport) {
    if let Some(t) = &report.trigger {
        let _ = writeln!(out, "stop: {}", t.describe());
    }
    if !report.phases.is_empty() {
        let phases: Vec<String> = report.phases.iter().map(phase_text).collect();
        let _ = writeln!(out, "phases: {}", phases.join(", "));
    }
}

/// Before a kill: `report` is the shutdown so far, `snapshot` the one just taken for the kill
/// (its reason says which), `kill_deadline` when the kill is expected (from the origin).
pub(crate) fn before_kill(
    report: &ShutdownReport,
    snapshot: &StuckSnapshot,
    kill_deadline: Option<Duration>,
) -> String {
    let mut out = format!("shutdown not finished at {}", offset(snapshot.at_s));
    // The snapshot's phase, with the time it had run when the snapshot was taken.
    let phase = snapshot.phase.as_deref();
    let record = phase.and_then(|name| {
        (report.phases.iter().rev()).find(|p| p.name == name && p.outcome == PhaseOutcome::Open)
    });
    match (phase, record) {
        (Some(name), Some(p)) => {
            let ran = snapshot.at_s - p.start_s;
            let _ = write!(
                out,
                ": in phase {} for {}",
                Logfmt(name),
                secs(ran.max(0.0))
            );
            if let Some(b) = p.budget_s {
                let _ = write!(out, " (budget {})", secs(b));
            }
        }
        (Some(name), None) => {
            let _ = write!(out, ": in phase {}", Logfmt(name));
        }
        (None, _) => out.push_str(": in no phase"),
    }
    match (snapshot.reason, kill_deadline) {
        (StuckReason::SupervisorAbort, _) => {
            out.push_str("; the service manager sent SIGABRT: the process dies of it now");
        }
        (_, Some(d)) => {
            let _ = write!(
                out,
                "; a SIGKILL is expected at {} (kill deadline)",
                Offset(d)
            );
        }
        (_, None) => {}
    }
    if let Some(first) = &snapshot.first_finding {
        let _ = write!(out, "; stuck in {}", first.summary());
    }
    out.push('\n');
    let during = phase.map_or_else(
        || "the shutdown".to_owned(),
        |p| format!("phase {}", Logfmt(p)),
    );
    let _ = writeln!(
        out,
        "If it ended with exit code 137 (SIGKILL) or 134 (SIGABRT), it was killed during {during}; \
         a shutdown that completes replaces this message."
    );
    tail(&mut out, report);
    if !snapshot.findings.is_empty() {
        let _ = writeln!(out, "findings: {}", snapshot.findings.join("; "));
    }
    cap(out)
}

/// At `finish`: complete, the total, the slowest phase, and a stuck snapshot taken on the way.
pub(crate) fn complete(report: &ShutdownReport) -> String {
    let mut out = format!("shutdown complete in {}", secs(report.elapsed_s));
    let slowest = (report.phases.iter())
        .filter(|p| p.parent.is_none())
        .max_by(|a, b| a.duration_s.total_cmp(&b.duration_s));
    match slowest {
        Some(p) => {
            let _ = write!(out, "; slowest phase {}", phase_text(p));
        }
        None => out.push_str("; no phase was timed"),
    }
    if let (Some(b), Some(m)) = (report.budget_s, report.margin_s) {
        if m < 0.0 {
            let _ = write!(out, "; over its budget {} by {}", secs(b), secs(-m));
        } else {
            let _ = write!(out, "; budget {}, margin {}", secs(b), secs(m));
        }
    }
    out.push('\n');
    tail(&mut out, report);
    if let Some(s) = report.stuck.first() {
        let what = s.first_finding.as_ref().map_or_else(
            || s.findings.first().cloned().unwrap_or_default(),
            |f| f.summary(),
        );
        let phase = s
            .phase
            .as_deref()
            .map_or_else(String::new, |p| format!(" in {}", Logfmt(p)));
        let _ = writeln!(
            out,
            "stuck at {}{phase} ({}): {what}",
            offset(s.at_s),
            s.reason.as_str()
        );
    }
    cap(out)
}

/// `text` cut to [`MAX_BYTES`] at a character boundary, ending in `...` when cut.
fn cap(mut text: String) -> String {
    if text.len() <= MAX_BYTES {
        return text;
    }
    let mut end = MAX_BYTES - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

impl Timeline {
    /// Writes the message before a kill, when the signal helper was asked for one: after the
    /// kill deadline's (or the manager's `SIGABRT`'s) snapshot was delivered. A failure is
    /// logged (WARN), never hidden.
    pub(crate) fn termination_message_before_kill(self: &Arc<Self>, snapshot: &StuckSnapshot) {
        let Some(path) = self.startup.termination_message.get() else {
            return;
        };
        let (report, deadline) = {
            let now = self.clock.now();
            let st = self.lock();
            let report = ShutdownReport::from_state(&st, now, self.config.total_budget);
            (report, st.kill_deadline)
        };
        let text = before_kill(&report, snapshot, deadline);
        let written_final = self.termination_lock();
        if !*written_final {
            self.write_termination_message(path, &text);
        }
    }

    fn termination_lock(&self) -> std::sync::MutexGuard<'_, bool> {
        (self.startup.termination_final.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the message at `finish`.
    pub(crate) fn termination_message_at_finish(self: &Arc<Self>) {
        let Some(path) = self.startup.termination_message.get() else {
            return;
        };
        let report = {
            let now = self.clock.now();
            let st = self.lock();
            ShutdownReport::from_state(&st, now, self.config.total_budget)
        };
        let mut written_final = self.termination_lock();
        *written_final = true;
        self.write_termination_message(path, &complete(&report));
    }

    fn write_termination_message(self: &Arc<Self>, path: &std::path::Path, text: &str) {
        if let Err(e) = crate::sys::private_file::replace_contents(path, text.as_bytes()) {
            let path = path.display().to_string();
            let error = e.to_string();
            let turn = self.log_order.take();
            self.emit_later(turn, move |_| {
                tracing::warn!(
                    target: PHASE_TARGET,
                    path = %Logfmt(&path),
                    error = %Logfmt(&error),
                    "termination message not written"
                );
            });
        }
    }
}

/// The message at `finish` without a layer: only the total and the signal are known.
pub(crate) fn complete_without_phases(total: Duration, signal: Option<&str>) -> String {
    let mut out = format!(
        "shutdown complete in {}; no phase was timed (no ShutdownLayer handle)\n",
        Secs(total)
    );
    if let Some(s) = signal {
        let _ = writeln!(out, "stop: {}", Logfmt(s));
    }
    cap(out)
}

#[cfg(test)]
mod tests;

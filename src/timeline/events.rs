//! The log lines (reference: `docs/operators.md`, "Log lines"). Every event has target [`PHASE_TARGET`], no parent
//! span (lines stay the same whatever span is current), the text, and structured fields.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing_core::field::{display, DisplayValue};

use crate::stuck::abandoned::Abandoned;
use crate::stuck::snapshot::{StuckFinding, StuckReason, StuckSnapshot};
use crate::sys::clock::{secs, Offset, Secs};
use crate::sys::dyn_event;
use crate::sys::logfmt::{Logfmt, TextField};
use crate::sys::target::PHASE_TARGET;
use crate::timeline::log_order::{LogOrder, Turn};
use crate::timeline::log_thread::{Job, NotQueued};
use crate::timeline::phase_fields::PhaseFields;
use crate::timeline::state::Timeline;

impl Timeline {
    /// Emits `event` in `turn` on the log thread (`log_thread.rs`): the caller, the watchdog,
    /// never waits for the app's log sink. Where no thread can be started it is emitted here.
    pub(crate) fn emit_later(
        self: &Arc<Self>,
        turn: Turn<'_>,
        event: impl FnOnce(&Timeline) + Send + 'static,
    ) {
        let n = LogOrder::into_number(turn);
        let weak = Arc::downgrade(self);
        let job: Job = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                (shared.log_order).emit_numbered(n, || shared.emit(|| event(&shared)));
            }
        });
        match self.log_thread.send(job) {
            Ok(()) => {}
            // The sink is stuck behind a full queue: this line would only wait there too.
            Err(NotQueued::Full) => self.log_order.skip_numbered(n),
            Err(NotQueued::NoThread(job)) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        }
    }
}

/// `+0.02s drain started`
pub(crate) fn started(shared: &Timeline, label: &str, at: Duration) {
    shared.emit(|| {
        tracing::info!(
            target: PHASE_TARGET,
            parent: None,
            phase = %Logfmt(label),
            offset_s = secs(at),
            "{} {} started",
            Offset(at),
            Logfmt(label)
        );
    });
}

/// `+3.43s drain done (3.41s) active_at_start=5 active_now=0 timed_out=false`
///
/// The span's recorded fields are fields of the event (before `phase`, `offset_s`,
/// `duration_s`), so a text formatter prints the line above while a JSON one gets
/// `"active_now":0` as a field. Numbers and booleans keep their type; strings arrive as
/// themselves, except the rare ones a text formatter would show differently from logfmt
/// (`sys/logfmt.rs`, `TextField`), which arrive logfmt-rendered. Where that is not possible (a
/// field named like one of ours, too many fields or distinct field sets) they stay in the
/// message, as text.
pub(crate) fn done(
    shared: &Timeline,
    label: &str,
    at: Duration,
    took: Duration,
    recorded: &PhaseFields,
) {
    shared.emit(|| {
        if recorded.for_line().next().is_some() && done_structured(label, at, took, recorded) {
            return;
        }
        let fields = recorded.to_logfmt();
        let sep = if fields.is_empty() { "" } else { " " };
        tracing::info!(
            target: PHASE_TARGET,
            parent: None,
            phase = %Logfmt(label),
            offset_s = secs(at),
            duration_s = secs(took),
            "{} {} done ({}){sep}{fields}",
            Offset(at),
            Logfmt(label),
            Secs(took)
        );
    });
}

/// A recorded value as tracing carries it.
enum Carried<'a> {
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Text(TextField<'a>),
    Other(DisplayValue<String>),
}

impl<'a> Carried<'a> {
    fn new(v: &'a Value) -> Self {
        match v {
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Self::U64(u),
                (None, Some(i), _) => Self::I64(i),
                (None, None, Some(f)) => Self::F64(f),
                _ => Self::Other(display(n.to_string())),
            },
            Value::String(s) => Self::Text(TextField::new(s)),
            Value::Null => Self::Other(display("null".to_owned())),
            other => Self::Other(display(other.to_string())),
        }
    }

    fn as_value(&self) -> &dyn tracing_core::field::Value {
        match self {
            Self::Bool(b) => b,
            Self::U64(u) => u,
            Self::I64(i) => i,
            Self::F64(f) => f,
            Self::Text(t) => t.value(),
            Self::Other(o) => o,
        }
    }
}

/// Names of the `done` event's own fields: a recorded field with one of them stays text.
const DONE_FIELDS: [&str; 4] = ["message", "phase", "offset_s", "duration_s"];

fn done_structured(label: &str, at: Duration, took: Duration, recorded: &PhaseFields) -> bool {
    if recorded.for_line().any(|(k, _)| DONE_FIELDS.contains(&k)) {
        return false;
    }
    let carried: Vec<(&str, Carried<'_>)> = recorded
        .for_line()
        .map(|(k, v)| (k, Carried::new(v)))
        .collect();
    let phase = display(Logfmt(label));
    let (offset, duration) = (secs(at), secs(took));
    let mut fields: Vec<(&str, &dyn tracing_core::field::Value)> =
        carried.iter().map(|(k, c)| (*k, c.as_value())).collect();
    fields.push(("phase", &phase));
    fields.push(("offset_s", &offset));
    fields.push(("duration_s", &duration));
    let message = format!("{} {} done ({})", Offset(at), Logfmt(label), Secs(took));
    dyn_event::emit(PHASE_TARGET, tracing::Level::INFO, &message, &fields)
}

/// `+33.00s drain over budget (30.00s)`; `label` is `shutdown` for the whole-shutdown budget.
pub(crate) fn over_budget(shared: &Timeline, label: &str, at: Duration, budget: Duration) {
    shared.emit(|| {
        tracing::warn!(
            target: PHASE_TARGET,
            parent: None,
            phase = %Logfmt(label),
            offset_s = secs(at),
            budget_s = secs(budget),
            "{} {} over budget ({})",
            Offset(at),
            Logfmt(label),
            Secs(budget)
        );
    });
}

/// `+3.62s shutdown complete (total teardown 3.62s)`, with what the shutdown left open that
/// no phase reported as fields (`abandoned_spans=1 oldest_abandoned="request{...} age 29.8s"`).
pub(crate) fn complete(shared: &Timeline, total: Duration, left_open: Option<&Abandoned>) {
    let Some(a) = left_open else {
        return shared.emit(|| complete_line(total));
    };
    // The text line shows it logfmt-quoted; a structured subscriber gets the string itself.
    let oldest = a.oldest.as_deref().map(TextField::new);
    shared.emit(|| {
        tracing::info!(
            target: PHASE_TARGET,
            parent: None,
            abandoned_spans = a.count,
            oldest_abandoned = oldest.as_ref().map(TextField::value),
            abandoned_scan_cut = a.cut.then_some(true),
            offset_s = secs(total),
            total_s = secs(total),
            "{} shutdown complete (total teardown {})",
            Offset(total),
            Secs(total)
        );
    });
}

/// The completion line, to the current subscriber (also used without a layer).
pub(crate) fn complete_line(total: Duration) {
    tracing::info!(
        target: PHASE_TARGET,
        parent: None,
        offset_s = secs(total),
        total_s = secs(total),
        "{} shutdown complete (total teardown {})",
        Offset(total),
        Secs(total)
    );
}

/// `+2.50s shutdown left without finish() during phase drain: ...`, once, when
/// [`Forensics`](crate::Forensics) is dropped during a shutdown that never finished (an error
/// returned from the shutdown path, an early return). To stderr when no subscriber takes a
/// WARN: the fix must not go to nowhere.
pub(crate) fn finish_not_called(at: Option<Duration>, phase: Option<&str>) {
    let at = at.map_or_else(String::new, |t| format!("{} ", Offset(t)));
    let during = phase.map_or_else(String::new, |p| format!(" during phase {}", Logfmt(p)));
    let line = format!(
        "{at}shutdown left without finish(){during}: the next start will report that this run \
         exited without finishing. Call forensics.finish() once the shutdown is done, also when \
         a step of it fails"
    );
    if tracing::enabled!(target: PHASE_TARGET, tracing::Level::WARN) {
        tracing::warn!(target: PHASE_TARGET, parent: None, phase = phase.map(|p| display(Logfmt(p))), "{line}");
    } else {
        crate::sys::stderr::try_line(&format!("shutdown-forensics: {line}"));
    }
}

/// `phase drain seen outside a shutdown: not timed ...`, once per layer: a phase span opened
/// before the signal helper started the shutdown.
pub(crate) fn outside_shutdown(shared: &Timeline, label: &str) {
    shared.emit(|| {
        tracing::warn!(
            target: PHASE_TARGET,
            parent: None,
            phase = %Logfmt(label),
            "phase {} seen outside a shutdown: not timed (the shutdown clock starts at the \
             signal, ShutdownHandle::begin or a root `shutdown` span; said once)",
            Logfmt(label)
        );
    });
}

/// `phase budget drain (30.00s) never applied: no phase named drain ran (closest: Drain; ...)`,
/// at finish, once per budget (`timeline/budget_check.rs`).
pub(crate) fn budget_never_applied(shared: &Timeline, line: &str) {
    shared.emit(|| tracing::warn!(target: PHASE_TARGET, parent: None, "{line}"));
}

/// `phase drain ran before Forensics::install ...`, once: phases (a helper reused at startup)
/// that started the shutdown clock before the signal helper was installed, which stopped it.
pub(crate) fn ran_before_install(shared: &Timeline, labels: &[String]) {
    let mut names = labels
        .iter()
        .take(3)
        .map(|l| Logfmt(l).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > 3 {
        names.push_str(&format!(" and {} more", labels.len() - 3));
    }
    let what = if labels.len() == 1 { "phase" } else { "phases" };
    shared.emit(|| {
        tracing::warn!(
            target: PHASE_TARGET,
            parent: None,
            "{what} {names} ran before Forensics::install and started the shutdown clock; \
             install stopped it: the lines above for them are not a shutdown, and from now on \
             only the signal (or ShutdownHandle::begin) starts the clock (install first to \
             avoid such lines)"
        );
    });
}

/// `+30.00s drain stuck (budget 30.00s): request{method=POST path=/upload} idle 29.8s; ...`
/// with the findings (each already escaped) in the text; counts and the first finding's parts
/// (`stuck_span`, `stuck_path`, `stuck_peer`, `stuck_thread`, `stuck_tid`, `stuck_syscall`,
/// `stuck_idle_s`, `stuck_no_data_s`, each only when the finding names it) as fields.
/// `logged_late` is when it is logged, given when other lines came out since it was taken
/// (`+30.00s drain stuck (budget 30.00s), logged +30.12s: ...`): a reader sees why it follows
/// later lines.
pub(crate) fn stuck(shared: &Timeline, snapshot: &StuckSnapshot, logged_late: Option<Duration>) {
    let at = Duration::try_from_secs_f64(snapshot.at_s).unwrap_or_default();
    let label = snapshot.phase.as_deref().unwrap_or("shutdown");
    let why = match (snapshot.reason, snapshot.budget_s) {
        (StuckReason::Budget, Some(b)) => format!("budget {}", Secs(secs_of(b))),
        (StuckReason::Budget, None) => "over budget".to_owned(),
        (StuckReason::KillDeadline, _) => "kill deadline near".to_owned(),
        (StuckReason::OnDemand, _) => "on demand".to_owned(),
        (StuckReason::SupervisorAbort, _) => "SIGABRT from the service manager".to_owned(),
    };
    // Every finding (at most eight): the counts below are what they name.
    let findings = snapshot.findings.join("; ");
    let (blocked, idle_peers) = (snapshot.blocked_threads, snapshot.idle_peers);
    let late = logged_late.map_or_else(String::new, |l| format!(", logged {}", Offset(l)));
    // The first finding's parts as fields of their own (a JSON pipeline queries them).
    let first = snapshot.first_finding.as_ref();
    let part =
        |get: fn(&StuckFinding) -> Option<&String>| first.and_then(get).map(|s| TextField::new(s));
    let span = part(|f| f.span.as_ref());
    let peer = part(|f| f.peer.as_ref());
    let thread = part(|f| f.thread.as_ref());
    let syscall = part(|f| f.syscall.as_ref());
    let path = first.map(|f| f.path.join("/")).filter(|p| !p.is_empty());
    let path = path.as_deref().map(TextField::new);
    shared.emit(|| {
        tracing::warn!(
            target: PHASE_TARGET,
            parent: None,
            phase = %Logfmt(label),
            offset_s = snapshot.at_s,
            reason = snapshot.reason.as_str(),
            open_spans = snapshot.spans.len(),
            blocked_threads = blocked,
            idle_peers = idle_peers,
            stuck_span = span.as_ref().map(TextField::value),
            stuck_path = path.as_ref().map(TextField::value),
            stuck_peer = peer.as_ref().map(TextField::value),
            stuck_thread = thread.as_ref().map(TextField::value),
            stuck_tid = first.and_then(|f| f.tid),
            stuck_syscall = syscall.as_ref().map(TextField::value),
            stuck_idle_s = first.and_then(|f| f.idle_s),
            stuck_no_data_s = first.and_then(|f| f.no_data_s),
            "{} {} stuck ({why}){late}: {findings}",
            Offset(at),
            Logfmt(label),
        );
    });
}

fn secs_of(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// `shutdown history not written: <path>: <why>` (WARN, once at `finish`): the stop is still
/// in the flight record, and the next start's verdict.
pub(crate) fn history_not_written(path: &std::path::Path, error: &std::io::Error) {
    let path = path.display().to_string();
    tracing::warn!(
        target: crate::sys::target::PHASE_TARGET,
        path = %crate::sys::logfmt::Logfmt(&path),
        error = %error,
        "shutdown history not written: {}: {error}",
        crate::sys::logfmt::Logfmt(&path)
    );
}

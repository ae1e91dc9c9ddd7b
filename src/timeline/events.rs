//! The log lines (reference: `docs/operators.md`, "Log lines"). Every event has target [`PHASE_TARGET`], no parent
//! span (lines stay the same whatever span is current), the text, and structured fields.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing_core::field::{display, DisplayValue};

use crate::stuck::snapshot::{StuckReason, StuckSnapshot};
use crate::sys::clock::{secs, Offset, Secs};
use crate::sys::dyn_event;
use crate::sys::logfmt::Logfmt;
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
/// `"active_now":0` as a field. Numbers and booleans keep their type; strings arrive
/// logfmt-rendered (quoted and escaped only when they need it). Where that is not possible (a
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
    Text(DisplayValue<Logfmt<'a>>),
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
            Value::String(s) => Self::Text(display(Logfmt(s))),
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
            Self::Text(t) => t,
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

/// `+3.62s shutdown complete (total teardown 3.62s)`
pub(crate) fn complete(shared: &Timeline, total: Duration) {
    shared.emit(|| complete_line(total));
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

/// `+30.00s drain stuck (budget 30.00s): request{method=POST path=/upload} idle 29.8s; ...`
/// with the first findings (each already escaped) and counts as fields.
pub(crate) fn stuck(shared: &Timeline, snapshot: &StuckSnapshot) {
    let at = Duration::try_from_secs_f64(snapshot.at_s).unwrap_or_default();
    let label = snapshot.phase.as_deref().unwrap_or("shutdown");
    let why = match (snapshot.reason, snapshot.budget_s) {
        (StuckReason::Budget, Some(b)) => format!("budget {}", Secs(secs_of(b))),
        (StuckReason::Budget, None) => "over budget".to_owned(),
        (StuckReason::KillDeadline, _) => "kill deadline near".to_owned(),
        (StuckReason::OnDemand, _) => "on demand".to_owned(),
    };
    let findings = snapshot
        .findings
        .iter()
        .take(3)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    let blocked = snapshot
        .threads
        .iter()
        // Waiting on a socket, pipe or file; an event loop waiting on its epoll is idle.
        .filter(|t| {
            t.target
                .as_deref()
                .is_some_and(|x| !x.ends_with("-> epoll") && !x.ends_with("-> eventfd"))
                && t.cpu_pct.is_none_or(|c| c < 1.0)
        })
        .count();
    let idle_peers = snapshot
        .sockets
        .iter()
        .filter(|s| {
            s.state.as_deref() == Some("ESTABLISHED") && s.last_recv_s.is_some_and(|d| d >= 1.0)
        })
        .count();
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
            "{} {} stuck ({why}): {findings}",
            Offset(at),
            Logfmt(label),
        );
    });
}

fn secs_of(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

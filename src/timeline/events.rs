//! The log lines (DESIGN.md, "Log lines"). Every event has target [`PHASE_TARGET`], no parent
//! span (lines stay the same whatever span is current), the text, and structured fields.

use std::time::Duration;

use crate::sys::clock::{secs, Offset, Secs};
use crate::sys::logfmt::Logfmt;
use crate::sys::target::PHASE_TARGET;
use crate::timeline::state::Shared;
use crate::timeline::stuck::snapshot::{StuckReason, StuckSnapshot};

/// `+0.02s drain started`
pub(crate) fn started(shared: &Shared, label: &str, at: Duration) {
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
pub(crate) fn done(shared: &Shared, label: &str, at: Duration, took: Duration, fields: &str) {
    let sep = if fields.is_empty() { "" } else { " " };
    shared.emit(|| {
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

/// `+33.00s drain over budget (30.00s)`; `label` is `shutdown` for the whole-shutdown budget.
pub(crate) fn over_budget(shared: &Shared, label: &str, at: Duration, budget: Duration) {
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
pub(crate) fn complete(shared: &Shared, total: Duration) {
    shared.emit(|| {
        tracing::info!(
            target: PHASE_TARGET,
            parent: None,
            offset_s = secs(total),
            total_s = secs(total),
            "{} shutdown complete (total teardown {})",
            Offset(total),
            Secs(total)
        );
    });
}

/// `+30.00s drain stuck (budget 30.00s): request{method=POST path=/upload} idle 29.8s; ...`
/// with the first findings (each already escaped) and counts as fields.
pub(crate) fn stuck(shared: &Shared, snapshot: &StuckSnapshot) {
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

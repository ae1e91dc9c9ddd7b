//! The log lines (DESIGN.md, "Log lines"). Every event has target [`PHASE_TARGET`], no parent
//! span (lines stay the same whatever span is current), the text, and structured fields.

use std::time::Duration;

use crate::sys::clock::{secs, Offset, Secs};
use crate::sys::logfmt::Logfmt;
use crate::sys::target::PHASE_TARGET;
use crate::timeline::state::Shared;

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
pub(crate) fn outside_shutdown(shared: &Shared, label: &str) {
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

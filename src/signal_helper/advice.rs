//! What the history of the last stops advises at a start, logged once each (WARN, target
//! `shutdown`; on stderr when the subscriber filters them out): a supervisor timeout below
//! what recent stops took, and a phase of the last stop that took far longer than usual. The
//! advice itself is pure (`verdict/advice.rs`); the history was read when the flight record
//! was opened.

use std::time::Duration;

use crate::record::flight_record::FlightRecord;
use crate::sys::target::PHASE_TARGET;
use crate::verdict::advice::{regression, timeout_advice, TimeoutSource};

/// Whether a WARN of target `shutdown` reaches the subscriber; else the line goes to stderr.
fn warn_enabled() -> bool {
    tracing::enabled!(target: PHASE_TARGET, tracing::Level::WARN)
}

/// At install, once a subscriber is there: a history that could not be read, and a phase of
/// the last stop that regressed (said only by the start that follows that stop).
pub(crate) fn at_start(record: &FlightRecord) {
    let Some(history) = record.history_at_start() else {
        return;
    };
    let stops = match history {
        Ok(stops) => stops,
        Err(e) => {
            let line = format!("shutdown history not read: {e}; no advice from past stops");
            if warn_enabled() {
                tracing::warn!(target: PHASE_TARGET, error = %e, "{line}");
            } else {
                eprintln!("shutdown-forensics: {line}");
            }
            return;
        }
    };
    // Once per stop: only when the last stop in the history is the previous run's.
    let last_is_previous = match (record.previous_stop(), stops.last()) {
        (Some(previous), Some(last)) => previous.same_stop(last),
        _ => false,
    };
    if !last_is_previous {
        return;
    }
    let dir = match record.path().parent() {
        Some(d) if !d.as_os_str().is_empty() => d.display().to_string(),
        _ => ".".to_owned(),
    };
    if let Some(r) = regression(stops, &dir) {
        if warn_enabled() {
            tracing::warn!(
                target: PHASE_TARGET,
                phase = %crate::sys::logfmt::Logfmt(&r.phase),
                duration_s = r.duration_s,
                median_s = r.median_s,
                stops = r.stops,
                "{}",
                r.message
            );
        } else {
            eprintln!("shutdown-forensics: {}", r.message);
        }
    }
}

/// When the supervisor's stop timeout is known (`with_kill_deadline`, or systemd's
/// `TimeoutStopUSec` once the startup check read it): one WARN when it is below what recent
/// stops call for.
pub(crate) fn supervisor_timeout(record: &FlightRecord, timeout: Duration, source: &TimeoutSource) {
    let Some(Ok(stops)) = record.history_at_start() else {
        return;
    };
    let Some(a) = timeout_advice(stops, timeout, source) else {
        return;
    };
    if warn_enabled() {
        tracing::warn!(
            target: PHASE_TARGET,
            slowest_stop_s = a.slowest_s,
            timeout_s = a.timeout_s,
            needed_s = a.needed_s,
            stops = a.stops,
            "{}",
            a.message
        );
    } else {
        eprintln!("shutdown-forensics: {}", a.message);
    }
}

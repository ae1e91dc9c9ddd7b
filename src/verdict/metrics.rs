//! Each stop as metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): whatever recorder the app installed (Prometheus, OpenTelemetry, StatsD) gets
//! them. Install the recorder before
//! [`ForensicsBuilder::install`](crate::ForensicsBuilder::install): a stop the previous run
//! could not count (SIGKILLed) is recorded there.
//!
//! - `shutdown_duration_seconds` (histogram, label `verdict`): the stop's total time; for a
//!   stop that did not finish, the time to its last record line (a lower bound).
//! - `shutdown_phase_duration_seconds` (histogram, labels `phase`, `verdict`): each phase's
//!   time; a phase still running when the process died counts with the time it had run.
//! - `shutdown_verdicts_total` (counter, labels `verdict`, `phase`): one per stop; `phase` is
//!   the phase it ended in (`drain` for a stop killed during drain), `none` for a clean stop or
//!   one that ended outside any phase.
//!
//! Recorded at `finish` by a run that finished, and by the next start for one that did not
//! (from the summary it wrote to the history), so that a SIGKILLed stop is counted too: each
//! stop once. A pull exporter (Prometheus) sees what `finish` recorded only if it scrapes the
//! process before it exits; the gateway example waits for one more scrape (`--metrics-addr`).
//! Each process counts about one stop, so its series start at 1: fleet queries read them with
//! `last_over_time` rather than `increase` (README, "Metrics").

use super::summary::StopSummary;

/// `shutdown_duration_seconds` (histogram, label `verdict`).
pub const DURATION: &str = "shutdown_duration_seconds";
/// `shutdown_phase_duration_seconds` (histogram, labels `phase`, `verdict`).
pub const PHASE_DURATION: &str = "shutdown_phase_duration_seconds";
/// `shutdown_verdicts_total` (counter, labels `verdict`, `phase`).
pub const VERDICTS: &str = "shutdown_verdicts_total";

/// Records one stop: its verdict, its total time and each phase's.
pub(crate) fn record(stop: &StopSummary) {
    describe();
    let verdict = stop.verdict.clone();
    let phase = stop.phase.clone().unwrap_or_else(|| "none".to_owned());
    metrics::counter!(VERDICTS, "verdict" => verdict.clone(), "phase" => phase).increment(1);
    if let Some(total) = stop.total_s {
        metrics::histogram!(DURATION, "verdict" => verdict.clone()).record(total);
    }
    for p in &stop.phases {
        metrics::histogram!(PHASE_DURATION, "phase" => p.name.clone(), "verdict" => verdict.clone())
            .record(p.duration_s);
    }
}

/// Help texts and units, once per recorder (exporters keep the first).
fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time a shutdown took, from the signal to finish (to the last record for one that did not finish)"
    );
    metrics::describe_histogram!(
        PHASE_DURATION,
        Unit::Seconds,
        "Time each shutdown phase took (to the last record for one still running at the end)"
    );
    metrics::describe_counter!(
        VERDICTS,
        "Shutdowns by how they ended (verdict) and the phase they ended in"
    );
}

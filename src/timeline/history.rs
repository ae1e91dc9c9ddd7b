//! At `finish`: this stop as one line of the history beside the flight record
//! (`record/history.rs`), and as metrics (feature `metrics`). A stop that never gets here
//! (SIGKILLed, crashed) is written and counted by the next start instead, from its record.

use std::sync::Arc;

use crate::record::history::{append, Appended, FINISH_PATIENCE};
use crate::timeline::report::{PhaseOutcome, ShutdownReport};
use crate::timeline::state::Timeline;
use crate::verdict::summary::{PhaseTime, RecordedBy, StopSummary};

impl Timeline {
    /// Writes this stop, just finished in `report`, to the history (when there is a flight
    /// record) and records its metrics. A failed write is said once (WARN), never fatal.
    pub(crate) fn record_stop(self: &Arc<Self>, report: &ShutdownReport) {
        let record = self.record.as_ref().filter(|r| r.error().is_none());
        let mut stop = summary(report);
        if let Some(record) = record {
            stop.run_started_unix_s = record.run_wall_unix_s();
            if let Some(ctx) = record.stop_context() {
                stop.set_context(&ctx);
            }
        }
        let stop = stop.bounded();
        if let Some(record) = record {
            match append(record.path(), &stop, FINISH_PATIENCE) {
                Ok(Appended::Written | Appended::AlreadyThere) => {}
                Err(e) => {
                    let path = crate::verdict::history::beside(record.path());
                    self.emit(|| crate::timeline::events::history_not_written(&path, &e));
                }
            }
        }
        #[cfg(feature = "metrics")]
        crate::verdict::metrics::record(&stop);
    }
}

/// A finished stop's summary from its report (who stopped it comes from the trigger here,
/// and from the recorded context in [`Timeline::record_stop`]).
fn summary(report: &ShutdownReport) -> StopSummary {
    let mut stop = StopSummary::new("clean", RecordedBy::Finish);
    stop.pid = Some(report.pid);
    stop.started_unix_s = report.origin_unix_s;
    if let Some(trigger) = report
        .trigger
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
    {
        stop.set_trigger(&trigger);
    }
    stop.complete = report.complete;
    stop.total_s = Some(report.elapsed_s);
    stop.phases = report
        .phases
        .iter()
        .map(|p| PhaseTime {
            name: p.name.clone(),
            duration_s: p.duration_s,
            open: p.outcome == PhaseOutcome::Open,
        })
        .collect();
    stop.stuck = report.stuck.last().and_then(|snap| {
        (snap.first_finding.as_ref().map(|f| f.summary()))
            .or_else(|| snap.findings.first().cloned())
    });
    stop
}

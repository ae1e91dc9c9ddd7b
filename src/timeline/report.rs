//! The shutdown report: JSON, Chrome trace events, and (in `waterfall.rs`) a terminal picture.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::context::trigger::TriggerInfo;
use crate::stuck::snapshot::StuckSnapshot;
use crate::sys::clock::{secs, unix_secs};
use crate::timeline::phase_fields::PhaseFields;
use crate::timeline::state::State;

/// How a phase ended (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PhaseOutcome {
    /// Closed within its budget (or without one).
    Done,
    /// Closed after running longer than its budget.
    OverBudget,
    /// Still running when the report was taken.
    Open,
}

/// One phase in a [`ShutdownReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PhaseRecord {
    /// The label: the span name, or `name<adapter>`.
    pub name: String,
    /// The span name.
    pub span_name: String,
    /// Index (in [`ShutdownReport::phases`]) of the enclosing phase, if nested.
    pub parent: Option<usize>,
    /// Open time, seconds from the shutdown origin.
    pub start_s: f64,
    /// Wall time from open to close, or to the report for an open phase.
    pub duration_s: f64,
    /// Done, over budget, or still open.
    pub outcome: PhaseOutcome,
    /// The phase's budget in seconds, when it has one.
    pub budget_s: Option<f64>,
    /// Every field the span recorded, including late `span.record(..)` calls.
    pub fields: PhaseFields,
}

/// Where the shutdown's time went. Taken with
/// [`ShutdownHandle::report`](crate::ShutdownHandle::report); `Display` draws a waterfall
/// (`{:#}` in plain ASCII).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// This process.
    pub pid: u32,
    /// Wall-clock time of the origin (Unix seconds), once the shutdown began.
    pub origin_unix_s: Option<f64>,
    /// What started the shutdown, when the signal helper said.
    pub trigger: Option<TriggerInfo>,
    /// True once the shutdown finished.
    pub complete: bool,
    /// Total teardown time, or the time so far.
    pub elapsed_s: f64,
    /// The whole-shutdown budget (supervisor deadline), when set.
    pub budget_s: Option<f64>,
    /// Budget minus elapsed: the margin to the deadline (negative when over).
    pub margin_s: Option<f64>,
    /// Phases in the order they were opened.
    pub phases: Vec<PhaseRecord>,
    /// Stuck snapshots taken during the shutdown (at a budget's end, before a kill, on demand).
    #[serde(default)]
    pub stuck: Vec<StuckSnapshot>,
}

impl ShutdownReport {
    pub(crate) fn from_state(st: &State, now: Instant, budget: Option<Duration>) -> Self {
        let end = st.finished.unwrap_or(now);
        let elapsed = secs(st.offset(end));
        let phases = st
            .live_phases()
            .map(|(_, p)| {
                let took = p.close.unwrap_or(now).saturating_duration_since(p.open);
                let outcome = match (p.close, p.budget) {
                    (None, _) => PhaseOutcome::Open,
                    (Some(_), Some(b)) if took > b => PhaseOutcome::OverBudget,
                    _ => PhaseOutcome::Done,
                };
                PhaseRecord {
                    name: p.label.clone(),
                    span_name: p.name.to_owned(),
                    // Indices count from the first phase of this shutdown.
                    parent: p.parent.and_then(|i| i.checked_sub(st.voided)),
                    start_s: secs(st.offset(p.open)),
                    duration_s: secs(took),
                    outcome,
                    budget_s: p.budget.map(secs),
                    fields: p.fields.clone(),
                }
            })
            .collect();
        Self {
            pid: std::process::id(),
            origin_unix_s: st.origin_wall.map(unix_secs),
            trigger: st.trigger.clone(),
            complete: st.finished.is_some(),
            elapsed_s: elapsed,
            budget_s: budget.map(secs),
            margin_s: budget.map(|b| secs(b) - elapsed),
            phases,
            stuck: st.stuck.clone(),
        }
    }

    /// The report as pretty-printed JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Every value is a finite number, string, bool or null: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Chrome trace event JSON (open it in Perfetto or `chrome://tracing`): one complete
    /// (`"ph":"X"`) event per phase, `ts`/`dur` in microseconds from the origin, concurrent
    /// phases on separate tracks (`tid`), fields and outcome as `args`.
    #[must_use]
    pub fn to_chrome_trace(&self) -> String {
        let lanes = self.lanes();
        let mut events = vec![json!({
            "name": "process_name", "ph": "M", "pid": self.pid, "tid": 0,
            "args": {"name": format!("shutdown (pid {})", self.pid)},
        })];
        for (p, lane) in self.phases.iter().zip(&lanes) {
            let mut args: Map<String, Value> = p
                .fields
                .iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect();
            args.insert("outcome".into(), json!(p.outcome));
            if let Some(b) = p.budget_s {
                args.insert("budget_s".into(), json!(b));
            }
            events.push(json!({
                "name": p.name, "cat": "shutdown", "ph": "X",
                "ts": micros(p.start_s), "dur": micros(p.duration_s),
                "pid": self.pid, "tid": lane + 1, "args": args,
            }));
        }
        for snap in &self.stuck {
            let name = match &snap.phase {
                Some(p) => format!("{p} stuck"),
                None => "shutdown stuck".to_owned(),
            };
            events.push(json!({
                "name": name, "cat": "shutdown", "ph": "i", "s": "g",
                "ts": micros(snap.at_s), "pid": self.pid, "tid": 0,
                "args": {"reason": snap.reason, "findings": snap.findings},
            }));
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
    }

    /// A track per phase such that phases on one track nest properly: a phase joins the
    /// first track whose still-running phases all enclose it.
    pub(crate) fn lanes(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.phases.len()).collect();
        order.sort_by(|&a, &b| self.phases[a].start_s.total_cmp(&self.phases[b].start_s));
        let mut lanes = vec![0; self.phases.len()];
        // Per track: the phases on it, as indices.
        let mut tracks: Vec<Vec<usize>> = Vec::new();
        for i in order {
            let p = &self.phases[i];
            let fits = |track: &Vec<usize>| {
                track.iter().all(|&j| {
                    let q = &self.phases[j];
                    q.start_s + q.duration_s <= p.start_s || self.is_ancestor(j, i)
                })
            };
            let lane = match tracks.iter().position(fits) {
                Some(l) => l,
                None => {
                    tracks.push(Vec::new());
                    tracks.len() - 1
                }
            };
            tracks[lane].push(i);
            lanes[i] = lane;
        }
        lanes
    }

    fn is_ancestor(&self, ancestor: usize, mut of: usize) -> bool {
        // Bounded walk: a malformed (deserialized) report cannot loop forever.
        for _ in 0..self.phases.len() {
            match self.phases.get(of).and_then(|p| p.parent) {
                Some(p) if p == ancestor => return true,
                Some(p) => of = p,
                None => return false,
            }
        }
        false
    }
}

fn micros(s: f64) -> f64 {
    (s * 1e6).round()
}

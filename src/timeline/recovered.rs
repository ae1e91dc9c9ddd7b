//! The report of a stop that never finished, rebuilt from its flight record by the next start,
//! so that the report file (`ForensicsBuilder::with_report_path`) always describes the last
//! stop: written at `finish` by a run that finished, and by the next start for one that did not
//! (SIGKILLed, crashed, exited early). Before, a killed stop left the file describing the stop
//! before it, and an operator read a clean report of the wrong night.
//!
//! Only what the record holds is reported, and what it does not hold is said: the phases with
//! their offsets, durations, fields and budgets as recorded (a phase still open at the last
//! line is `open`, its duration counted to that line), the stuck snapshots' findings (their
//! spans, threads and sockets are not recorded, and their `unknown` list says so), the trigger
//! and the context. The whole-shutdown budget is not recorded: `budget_s` is `null`. A run
//! that reached `finish` but whose `complete` line a full disk cut short keeps the complete
//! report it wrote itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::context::trigger::TriggerInfo;
use crate::error::Error;
use crate::stuck::snapshot::{StuckReason, StuckSnapshot};
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::phase_fields::PhaseFields;
use crate::timeline::report::{PhaseOutcome, PhaseRecord, ShutdownReport};

/// What a recovered snapshot cannot tell.
const SNAPSHOT_NOT_RECORDED: &str = "recovered from the flight record after the process \
     ended: only the findings (and the first one's parts) were recorded; its spans, threads, \
     sockets, HTTP connections, their counts (blocked_threads and idle_peers are 0 here, not counted) and the \
     time it took are unknown";

/// A phase as the record shows it.
#[derive(Default)]
struct Seen {
    label: String,
    parent: Option<u64>,
    start: Option<f64>,
    /// Offset and duration of its end.
    end: Option<(f64, f64)>,
    fields: PhaseFields,
    budget: Option<f64>,
    over: bool,
}

/// The last run in `text` (a record's tail) as a report with `complete: false`, and its
/// context, when that run began a shutdown and never completed it; `None` otherwise (no
/// shutdown, a completed one, or no run line naming the process).
pub(crate) fn from_record(text: &str) -> Option<(ShutdownReport, Option<Value>)> {
    rebuild(text).filter(|(report, _)| !report.complete)
}

/// The last run in `text` as a report, whether its stop completed (`complete: true`, the
/// recorded total) or not, and its context; `None` when it began no shutdown or no line names
/// its process. What `shutdown-forensics last` shows (`timeline/read_back.rs`).
pub(crate) fn rebuild(text: &str) -> Option<(ShutdownReport, Option<Value>)> {
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    let kind = |r: &Value| {
        r.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let run_start = records.iter().rposition(|r| kind(r) == "run").unwrap_or(0);
    let f64_of = |r: &Value, k: &str| r.get(k).and_then(Value::as_f64);
    let trigger_of = |r: &Value| {
        r.get("trigger")
            .and_then(|t| serde_json::from_value::<TriggerInfo>(t.clone()).ok())
    };
    let mut pid = None;
    let mut begun = false;
    let mut origin_unix_s = None;
    let mut trigger = None;
    let mut context = None;
    let mut last = 0.0f64;
    let mut phases: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut stuck = Vec::new();
    let mut completed = None;
    for r in &records[run_start..] {
        pid = (r.get("pid").and_then(Value::as_u64))
            .and_then(|p| u32::try_from(p).ok())
            .or(pid);
        if let Some(t) = f64_of(r, "t").filter(|t| t.is_finite()) {
            last = last.max(t);
        }
        let id = r.get("id").and_then(Value::as_u64);
        let label = r.get("phase").and_then(Value::as_str);
        match kind(r).as_str() {
            "complete" => completed = completed.or(f64_of(r, "total_s")).or(Some(last)),
            "begin" => {
                begun = true;
                origin_unix_s = f64_of(r, "wall_unix_s");
                trigger = trigger_of(r).or(trigger);
            }
            "checkpoint" if r.get("begun").and_then(Value::as_bool) == Some(true) => {
                begun = true;
                trigger = trigger.or_else(|| trigger_of(r));
                for open in r
                    .get("open")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(id) = open.get("id").and_then(Value::as_u64) else {
                        continue;
                    };
                    let seen = phases.entry(id).or_default();
                    if seen.start.is_none() {
                        seen.start = f64_of(open, "t");
                    }
                    if let (true, Some(l)) = (seen.label.is_empty(), open["phase"].as_str()) {
                        seen.label = l.to_owned();
                    }
                }
            }
            "phase_start" => {
                if let Some(id) = id {
                    let seen = phases.entry(id).or_default();
                    seen.start = f64_of(r, "t");
                    seen.parent = r.get("parent").and_then(Value::as_u64);
                    seen.label = label.unwrap_or("?").to_owned();
                }
            }
            "phase_end" => {
                if let (Some(id), Some(t)) = (id, f64_of(r, "t")) {
                    let seen = phases.entry(id).or_default();
                    let took = f64_of(r, "duration_s").unwrap_or(0.0);
                    seen.end = Some((t, took));
                    seen.start = seen.start.or(Some(t - took));
                    if let (true, Some(l)) = (seen.label.is_empty(), label) {
                        seen.label = l.to_owned();
                    }
                    if let Some(fields) = r.get("fields") {
                        seen.fields = serde_json::from_value(fields.clone()).unwrap_or_default();
                    }
                }
            }
            "over_budget" => {
                if let Some(id) = id {
                    let seen = phases.entry(id).or_default();
                    seen.over = true;
                    seen.budget = f64_of(r, "budget_s");
                }
            }
            "stuck" => stuck.push(snapshot(r)),
            "note" if r.get("note").and_then(Value::as_str) == Some("context") => {
                context = r.get("value").cloned();
            }
            _ => {}
        }
    }
    if !begun {
        return None;
    }
    // Phases whose start the record's tail no longer holds cannot be placed: left out.
    let phases: Vec<(u64, Seen)> = (phases.into_iter())
        .filter(|(_, p)| p.start.is_some())
        .collect();
    let index_of = |id: u64| phases.iter().position(|(i, _)| *i == id);
    let records = phases
        .iter()
        .map(|(_, p)| {
            let start = p.start.unwrap_or(0.0);
            let (duration, outcome) = match p.end {
                Some((_, took)) if p.over => (took, PhaseOutcome::OverBudget),
                Some((_, took)) => (took, PhaseOutcome::Done),
                None => ((last - start).max(0.0), PhaseOutcome::Open),
            };
            let label = if p.label.is_empty() { "?" } else { &p.label };
            PhaseRecord {
                name: label.to_owned(),
                span_name: label.split('<').next().unwrap_or(label).to_owned(),
                parent: p.parent.and_then(index_of),
                start_s: start,
                duration_s: duration,
                outcome,
                budget_s: p.budget,
                fields: p.fields.clone(),
            }
        })
        .collect();
    let report = ShutdownReport {
        pid: pid?,
        origin_unix_s,
        trigger,
        complete: completed.is_some(),
        elapsed_s: completed.unwrap_or(last),
        budget_s: None,
        margin_s: None,
        phases: records,
        stuck,
    };
    Some((report, context))
}

/// A `stuck` record line as a snapshot: what was recorded, the rest said to be unknown.
fn snapshot(r: &Value) -> StuckSnapshot {
    let findings = (r
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten())
    .filter_map(Value::as_str)
    .map(str::to_owned)
    .collect();
    StuckSnapshot {
        phase: r.get("phase").and_then(Value::as_str).map(str::to_owned),
        at_s: r.get("t").and_then(Value::as_f64).unwrap_or(0.0),
        reason: (r.get("reason").cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(StuckReason::OnDemand),
        budget_s: None,
        findings,
        first_finding: r.get("first").and_then(crate::verdict::recorded_finding),
        blocked_threads: 0,
        idle_peers: 0,
        spans: Vec::new(),
        threads: Vec::new(),
        sockets: Vec::new(),
        connections: Vec::new(),
        unknown: vec![SNAPSHOT_NOT_RECORDED.to_owned()],
        truncated: false,
        took_ms: 0.0,
    }
}

/// Writes the report of the previous run, when it began a shutdown and never completed it, to
/// `path` (as `Forensics::finish` writes its own, plus a `recovered` object naming the record
/// and the verdict). Returns whether it wrote one.
pub(crate) fn write_previous(handle: &ShutdownHandle, path: &Path) -> Result<bool, Error> {
    let Some(record) = &handle.shared.record else {
        return Ok(false);
    };
    let Some(text) = record.take_previous_text() else {
        return Ok(false);
    };
    let Some((report, context)) = from_record(&text) else {
        return Ok(false);
    };
    if written_by_itself(path, report.pid) {
        return Ok(false);
    }
    let body = json!({
        "report": report,
        "context": context,
        "recovered": {
            "from": record.path().display().to_string(),
            "verdict": record.previous_shutdown().message(),
        },
    });
    crate::sys::private_file::write_atomic(path, body.to_string().as_bytes())
        .map_err(|e| Error::io(format!("write shutdown report {}", path.display()), e))?;
    Ok(true)
}

/// Largest report file read back (the whole report and context are far smaller).
const REPORT_READ_LIMIT: u64 = 4 << 20;

/// Whether the file at `path` already is the complete report of run `pid`: a run that reached
/// `finish` but whose `complete` line a full disk cut short wrote its own, truer report.
fn written_by_itself(path: &Path, pid: u32) -> bool {
    let Ok(Some(bytes)) = crate::sys::private_file::read_bounded(path, REPORT_READ_LIMIT) else {
        return false;
    };
    serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| {
        v["report"]["pid"].as_u64() == Some(u64::from(pid)) && v["report"]["complete"] == true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KILLED: &str = concat!(
        r#"{"kind":"run","pid":7}"#,
        "\n",
        r#"{"kind":"begin","t":0.0,"pid":7,"wall_unix_s":1000.5}"#,
        "\n",
        r#"{"kind":"note","note":"context","t":0.0,"value":{"signal":"SIGTERM","pid":7}}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.01,"id":0,"phase":"notify","parent":null}"#,
        "\n",
        r#"{"kind":"phase_end","t":0.5,"id":0,"phase":"notify","duration_s":0.49,"fields":{"sent":3}}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.5,"id":1,"phase":"drain","parent":null}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.6,"id":2,"phase":"disconnect<slack>","parent":1}"#,
        "\n",
        r#"{"kind":"over_budget","t":2.5,"id":1,"phase":"drain","budget_s":2.0}"#,
        "\n",
        r#"{"kind":"stuck","t":2.5,"phase":"drain","reason":"kill_deadline","summary":"s","findings":["request{path=/upload} idle 2.0s"]}"#,
        "\n",
        r#"{"kind":"heartbeat","t":3.0}"#,
        "\n",
    );

    #[test]
    fn a_killed_stop_is_rebuilt_from_its_record() {
        let (report, context) = from_record(KILLED).unwrap();
        assert_eq!(report.pid, 7);
        assert!(!report.complete);
        assert_eq!(report.origin_unix_s, Some(1000.5));
        assert!((report.elapsed_s - 3.0).abs() < 1e-9);
        assert_eq!(report.budget_s, None, "not recorded: not guessed");
        let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["notify", "drain", "disconnect<slack>"]);
        let outcomes: Vec<PhaseOutcome> = report.phases.iter().map(|p| p.outcome).collect();
        assert_eq!(
            outcomes,
            [PhaseOutcome::Done, PhaseOutcome::Open, PhaseOutcome::Open]
        );
        assert_eq!(report.phases[0].fields.get("sent"), Some(&json!(3)));
        assert!(
            (report.phases[1].duration_s - 2.5).abs() < 1e-9,
            "to the last line"
        );
        assert_eq!(report.phases[1].budget_s, Some(2.0));
        assert_eq!(report.phases[2].parent, Some(1));
        assert_eq!(report.phases[2].span_name, "disconnect");
        assert_eq!(report.stuck.len(), 1);
        assert_eq!(report.stuck[0].reason, StuckReason::KillDeadline);
        assert_eq!(
            report.stuck[0].findings,
            ["request{path=/upload} idle 2.0s"]
        );
        assert!(report.stuck[0].unknown[0].contains("unknown"));
        assert_eq!(context.unwrap()["signal"], "SIGTERM");
        // Its waterfall draws.
        assert!(report.to_string().contains("drain"));
    }

    #[test]
    fn a_completed_or_never_begun_run_is_not_rebuilt() {
        let complete = format!("{KILLED}{{\"kind\":\"complete\",\"t\":4.0,\"total_s\":4.0}}\n");
        assert!(from_record(&complete).is_none());
        assert!(from_record("{\"kind\":\"run\",\"pid\":7}\n").is_none());
        assert!(from_record("").is_none());
        assert!(from_record("garbage\n{\"kind\":\"begin\"").is_none());
        // Only the last run counts.
        let next = format!("{KILLED}{{\"kind\":\"run\",\"pid\":8}}\n");
        assert!(from_record(&next).is_none());
    }

    #[test]
    fn a_complete_report_of_the_same_run_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-shutdown.json");
        assert!(!written_by_itself(&path, 7), "no file");
        std::fs::write(&path, r#"{"report":{"pid":7,"complete":true}}"#).unwrap();
        assert!(written_by_itself(&path, 7));
        assert!(!written_by_itself(&path, 8), "another run's");
        std::fs::write(&path, r#"{"report":{"pid":7,"complete":false}}"#).unwrap();
        assert!(!written_by_itself(&path, 7));
        std::fs::write(&path, "not json").unwrap();
        assert!(!written_by_itself(&path, 7));
    }

    #[test]
    fn a_tail_that_starts_at_a_checkpoint_keeps_the_open_phases() {
        let tail = concat!(
            r#"{"kind":"checkpoint","t":40.0,"pid":9,"begun":true,"open":[{"id":3,"phase":"drain","t":1.5}],"last_ended":null}"#,
            "\n",
            r#"{"kind":"heartbeat","t":41.0}"#,
            "\n",
        );
        let (report, context) = from_record(tail).unwrap();
        assert_eq!(report.pid, 9);
        assert_eq!(report.phases.len(), 1);
        assert_eq!(report.phases[0].outcome, PhaseOutcome::Open);
        assert!((report.phases[0].duration_s - 39.5).abs() < 1e-9);
        assert!(context.is_none());
    }
}

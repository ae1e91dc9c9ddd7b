//! One stop in a line: what the history (`history.jsonl`) keeps of each stop, built from a
//! flight record's text by the next start (pure, here) or from the live report at `finish`
//! (`timeline/history.rs`).
//!
//! Bounded whatever the record says: at most [`MAX_PHASES`] phases, names and the finding cut
//! to a few hundred characters, so that a line stays far below the size one `write(2)` appends
//! whole.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::evidence::{cap_chars, finding_parts};
use super::PreviousShutdown;

/// Phases kept per stop (a shutdown has a handful; the rest would only grow the line).
pub(crate) const MAX_PHASES: usize = 32;
/// Characters kept of a name, a sender, a reason or the stuck finding.
const TEXT_CAP: usize = 300;

/// Who wrote a [`StopSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordedBy {
    /// The process itself, at [`Forensics::finish`](crate::Forensics::finish).
    Finish,
    /// The next start, from the flight record of a run that did not finish (SIGKILLed,
    /// crashed, exited early), or whose own line never reached the history.
    NextStart,
}

/// How long one phase of a stop took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PhaseTime {
    /// The phase's label (`drain`, `disconnect<slack>`).
    pub name: String,
    /// Seconds from its start to its end, or for an `open` phase to the last record line (a
    /// lower bound: it was still running then).
    pub duration_s: f64,
    /// Still running when the run ended (killed, crashed or exited in it).
    #[serde(default)]
    pub open: bool,
}

/// One stop, as the history keeps it (one JSON line of `history.jsonl`; read them with
/// [`history`](super::history())).
///
/// Every fact is what the flight record or the live report held; one they did not hold is
/// `None`, never a guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StopSummary {
    /// The process that stopped.
    pub pid: Option<u32>,
    /// When that process opened its flight record (Unix seconds): with the pid, it names the
    /// run (in a container every run may be pid 1).
    #[serde(default)]
    pub run_started_unix_s: Option<f64>,
    /// When the stop began (the signal's receipt), Unix seconds; `None` for a run that ended
    /// without starting one (verdict `no_shutdown`).
    #[serde(default)]
    pub started_unix_s: Option<f64>,
    /// The signal that started it (`SIGTERM`), when a signal did.
    #[serde(default)]
    pub signal: Option<String>,
    /// The signal's sender (`0`: outside our pid namespace, or the kernel), when known.
    #[serde(default)]
    pub sender_pid: Option<u32>,
    /// The sender's name, when its `/proc` entry could be read.
    #[serde(default)]
    pub sender_name: Option<String>,
    /// Who supervised the process: `systemd-system`, `systemd-user`, `container`,
    /// `terminal` or `none` (the context line's `supervisor`); `None` when not recorded.
    #[serde(default)]
    pub supervisor: Option<String>,
    /// The systemd unit, when there was one.
    #[serde(default)]
    pub unit: Option<String>,
    /// A planned-stop marker named this process (a deploy, `shutdown-forensics mark`).
    #[serde(default)]
    pub planned: bool,
    /// The reason the planned-stop marker gave, when it gave one.
    #[serde(default)]
    pub reason: Option<String>,
    /// How the run ended: [`PreviousShutdown::kind`] (`clean`, `killed`, `exited_early`,
    /// `escalated`, `panicked`, `no_shutdown`, `unknown`).
    pub verdict: String,
    /// The phase it ended in (killed, crashed or exited during it); `None` for a clean stop
    /// or one that ended outside any phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// The stop reached `finish`.
    #[serde(default)]
    pub complete: bool,
    /// Seconds from the stop's start to its end (`complete`), or to the last record line (a
    /// lower bound: the kill came later). `None` without a stop.
    #[serde(default)]
    pub total_s: Option<f64>,
    /// Each phase, in the order they started (at most 32).
    #[serde(default)]
    pub phases: Vec<PhaseTime>,
    /// Where it was stuck: the first finding of the last stuck snapshot, when one was taken.
    #[serde(default)]
    pub stuck: Option<String>,
    /// Who wrote this line.
    pub recorded_by: RecordedBy,
}

impl StopSummary {
    /// An empty summary for `verdict`, filled in by the builders.
    pub(crate) fn new(verdict: &str, recorded_by: RecordedBy) -> Self {
        Self {
            pid: None,
            run_started_unix_s: None,
            started_unix_s: None,
            signal: None,
            sender_pid: None,
            sender_name: None,
            supervisor: None,
            unit: None,
            planned: false,
            reason: None,
            verdict: verdict.to_owned(),
            phase: None,
            complete: false,
            total_s: None,
            phases: Vec::new(),
            stuck: None,
            recorded_by,
        }
    }

    /// How long `phase` took in this stop (the first phase of that label), if it ran.
    #[must_use]
    pub fn phase_duration(&self, phase: &str) -> Option<f64> {
        self.phases
            .iter()
            .find(|p| p.name == phase)
            .map(|p| p.duration_s)
    }

    /// Whether `other` is the same stop: the same pid and, where both know them, the same run
    /// and stop start times; at least one of those must be known to both (a pid alone names
    /// no run: in a container every run may be pid 1).
    pub(crate) fn same_stop(&self, other: &Self) -> bool {
        if self.pid != other.pid {
            return false;
        }
        let pairs = [
            (self.run_started_unix_s, other.run_started_unix_s),
            (self.started_unix_s, other.started_unix_s),
        ];
        let known: Vec<(f64, f64)> = pairs
            .iter()
            .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
            .collect();
        !known.is_empty() && known.iter().all(|(a, b)| (a - b).abs() < 1e-6)
    }

    /// Whether this summary has a time that names its run (see [`Self::same_stop`]).
    pub(crate) fn identifiable(&self) -> bool {
        self.run_started_unix_s.is_some() || self.started_unix_s.is_some()
    }

    /// Caps every text and list (a tampered record or context cannot grow a history line).
    pub(crate) fn bounded(mut self) -> Self {
        let cap = |s: &mut Option<String>| {
            if let Some(t) = s {
                *t = cap_chars(t, TEXT_CAP);
            }
        };
        cap(&mut self.signal);
        cap(&mut self.sender_name);
        cap(&mut self.supervisor);
        cap(&mut self.unit);
        cap(&mut self.reason);
        cap(&mut self.phase);
        cap(&mut self.stuck);
        self.verdict = cap_chars(&self.verdict, 32);
        self.phases.truncate(MAX_PHASES);
        for p in &mut self.phases {
            p.name = cap_chars(&p.name, TEXT_CAP);
            if !p.duration_s.is_finite() || p.duration_s < 0.0 {
                p.duration_s = 0.0;
            }
        }
        let finite = |v: &mut Option<f64>| {
            if v.is_some_and(|x| !x.is_finite()) {
                *v = None;
            }
        };
        finite(&mut self.total_s);
        finite(&mut self.started_unix_s);
        finite(&mut self.run_started_unix_s);
        self
    }

    /// Sets who stopped it from a recorded context (`ShutdownContext` as JSON).
    pub(crate) fn set_context(&mut self, ctx: &Value) {
        if let Some(s) = ctx.get("supervisor").and_then(supervisor_word) {
            self.supervisor = Some(s.to_owned());
        }
        self.unit = text(ctx.get("systemd_unit")).or(self.unit.take());
        if self.signal.is_none() {
            self.signal = text(ctx.get("signal")).filter(|s| s != "UNKNOWN");
        }
        if let Some(sender) = ctx.get("sender").filter(|s| s.is_object()) {
            self.set_sender(sender);
        }
        let marker = ctx.get("planned_stop_marker");
        if marker
            .and_then(|m| m.get("for_self"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            self.planned = true;
            self.reason = text(marker.and_then(|m| m.get("reason"))).or(self.reason.take());
        }
    }

    /// Sets the signal and its sender from a recorded trigger (`TriggerInfo` as JSON).
    pub(crate) fn set_trigger(&mut self, trigger: &Value) {
        self.signal = text(trigger.get("signal_name")).or(self.signal.take());
        if let Some(sender) = trigger.get("sender").filter(|s| s.is_object()) {
            self.set_sender(sender);
        }
        self.planned |= trigger.get("planned").and_then(Value::as_bool) == Some(true);
    }

    fn set_sender(&mut self, sender: &Value) {
        let pid = sender.get("pid").and_then(Value::as_u64);
        self.sender_pid = pid.and_then(|p| u32::try_from(p).ok()).or(self.sender_pid);
        self.sender_name = text(sender.get("name")).or(self.sender_name.take());
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// `systemd-system`, `container`, ... from a serialized `Supervisor` (`{"kind": ..}`).
fn supervisor_word(v: &Value) -> Option<&'static str> {
    let kind = v.get("kind")?.as_str()?;
    Some(match kind {
        "systemd" => match v.get("manager").and_then(Value::as_str) {
            Some("user") => "systemd-user",
            _ => "systemd-system",
        },
        "container" => "container",
        "terminal" => "terminal",
        _ => "none",
    })
}

/// The summary of the last run in a flight record's `text`, judged `verdict`, as the next
/// start writes it; `None` when there is no stop to keep (no record, a run still running, one
/// that left through its own exit without a shutdown).
pub(crate) fn from_record(text: &str, verdict: &PreviousShutdown) -> Option<StopSummary> {
    if matches!(
        verdict,
        PreviousShutdown::None
            | PreviousShutdown::StillRunning { .. }
            | PreviousShutdown::Exited { .. }
    ) {
        return None;
    }
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
    let mut s = StopSummary::new(verdict.kind(), RecordedBy::NextStart);
    let f64_of = |r: &Value, k: &str| r.get(k).and_then(Value::as_f64).filter(|t| t.is_finite());
    let mut phases: Vec<Seen> = Vec::new();
    let mut last = 0.0f64;
    let mut begun = false;
    let mut total = None;
    let mut stuck = None;
    for r in records.get(run_start..).unwrap_or_default() {
        s.pid = (r.get("pid").and_then(Value::as_u64))
            .and_then(|p| u32::try_from(p).ok())
            .or(s.pid);
        if let Some(t) = f64_of(r, "t") {
            last = last.max(t);
        }
        let id = r.get("id").and_then(Value::as_u64);
        let label = r.get("phase").and_then(Value::as_str);
        match kind(r).as_str() {
            "run" => s.run_started_unix_s = f64_of(r, "wall_unix_s"),
            "begin" => {
                begun = true;
                s.started_unix_s = f64_of(r, "wall_unix_s");
                if let Some(t) = r.get("trigger") {
                    s.set_trigger(t);
                }
            }
            // Phases before the helper's install were not part of a shutdown.
            "reset" => {
                begun = false;
                phases.clear();
                last = 0.0;
                stuck = None;
            }
            "checkpoint" if r.get("begun").and_then(Value::as_bool) == Some(true) => {
                begun = true;
                for open in r
                    .get("open")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = open.get("id").and_then(Value::as_u64) {
                        let p = entry(&mut phases, id);
                        p.2 = p.2.or(f64_of(open, "t"));
                        if p.1.is_empty() {
                            p.1 = open
                                .get("phase")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned();
                        }
                    }
                }
            }
            "phase_start" => {
                if let Some(id) = id {
                    let p = entry(&mut phases, id);
                    p.1 = label.unwrap_or("?").to_owned();
                    p.2 = f64_of(r, "t");
                }
            }
            "phase_end" => {
                if let Some(id) = id {
                    let took = f64_of(r, "duration_s");
                    let p = entry(&mut phases, id);
                    if p.1.is_empty() {
                        p.1 = label.unwrap_or("?").to_owned();
                    }
                    p.3 = took.or(Some(0.0));
                }
            }
            "complete" => total = total.or(f64_of(r, "total_s")),
            "stuck" => {
                let first = r.get("first").and_then(finding_parts).map(|f| f.summary());
                let summary = r.get("summary").and_then(Value::as_str).map(str::to_owned);
                stuck = first.or(summary).or(stuck);
            }
            "note" if r.get("note").and_then(Value::as_str) == Some("context") => {
                if let Some(ctx) = r.get("value") {
                    s.set_context(ctx);
                }
            }
            _ => {}
        }
    }
    if begun {
        s.complete = total.is_some();
        s.total_s = total.or(Some(last));
        s.phases = phases
            .into_iter()
            // A phase whose start the tail no longer holds cannot be timed when still open.
            .filter_map(|(_, name, start, end)| {
                let name = if name.is_empty() {
                    "?".to_owned()
                } else {
                    name
                };
                match (start, end) {
                    (_, Some(took)) => Some(PhaseTime {
                        name,
                        duration_s: took,
                        open: false,
                    }),
                    (Some(start), None) => Some(PhaseTime {
                        name,
                        duration_s: (last - start).max(0.0),
                        open: true,
                    }),
                    (None, None) => None,
                }
            })
            .collect();
        s.stuck = stuck;
    }
    s.phase = ending_phase(verdict);
    if let PreviousShutdown::Killed {
        stuck: Some(found), ..
    } = verdict
    {
        // The verdict's own: a snapshot of a phase that ended since says nothing of the kill.
        s.stuck = Some(found.clone());
    }
    Some(s.bounded())
}

/// A phase as the record shows it: id, label, start offset, duration once ended.
type Seen = (u64, String, Option<f64>, Option<f64>);

/// The phase `id` in `phases`, added when new.
fn entry(phases: &mut Vec<Seen>, id: u64) -> &mut Seen {
    let at = match phases.iter().position(|p| p.0 == id) {
        Some(i) => i,
        None => {
            phases.push((id, String::new(), None, None));
            phases.len() - 1
        }
    };
    &mut phases[at]
}

/// The phase a verdict says the run ended in.
pub(crate) fn ending_phase(verdict: &PreviousShutdown) -> Option<String> {
    match verdict {
        PreviousShutdown::Killed { phase, .. }
        | PreviousShutdown::ExitedEarly { phase, .. }
        | PreviousShutdown::Escalated { phase, .. }
        | PreviousShutdown::Panicked { phase, .. }
        | PreviousShutdown::Unknown { phase, .. } => phase.clone(),
        _ => None,
    }
}

/// The summaries in a history file's text, oldest first: a line that cannot be read (a write
/// a kill cut short, a line from a future version that changed a field's type) is skipped.
pub(crate) fn parse_history(text: &str) -> Vec<StopSummary> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<StopSummary>(l).ok())
        .map(StopSummary::bounded)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::parse_records;

    const KILLED: &str = concat!(
        r#"{"kind":"run","pid":7,"wall_unix_s":900.25}"#,
        "\n",
        r#"{"kind":"begin","t":0.0,"pid":7,"wall_unix_s":1000.5,"trigger":{"wall_unix_s":1000.5,"signal":15,"signal_name":"SIGTERM","sender":{"pid":1,"uid":0,"cause":"kill","name":"systemd"},"planned":false,"correlation_id":null}}"#,
        "\n",
        r#"{"kind":"note","note":"context","t":0.0,"value":{"signal":"SIGTERM","supervisor":{"kind":"systemd","manager":"system","unit":"gw.service"},"systemd_unit":"gw.service","planned_stop_marker":{"for_self":true,"reason":"deploy 42"}}}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.01,"id":0,"phase":"notify"}"#,
        "\n",
        r#"{"kind":"phase_end","t":0.5,"id":0,"phase":"notify","duration_s":0.49}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.5,"id":1,"phase":"drain"}"#,
        "\n",
        r#"{"kind":"stuck","t":2.5,"phase":"drain","reason":"budget","summary":"request{path=/upload} idle 2.0s","findings":[]}"#,
        "\n",
        r#"{"kind":"heartbeat","t":3.0}"#,
        "\n",
    );

    #[test]
    fn a_killed_stop_is_summed_up_from_its_record() {
        let verdict = parse_records(KILLED);
        let s = from_record(KILLED, &verdict).unwrap();
        assert_eq!(s.pid, Some(7));
        assert_eq!(s.verdict, "killed");
        assert_eq!(s.phase.as_deref(), Some("drain"));
        assert_eq!(s.run_started_unix_s, Some(900.25));
        assert_eq!(s.started_unix_s, Some(1000.5));
        assert_eq!(s.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(s.sender_pid, Some(1));
        assert_eq!(s.sender_name.as_deref(), Some("systemd"));
        assert_eq!(s.supervisor.as_deref(), Some("systemd-system"));
        assert_eq!(s.unit.as_deref(), Some("gw.service"));
        assert!(s.planned);
        assert_eq!(s.reason.as_deref(), Some("deploy 42"));
        assert!(!s.complete);
        assert_eq!(s.total_s, Some(3.0), "to the last record: a lower bound");
        assert_eq!(s.phases.len(), 2);
        assert_eq!(s.phases[0].name, "notify");
        assert!((s.phases[0].duration_s - 0.49).abs() < 1e-9 && !s.phases[0].open);
        assert!((s.phases[1].duration_s - 2.5).abs() < 1e-9 && s.phases[1].open);
        assert_eq!(s.stuck.as_deref(), Some("request{path=/upload} idle 2.0s"));
        assert_eq!(s.recorded_by, RecordedBy::NextStart);
        // A line round-trips.
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(parse_history(&format!("{line}\n")), vec![s]);
    }

    #[test]
    fn a_clean_stop_a_crash_and_runs_without_a_stop() {
        let clean = format!("{KILLED}{{\"kind\":\"phase_end\",\"t\":4.0,\"id\":1,\"duration_s\":3.5}}\n{{\"kind\":\"complete\",\"t\":4.1,\"total_s\":4.1}}\n");
        let s = from_record(&clean, &parse_records(&clean)).unwrap();
        assert_eq!(
            (s.verdict.as_str(), s.complete, s.total_s),
            ("clean", true, Some(4.1))
        );
        assert_eq!(s.phase, None);
        assert!(!s.phases[1].open && (s.phases[1].duration_s - 3.5).abs() < 1e-9);
        let crash = "{\"kind\":\"run\",\"pid\":8,\"wall_unix_s\":5.0}\n";
        let s = from_record(crash, &parse_records(crash)).unwrap();
        assert_eq!(
            (s.verdict.as_str(), s.total_s, s.started_unix_s),
            ("no_shutdown", None, None)
        );
        assert!(s.identifiable());
        assert!(from_record("", &PreviousShutdown::None).is_none());
        let still = PreviousShutdown::StillRunning { pid: 8 };
        assert!(from_record(crash, &still).is_none());
    }

    #[test]
    fn the_same_stop_needs_a_time_both_know() {
        let mut a = StopSummary::new("clean", RecordedBy::Finish);
        a.pid = Some(1);
        let mut b = a.clone();
        assert!(!a.same_stop(&b), "pid 1 alone names no run");
        a.run_started_unix_s = Some(10.0);
        b.run_started_unix_s = Some(10.0);
        assert!(a.same_stop(&b));
        b.started_unix_s = Some(20.0);
        assert!(a.same_stop(&b), "compared only where both know it");
        a.started_unix_s = Some(21.0);
        assert!(!a.same_stop(&b));
        b.pid = Some(2);
        a.started_unix_s = Some(20.0);
        assert!(!a.same_stop(&b));
    }

    #[test]
    fn torn_and_hostile_lines_are_skipped_or_bounded() {
        let long = "x".repeat(5000);
        let phases: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"name":"p{i}","duration_s":1.0}}"#))
            .collect();
        let text = format!(
            "{{\"verdict\":\"clean\",\"recorded_by\":\"finish\",\"reason\":\"{long}\",\"phases\":[{}]}}\n{{\"verdict\":\"kil",
            phases.join(",")
        );
        let read = parse_history(&text);
        assert_eq!(read.len(), 1, "the torn last line is skipped");
        assert_eq!(read[0].reason.as_ref().unwrap().chars().count(), TEXT_CAP);
        assert_eq!(read[0].phases.len(), MAX_PHASES);
    }
}

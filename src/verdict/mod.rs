//! Did the last stop finish? The verdict the next start gives on the previous run.
//!
//! A [`FlightRecord`](crate::FlightRecord) keeps every step of a shutdown on disk, one
//! synchronous line each, so that a `SIGKILL` cannot take it away. At the next start,
//! [`Forensics::install`](crate::ForensicsBuilder::install) judges the previous run from the
//! record's tail and logs one WARN line when it did not end well:
//!
//! ```text
//! Previous shutdown did not complete: pid 4242 was killed during phase drain (entered +2.10s, last record +89.95s, ...)
//! ```
//!
//! The verdict is a [`PreviousShutdown`]: `Clean`, `Killed`, `Panicked`, `Escalated`,
//! `NoShutdown`, `Unknown` (with an [`UnknownReason`]) and a few that log nothing. It is never
//! a guess: a record that cannot be judged says so. Read it yourself with
//! [`FlightRecord::previous`](crate::FlightRecord::previous), or from text:
//!
//! ```
//! use shutdown_forensics::verdict::PreviousShutdown;
//! use shutdown_forensics::FlightRecord;
//!
//! let text = concat!(
//!     r#"{"kind":"run","pid":42}"#, "\n",
//!     r#"{"kind":"begin","t":0.0,"pid":42}"#, "\n",
//!     r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#, "\n",
//! );
//! let verdict = FlightRecord::parse(text);
//! assert!(matches!(verdict, PreviousShutdown::Killed { .. }));
//! assert!(!verdict.is_clean());
//! ```
//!
//! Every verdict and its line: `docs/operators.md` in the repository.
//
// For contributors: pure, no I/O here, so every verdict is tested on fixtures (`tests.rs`).
// In: the record's text (bounded by the reader in `record/flight_record.rs`). Out: a
// `PreviousShutdown` and its one log line. Read `parse_records` first.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::context::trigger::TriggerInfo;
use crate::stuck::snapshot::StuckFinding;
use crate::sys::clock::Offset;
use crate::sys::logfmt::Logfmt;

mod event;
mod evidence;
pub(crate) mod unconfirmed;

pub use evidence::UnknownReason;
use evidence::{cap_chars, finding_parts, PanicRecord};

/// How the previous run ended, according to its flight record.
///
/// ```
/// use shutdown_forensics::FlightRecord;
/// use shutdown_forensics::verdict::PreviousShutdown;
///
/// let text = concat!(
///     r#"{"kind":"run","pid":42}"#, "\n",
///     r#"{"kind":"begin","t":0.0,"pid":42}"#, "\n",
///     r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#, "\n",
///     r#"{"kind":"note","t":89.95,"note":"heartbeat"}"#, "\n", // then SIGKILL
/// );
/// let verdict = FlightRecord::parse(text);
/// assert!(matches!(verdict, PreviousShutdown::Killed { .. }));
/// assert_eq!(
///     verdict.message().as_deref(),
///     Some("Previous shutdown did not complete: pid 42 was killed during phase drain \
///           (entered +2.10s, last record +89.95s, 87.85s into drain)"),
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
// One value per process start: boxing `Killed` would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum PreviousShutdown {
    /// No record: first run, or the record was removed.
    None,
    /// The previous shutdown completed.
    #[non_exhaustive]
    Clean {
        /// The previous process.
        pid: Option<u32>,
        /// Its total teardown time.
        total: Duration,
    },
    /// The previous shutdown started but never completed: the process was killed (or crashed)
    /// while `phase` was running.
    #[non_exhaustive]
    Killed {
        /// The previous process.
        pid: Option<u32>,
        /// The phase that was running: the most recently entered phase still open.
        phase: Option<String>,
        /// When that phase was entered, from the shutdown origin.
        entered: Option<Duration>,
        /// The offset of the last record written.
        last_record: Duration,
        /// Every phase still open, in the order they were entered.
        open_phases: Vec<String>,
        /// The phase that ended last, when the record (or its last checkpoint) shows one.
        last_ended: Option<String>,
        /// When it ended, from the shutdown origin.
        last_ended_at: Option<Duration>,
        /// What started the shutdown, when recorded.
        trigger: Option<TriggerInfo>,
        /// Where it was stuck, from the last stuck snapshot the record holds:
        /// `request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s` (built from
        /// [`stuck_finding`](Self::Killed::stuck_finding) when the record has its parts).
        stuck: Option<String>,
        /// That snapshot's first finding in parts (span, peer, thread, ...), when the record
        /// holds them (records of versions before 0.2 hold only the summary above).
        stuck_finding: Option<StuckFinding>,
        /// True when the record holds heartbeat lines: the last record is then within about a
        /// second of the kill (without them, the kill may have come long after it).
        heartbeat: bool,
    },
    /// The previous shutdown was cut short on purpose: the `signal_count`-th signal escalated
    /// ([`crate::context::Escalation::Exit`]) and the process exited with `exit_code`.
    #[non_exhaustive]
    Escalated {
        /// The previous process.
        pid: Option<u32>,
        /// The phase that was running, when one was.
        phase: Option<String>,
        /// Which signal escalated (2 = the second).
        signal_count: u32,
        /// The exit code it asked for.
        exit_code: i32,
        /// The offset of the last record written.
        last_record: Duration,
    },
    /// The previous process is still alive (same pid and start time): a takeover, where the new
    /// instance starts before the old one has finished. Nothing to judge yet.
    #[non_exhaustive]
    StillRunning {
        /// The previous process.
        pid: u32,
    },
    /// The previous run ended through its own exit path without starting a shutdown (the
    /// signal helper was dropped, e.g. after a start-up error): not a crash, nothing to warn
    /// about.
    #[non_exhaustive]
    Exited {
        /// The previous process.
        pid: Option<u32>,
    },
    /// The previous run ended without starting a shutdown: a crash, an OOM kill, a power
    /// loss, or a stop that bypassed the shutdown path.
    #[non_exhaustive]
    NoShutdown {
        /// The previous process.
        pid: Option<u32>,
    },
    /// The previous run panicked: the panic hook installed by
    /// [`ForensicsBuilder::install`](crate::ForensicsBuilder::install) recorded the panic,
    /// and the process ended with it (the unwinding dropped [`crate::Forensics`], or the
    /// panic was the record's last line). A panic that was caught and survived is not this.
    #[non_exhaustive]
    Panicked {
        /// The previous process.
        pid: Option<u32>,
        /// The panic's message (capped).
        message: String,
        /// Where it panicked: `file:line:column`.
        location: Option<String>,
        /// The name of the thread that panicked.
        thread: Option<String>,
        /// Whether a shutdown had begun.
        shutdown_begun: bool,
        /// The phase that was running, when one was.
        phase: Option<String>,
    },
    /// The record cannot tell whether the previous shutdown completed (see
    /// [`UnknownReason`]). What it shows up to there is kept; it is never taken for clean.
    #[non_exhaustive]
    Unknown {
        /// The previous process, when a readable line names it.
        pid: Option<u32>,
        /// Why the end of the record cannot be judged.
        reason: UnknownReason,
        /// Whether the readable lines show a shutdown that had begun.
        shutdown_begun: bool,
        /// The phase that was running at the last readable line, when one was.
        phase: Option<String>,
        /// The offset of the last readable record.
        last_record: Duration,
    },
}

impl PreviousShutdown {
    /// True unless the previous run ended without a completed shutdown.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::None | Self::Clean { .. })
    }

    /// The warning to log, or `None` when the previous stop was clean (or there was none).
    #[must_use]
    pub fn message(&self) -> Option<String> {
        match self {
            Self::None | Self::Clean { .. } | Self::Exited { .. } | Self::StillRunning { .. } => None,
            Self::Escalated { pid, phase, signal_count, exit_code, last_record } => {
                let during = match phase {
                    Some(p) => format!("during phase {}", Logfmt(p)),
                    None => "before any phase started".to_owned(),
                };
                Some(format!(
                    "Previous shutdown did not complete: pid {} exited with code {exit_code} on \
                     signal #{signal_count} (escalation) {during} (last record {})",
                    Pid(*pid),
                    Offset(*last_record)
                ))
            }
            Self::Killed {
                pid,
                phase,
                entered,
                last_record,
                last_ended,
                last_ended_at,
                stuck,
                ..
            } => {
                let stuck = match stuck {
                    Some(s) => format!("; stuck in {s}"),
                    None => String::new(),
                };
                // How far into the phase the last record is: with heartbeats (at most a second
                // apart) that is within a second of the kill.
                let into = match (phase, entered) {
                    (Some(p), Some(e)) => format!(
                        ", {:.2}s into {}",
                        last_record.saturating_sub(*e).as_secs_f64(),
                        Logfmt(p)
                    ),
                    _ => String::new(),
                };
                let during = match (phase, entered, last_ended) {
                    (Some(p), Some(e), _) => format!("during phase {} (entered {}, ", Logfmt(p), Offset(*e)),
                    (Some(p), None, _) => format!("during phase {} (", Logfmt(p)),
                    (None, _, Some(p)) => match last_ended_at {
                        Some(t) => format!("after phase {} ended ({}, ", Logfmt(p), Offset(*t)),
                        None => format!("after phase {} ended (", Logfmt(p)),
                    },
                    (None, _, None) => "before any phase started (".to_owned(),
                };
                Some(format!(
                    "Previous shutdown did not complete: pid {} was killed {during}last record {}{into}){stuck}",
                    Pid(*pid),
                    Offset(*last_record)
                ))
            }
            Self::Panicked {
                pid,
                message,
                location,
                thread,
                shutdown_begun,
                phase,
            } => Some(evidence::panic_message(
                &Pid(*pid).to_string(),
                *shutdown_begun,
                phase.as_deref(),
                message,
                location.as_deref(),
                thread.as_deref(),
            )),
            Self::Unknown {
                pid,
                reason,
                shutdown_begun,
                phase,
                last_record,
            } => Some(evidence::unknown_message(
                &Pid(*pid).to_string(),
                *reason,
                *shutdown_begun,
                phase.as_deref(),
                *last_record,
            )),
            Self::NoShutdown { pid } => Some(format!(
                "Previous run (pid {}) ended without starting a shutdown (crash, OOM kill or power loss)",
                Pid(*pid)
            )),
        }
    }
}

struct Pid(Option<u32>);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("?"),
        }
    }
}

fn offset(v: &Value) -> Option<Duration> {
    v.get("t")
        .and_then(Value::as_f64)
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
}

fn pid(v: &Value) -> Option<u32> {
    v.get("pid")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
}

/// A phase as the parser tracks it: id, label, offset (of its start, or of its end).
type OpenPhase = (u64, String, Option<Duration>);

fn open_phase(r: &Value) -> Option<OpenPhase> {
    let id = r.get("id").and_then(Value::as_u64)?;
    let name = r.get("phase").and_then(Value::as_str).unwrap_or("?");
    Some((id, name.to_owned(), offset(r)))
}

/// The later-ending of two ended phases (`b` on a tie: it was read later).
fn later(a: Option<OpenPhase>, b: Option<OpenPhase>) -> Option<OpenPhase> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.2 > b.2 { a } else { b }),
        (a, b) => b.or(a),
    }
}

/// The pid and start time (clock ticks after boot) of the last run in the record, when its
/// `run` line has both.
pub(crate) fn run_identity(text: &str) -> Option<(u32, u64)> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r.get("kind").and_then(Value::as_str) == Some("run"))
        .and_then(|r| Some((pid(&r)?, r.get("start_time").and_then(Value::as_u64)?)))
}

/// The verdict on a record's tail as the reader found it: `oversized` when the read window
/// held no whole line (the last line is larger than the window).
pub(crate) fn parse_tail(text: &str, oversized: bool) -> PreviousShutdown {
    if oversized {
        let unknown = |pid, shutdown_begun, phase, last_record| PreviousShutdown::Unknown {
            pid,
            reason: UnknownReason::OversizedLine,
            shutdown_begun,
            phase,
            last_record,
        };
        return match parse_records(text) {
            PreviousShutdown::Killed {
                pid,
                phase,
                last_record,
                ..
            } => unknown(pid, true, phase, last_record),
            PreviousShutdown::Unknown {
                pid,
                shutdown_begun,
                phase,
                last_record,
                ..
            } => unknown(pid, shutdown_begun, phase, last_record),
            PreviousShutdown::None | PreviousShutdown::NoShutdown { .. } => {
                unknown(None, false, None, Duration::ZERO)
            }
            other => other,
        };
    }
    parse_records(text)
}

/// Computes the verdict from JSON lines; unparsable lines are skipped, except the last: a
/// record that ends in a line that cannot be read is [`PreviousShutdown::Unknown`], never
/// clean. The text may start anywhere in a run: a `checkpoint` line restates the pid, trigger
/// and open phases.
pub(crate) fn parse_records(text: &str) -> PreviousShutdown {
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    let torn = evidence::unreadable_end(text);
    if records.is_empty() {
        return match torn {
            Some(_) => PreviousShutdown::Unknown {
                pid: None,
                reason: UnknownReason::Unreadable,
                shutdown_begun: false,
                phase: None,
                last_record: Duration::ZERO,
            },
            None => PreviousShutdown::None,
        };
    }
    let kind = |v: &Value| {
        v.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    // Only the last run counts (a record file normally holds exactly one).
    let run_start = records.iter().rposition(|r| kind(r) == "run").unwrap_or(0);
    let mut the_pid = None;
    let mut begun = false;
    let mut trigger = None;
    let mut open: Vec<OpenPhase> = Vec::new();
    // Ids are never reused within a run: an id seen ending stays ended, whatever a (stale)
    // checkpoint after it says.
    let mut ended: Vec<u64> = Vec::new();
    let mut last_ended: Option<OpenPhase> = None;
    let mut last = Duration::ZERO;
    let mut escalated: Option<(u32, i32)> = None;
    let mut exited = false;
    let mut stuck: Option<(Option<String>, String, Option<StuckFinding>)> = None;
    let mut heartbeat = false;
    // The last panic recorded, with the phase open then (unwinding closes spans after it),
    // and whether the run ended with it (an exit note says the process was unwinding, or
    // nothing came after it).
    let mut panicked: Option<(PanicRecord, Option<String>)> = None;
    let mut ended_in_panic = false;
    for r in &records[run_start..] {
        // Anything after the panic (an exit note says how) means the run went on; but not a
        // heartbeat, which the watchdog thread stamps and appends on its own and which can
        // land after the exit note it raced with, nor the startup thread's note that the
        // previous verdict was logged.
        let aside = kind(r) == "heartbeat"
            || r.get("note").and_then(Value::as_str) == Some(unconfirmed::LOGGED_NOTE);
        if !aside {
            ended_in_panic = false;
        }
        the_pid = pid(r).or(the_pid);
        if let Some(t) = offset(r) {
            last = last.max(t);
        }
        let read_trigger = |r: &Value| {
            r.get("trigger")
                .and_then(|t| serde_json::from_value::<TriggerInfo>(t.clone()).ok())
        };
        match kind(r).as_str() {
            "panic" => {
                let phase = open.last().map(|(_, n, _)| n.clone());
                panicked = Some((PanicRecord::from_value(r), phase));
                ended_in_panic = true;
            }
            "begin" => {
                begun = true;
                trigger = read_trigger(r);
            }
            "checkpoint" if r.get("begun").and_then(Value::as_bool) == Some(true) => {
                begun = true;
                trigger = trigger.or_else(|| read_trigger(r));
                let listed = r.get("open").and_then(Value::as_array);
                open = listed
                    .into_iter()
                    .flatten()
                    .filter_map(open_phase)
                    .filter(|(id, _, _)| !ended.contains(id))
                    .collect();
                let restated = r.get("last_ended").and_then(open_phase);
                last_ended = later(last_ended, restated);
            }
            "complete" => {
                let total = r
                    .get("total_s")
                    .and_then(Value::as_f64)
                    .and_then(|t| Duration::try_from_secs_f64(t).ok())
                    .unwrap_or(last);
                return PreviousShutdown::Clean {
                    pid: the_pid,
                    total,
                };
            }
            "note" => match r.get("note").and_then(Value::as_str) {
                Some("escalated") => {
                    let v = r.get("value");
                    let field = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_i64);
                    let count = field("count")
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(0);
                    let code = field("exit_code")
                        .and_then(|c| i32::try_from(c).ok())
                        .unwrap_or(0);
                    escalated = Some((count, code));
                }
                Some("exit") => {
                    exited = true;
                    let unwinding = r.get("value").and_then(|v| v.get("panicking"));
                    ended_in_panic |= unwinding.and_then(Value::as_bool) == Some(true);
                }
                _ => {}
            },
            "heartbeat" => heartbeat = true,
            "stuck" => {
                let phase = r.get("phase").and_then(Value::as_str).map(str::to_owned);
                // The first finding's parts, when recorded: the summary is built from them.
                let first = r.get("first").and_then(finding_parts);
                let summary = match &first {
                    Some(f) => Some(f.summary()),
                    None => r.get("summary").and_then(Value::as_str).map(str::to_owned),
                };
                if let Some(summary) = summary {
                    stuck = Some((phase, cap_chars(&summary, 400), first));
                }
            }
            "phase_start" => {
                if let Some(p) = open_phase(r).filter(|(id, _, _)| !ended.contains(id)) {
                    // A checkpoint may have listed it already.
                    open.retain(|(i, _, _)| *i != p.0);
                    open.push(p);
                }
            }
            "phase_end" => {
                if let Some(mut p) = open_phase(r) {
                    if r.get("phase").is_none() {
                        // A terse line: the name is the one its start gave.
                        let started = open.iter().find(|(i, _, _)| *i == p.0);
                        p.1 = started.map_or(p.1, |(_, n, _)| n.clone());
                    }
                    open.retain(|(i, _, _)| *i != p.0);
                    ended.push(p.0);
                    last_ended = later(last_ended, Some(p));
                }
            }
            _ => {}
        }
    }
    let current = open.last();
    if let Some((p, phase)) = panicked.filter(|_| ended_in_panic) {
        return PreviousShutdown::Panicked {
            pid: the_pid,
            message: p.message,
            location: p.location,
            thread: p.thread,
            shutdown_begun: begun,
            phase,
        };
    }
    if let Some(reason) = torn {
        return PreviousShutdown::Unknown {
            pid: the_pid,
            reason,
            shutdown_begun: begun,
            phase: current.map(|(_, n, _)| n.clone()),
            last_record: last,
        };
    }
    if !begun {
        if exited {
            return PreviousShutdown::Exited { pid: the_pid };
        }
        return PreviousShutdown::NoShutdown { pid: the_pid };
    }
    if let Some((signal_count, exit_code)) = escalated {
        return PreviousShutdown::Escalated {
            pid: the_pid,
            phase: current.map(|(_, n, _)| n.clone()),
            signal_count,
            exit_code,
            last_record: last,
        };
    }
    PreviousShutdown::Killed {
        pid: the_pid,
        phase: current.map(|(_, n, _)| n.clone()),
        entered: current.and_then(|(_, _, t)| *t),
        last_record: last,
        open_phases: open.iter().map(|(_, n, _)| n.clone()).collect(),
        last_ended_at: last_ended.as_ref().and_then(|(_, _, t)| *t),
        last_ended: last_ended.map(|(_, n, _)| n),
        trigger,
        // A snapshot of a phase that ended since then says nothing about the kill.
        stuck_finding: stuck
            .as_ref()
            .filter(|(p, _, _)| p.is_none() || p.as_deref() == current.map(|(_, n, _)| n.as_str()))
            .and_then(|(_, _, f)| f.clone()),
        stuck: stuck
            .filter(|(p, _, _)| p.is_none() || p.as_deref() == current.map(|(_, n, _)| n.as_str()))
            .map(|(_, s, _)| s),
        heartbeat,
    }
}

#[cfg(test)]
mod tests;

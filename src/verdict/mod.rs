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
//! The verdict is a [`PreviousShutdown`]: `Clean`, `Killed`, `ExitedEarly`, `Panicked`,
//! `Escalated`, `NoShutdown`, `Unknown` (with an [`UnknownReason`]) and a few that log nothing.
//! It is never a guess: a record that cannot be judged says so, and a figure it cannot know
//! exactly (when the kill came) is given as the bounds it can vouch for. Read it yourself with
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
//!
//! # History
//!
//! Each stop is also kept as one [`StopSummary`] line in `history.jsonl` beside the flight
//! record (mode 0600, the last 100 stops): written at [`Forensics::finish`](crate::Forensics::finish)
//! by a run that finished, and by the next start for one that did not. Read it with
//! [`history()`]; at each start the signal helper warns, from it, when the supervisor's stop
//! timeout is below what recent stops took ([`stop_timeout_needed`]) and when a phase of the
//! last stop took more than three times its median. The `shutdown-forensics` command-line tool
//! (`cli/` in the repository) prints it as a table.
//
// For contributors: pure, no I/O here, so every verdict is tested on fixtures (`tests.rs`).
// In: the record's text (bounded by the reader in `record/flight_record.rs`). Out: a
// `PreviousShutdown` and its one log line. Read `parse_records` first.

use std::time::Duration;

use serde_json::Value;

use crate::context::trigger::TriggerInfo;
use crate::stuck::snapshot::StuckFinding;

pub(crate) mod advice;
mod event;
mod evidence;
pub(crate) use evidence::finding_parts as recorded_finding;
pub(crate) mod history;
mod message;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub(crate) mod summary;
pub(crate) mod unconfirmed;

pub use advice::{stop_timeout_needed, RECENT_STOPS};
pub use history::{history, HISTORY_FILE};
pub use summary::{PhaseTime, RecordedBy, StopSummary};

use evidence::{cap_chars, finding_parts, ExitNote, PanicRecord, Panics};
pub use evidence::{RecordedPanic, UnknownReason};

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
///     r#"{"kind":"heartbeat","t":89.95}"#, "\n", // then SIGKILL
/// );
/// let verdict = FlightRecord::parse(text);
/// assert!(matches!(verdict, PreviousShutdown::Killed { .. }));
/// // The next heartbeat was due a second later and never came: the kill is between the two.
/// assert_eq!(
///     verdict.message().as_deref(),
///     Some("Previous shutdown did not complete: pid 42 was killed during phase drain \
///           (entered +2.10s, last record +89.95s, killed between 87.85s and 88.85s into drain)"),
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
        /// The latest the kill can have come, from the shutdown origin: when the heartbeat
        /// after the last one was due (the watchdog appends one a second while the shutdown
        /// runs). `None` when the record cannot bound it (no heartbeat, or heartbeats that had
        /// stopped before the last record).
        killed_by: Option<Duration>,
    },
    /// The previous shutdown started, and the process then exited on its own without
    /// finishing it: an error returned from the shutdown path (a `?` on a failing close), a
    /// return or `std::process::exit` before [`Forensics::finish`](crate::Forensics::finish).
    /// Nobody killed it: its exit note says so.
    #[non_exhaustive]
    ExitedEarly {
        /// The previous process.
        pid: Option<u32>,
        /// The phase that was still open when it exited (the innermost), if any.
        phase: Option<String>,
        /// When that phase was entered, from the shutdown origin.
        entered: Option<Duration>,
        /// When it exited (its exit note), from the shutdown origin.
        exited_at: Option<Duration>,
        /// The phase that had ended last when it exited, if any.
        last_ended: Option<String>,
        /// When that phase ended, from the shutdown origin.
        last_ended_at: Option<Duration>,
        /// What started the shutdown, when recorded.
        trigger: Option<TriggerInfo>,
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
        /// A panic the run recorded and then outlived (caught, as tokio catches a task's, or
        /// ending only its own thread): mentioned, never blamed for the end.
        outlived_panic: Option<RecordedPanic>,
    },
    /// A panic ended the previous run: the unwinding dropped [`crate::Forensics`] (its exit
    /// note says it was panicking), an exit came from inside a panic hook, or the panic was
    /// the record's last word (an abort: `panic = "abort"`, a panic while panicking). The
    /// panic hook installed by [`ForensicsBuilder::install`](crate::ForensicsBuilder::install)
    /// recorded its message, place and thread; when another hook replaced it after install
    /// those are unknown, and the verdict says so. A panic the process outlived (caught, or
    /// confined to its thread) is not this.
    #[non_exhaustive]
    Panicked {
        /// The previous process.
        pid: Option<u32>,
        /// The panic's message (capped); empty when not recorded.
        message: String,
        /// Where it panicked: `file:line:column`.
        location: Option<String>,
        /// The name of the thread that panicked.
        thread: Option<String>,
        /// Whether a shutdown had begun.
        shutdown_begun: bool,
        /// The phase that was running, when one was.
        phase: Option<String>,
        /// Whether the crate's hook recorded the panic (message, place, thread). False when
        /// the hook was replaced after install, or turned off.
        recorded: bool,
        /// Not recorded because another hook replaced the crate's after install.
        hook_replaced: bool,
        /// The thread that ended the run unwound a panic the hook had not seen on it (one
        /// passed on with `resume_unwind` from another thread, as joining a panicked thread
        /// and re-raising does; or one missed after the hook was replaced): message, place and
        /// thread are those of the last panic recorded in the run, and the line says so.
        inferred: bool,
        /// The total teardown time when the shutdown had completed before the panic: the
        /// stop itself was clean, the process then panicked (e.g. writing its last report).
        completed: Option<Duration>,
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
            PreviousShutdown::ExitedEarly {
                pid,
                phase,
                exited_at,
                ..
            } => unknown(pid, true, phase, exited_at.unwrap_or_default()),
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

/// How long apart the watchdog's heartbeat lines are at most while a shutdown runs
/// (`timeline/watchdog.rs`): the kill came before the next one was due.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

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
    let mut last_heartbeat: Option<Duration> = None;
    let mut escalated: Option<(u32, i32)> = None;
    let mut completed: Option<Duration> = None;
    // The last exit note, with what was open then; whether it came after the shutdown began.
    let mut exit: Option<(ExitNote, Option<OpenPhase>, Option<OpenPhase>)> = None;
    let mut exited_before_begin = false;
    // The latest offset recorded after the last exit note.
    let mut alive_after_exit: Option<Duration> = None;
    let mut stuck: Option<(Option<String>, String, Option<StuckFinding>)> = None;
    let mut heartbeat = false;
    let mut panics = Panics::default();
    for r in &records[run_start..] {
        panics.line(r);
        the_pid = pid(r).or(the_pid);
        if let Some(t) = offset(r) {
            last = last.max(t);
            if exit.is_some() {
                alive_after_exit = alive_after_exit.max(Some(t));
            }
        }
        let read_trigger = |r: &Value| {
            r.get("trigger")
                .and_then(|t| serde_json::from_value::<TriggerInfo>(t.clone()).ok())
        };
        match kind(r).as_str() {
            "panic" => {
                let phase = open.last().map(|(_, n, _)| n.clone());
                panics.panic(PanicRecord::from_value(r), phase, completed);
            }
            "begin" => {
                begun = true;
                trigger = read_trigger(r);
            }
            // Phases that ran before the signal helper was installed started the clock; the
            // install stopped it: what came before is not a shutdown.
            "reset" => {
                begun = false;
                trigger = None;
                open.clear();
                last_ended = None;
                last = Duration::ZERO;
                stuck = None;
                heartbeat = false;
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
                // The first one counts; a panic after it is still looked for.
                completed = completed.or(Some(total));
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
                    let phase = open.last().map(|(_, n, _)| n.clone());
                    let note = ExitNote::from_value(r, offset(r), phase);
                    exited_before_begin = !begun;
                    alive_after_exit = None;
                    exit = Some((note, open.last().cloned(), last_ended.clone()));
                }
                _ => {}
            },
            "heartbeat" => {
                heartbeat = true;
                last_heartbeat = offset(r).max(last_heartbeat);
            }
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
                    if r.get("unwinding").and_then(Value::as_bool) == Some(true) {
                        panics.unwound(&p.1);
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
    let exit_note = exit.as_ref().map(|(n, _, _)| n);
    if let Some(fatal) = panics.fatal(exit_note, completed) {
        return PreviousShutdown::Panicked {
            pid: the_pid,
            message: fatal.panic.message,
            location: fatal.panic.location,
            thread: fatal.panic.thread,
            shutdown_begun: begun,
            phase: fatal.phase,
            recorded: fatal.recorded,
            hook_replaced: fatal.hook_replaced,
            inferred: fatal.inferred,
            completed: fatal.completed,
        };
    }
    if let Some(total) = completed {
        return PreviousShutdown::Clean {
            pid: the_pid,
            total,
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
        if exit.is_some() {
            return PreviousShutdown::Exited { pid: the_pid };
        }
        return PreviousShutdown::NoShutdown {
            pid: the_pid,
            outlived_panic: panics.outlived(),
        };
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
    // An exit after the shutdown began (one before it was a helper dropped early, and the run
    // went on; so was a drop after which the record shows the process alive for long).
    let went_on = |n: &ExitNote| {
        let after =
            n.at.unwrap_or_default()
                .saturating_add(evidence::ALIVE_AFTER_DROP);
        n.by_drop && alive_after_exit.is_some_and(|t| t > after)
    };
    let exit = exit.filter(|(n, _, _)| !exited_before_begin && !went_on(n));
    if let Some((note, open_then, _)) = exit.as_ref().filter(|(n, _, _)| n.finished == Some(true)) {
        // It said it had finished, and no `complete` line is here: that write failed.
        return PreviousShutdown::Unknown {
            pid: the_pid,
            reason: UnknownReason::CompletionLost,
            shutdown_begun: true,
            phase: open_then.as_ref().map(|(_, n, _)| n.clone()),
            last_record: note.at.unwrap_or(last),
        };
    }
    if let Some((note, open_then, ended_then)) = exit {
        return PreviousShutdown::ExitedEarly {
            pid: the_pid,
            phase: open_then.as_ref().map(|(_, n, _)| n.clone()),
            entered: open_then.and_then(|(_, _, t)| t),
            exited_at: note.at,
            last_ended_at: ended_then.as_ref().and_then(|(_, _, t)| *t),
            last_ended: ended_then.map(|(_, n, _)| n),
            trigger,
        };
    }
    // The next heartbeat was due a second after the last one; a record written after that
    // means the heartbeats had stopped (a full record drops them), and then nothing bounds it.
    let killed_by = last_heartbeat
        .map(|h| h.saturating_add(HEARTBEAT_EVERY))
        .filter(|due| last <= *due);
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
        killed_by,
    }
}

#[cfg(test)]
mod tests;

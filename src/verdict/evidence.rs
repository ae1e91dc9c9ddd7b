//! What a record shows beyond phases: a last line that cannot be read (torn by a full disk,
//! or too large for the reader's window), recorded panics and whether one ended the run, the
//! exit note, and a stuck snapshot's first finding in parts. Pure, like the parser.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::stuck::snapshot::StuckFinding;
use crate::sys::clock::{Offset, Secs};
use crate::sys::logfmt::Logfmt;

/// Why a flight record cannot tell whether the previous shutdown completed.
///
/// ```
/// use shutdown_forensics::FlightRecord;
/// use shutdown_forensics::verdict::{PreviousShutdown, UnknownReason};
///
/// // A full disk cut the last write short: whatever came after is lost.
/// let text = "{\"kind\":\"run\",\"pid\":7}\n{\"kind\":\"begin\",\"t\":0}\n{\"kind\":\"phase_e";
/// let verdict = FlightRecord::parse(text);
/// assert!(matches!(verdict, PreviousShutdown::Unknown { reason: UnknownReason::TornLine, .. }));
/// assert!(!verdict.is_clean());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnknownReason {
    /// The record ends in a line that is not whole: a write was cut short (a full disk, an
    /// I/O error, a power loss). Each line is one `write(2)` within one page of the file, so a
    /// `SIGKILL` does not do this to a line of up to 4 KiB (the kernel gives up on a killed
    /// process's write only between pages); a longer one it can cut.
    TornLine,
    /// The record's last line is larger than the 64 KiB the reader looks at (written by a
    /// version that did not cap its lines, or by another program).
    OversizedLine,
    /// The record holds bytes but no line the reader understands.
    Unreadable,
    /// The process said as it exited that its shutdown had finished, but the record has no
    /// line of that completion: its write failed (a full disk, an I/O error).
    CompletionLost,
}

impl fmt::Display for UnknownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TornLine => "ends in a torn line (a write cut short: full disk, I/O error, or a kill during a write)",
            Self::OversizedLine => "ends in a line larger than the 64 KiB read window",
            Self::Unreadable => "holds no readable line",
            Self::CompletionLost => "has an exit note saying the shutdown had finished but no line of that completion (its write failed: full disk or I/O error)",
        })
    }
}

/// The reason the text cannot be judged to the end, when it cannot: its last non-blank line
/// is not a whole JSON object.
pub(crate) fn unreadable_end(text: &str) -> Option<UnknownReason> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    match serde_json::from_str::<Value>(last) {
        Ok(v) if v.is_object() => None,
        _ => Some(UnknownReason::TornLine),
    }
}

/// A panic the crate's hook recorded (message, place, thread), as a verdict mentions it.
///
/// ```
/// use shutdown_forensics::FlightRecord;
/// use shutdown_forensics::verdict::PreviousShutdown;
///
/// // A worker's panic, caught (as tokio catches a task's); the process outlived it, then was
/// // SIGKILLed without a SIGTERM: the panic is mentioned, not blamed.
/// let text = concat!(
///     r#"{"kind":"run","pid":7}"#, "\n",
///     r#"{"kind":"panic","seq":1,"message":"boom","location":"src/worker.rs:3:5","thread":"worker"}"#, "\n",
///     r#"{"kind":"note","note":"panic_outlived","value":{"through":1}}"#, "\n",
/// );
/// let PreviousShutdown::NoShutdown { outlived_panic: Some(p), .. } = FlightRecord::parse(text) else {
///     panic!("not NoShutdown");
/// };
/// assert_eq!(p.thread.as_deref(), Some("worker"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecordedPanic {
    /// The panic's message (capped).
    pub message: String,
    /// Where it panicked: `file:line:column`.
    pub location: Option<String>,
    /// The name of the thread that panicked.
    pub thread: Option<String>,
}

/// A `panic` record: what the panic hook wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PanicRecord {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
    pub(crate) thread: Option<String>,
    /// Its number in the process (the hook counts them); absent in older records.
    pub(crate) seq: Option<u64>,
}

impl PanicRecord {
    pub(crate) fn from_value(r: &Value) -> Self {
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        Self {
            message: text("message").unwrap_or_default(),
            location: text("location"),
            thread: text("thread"),
            seq: r.get("seq").and_then(Value::as_u64),
        }
    }
}

/// An `exit` note: the process left through `Forensics`' drop or `exit(3)`
/// (`signal_helper/exit_note.rs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ExitNote {
    /// Its offset from the shutdown origin, when one had begun.
    pub(crate) at: Option<Duration>,
    /// A panic was unwinding the thread that wrote it.
    pub(crate) panicking: bool,
    /// While panicking: the last panic the hook saw on that thread (`Some(None)`: none;
    /// `None`: an older note that does not say).
    pub(crate) panic_seq: Option<Option<u64>>,
    /// While panicking: whether the crate's hook was installed in the process.
    pub(crate) panic_hook: Option<bool>,
    /// The innermost phase open when it was written.
    pub(crate) phase: Option<String>,
    /// Whether the shutdown had finished then (`None`: an older note that does not say).
    pub(crate) finished: Option<bool>,
    /// Written by `Forensics`' drop (the process normally exits right after, but may go on),
    /// not by `exit(3)`.
    pub(crate) by_drop: bool,
}

/// A drop's exit note no longer says how the run ended once the record shows the process
/// alive this much later (a `Forensics` dropped early, the shutdown going on without it). The
/// exit itself can write lines for a while after it: spans closed as a runtime is dropped.
pub(crate) const ALIVE_AFTER_DROP: Duration = Duration::from_secs(2);

impl ExitNote {
    pub(crate) fn from_value(r: &Value, at: Option<Duration>, phase: Option<String>) -> Self {
        let v = r.get("value");
        let field = |k: &str| v.and_then(|v| v.get(k));
        Self {
            at,
            panicking: field("panicking").and_then(Value::as_bool) == Some(true),
            panic_seq: field("panic_seq").map(Value::as_u64),
            panic_hook: field("panic_hook").and_then(Value::as_bool),
            phase,
            finished: field("finished").and_then(Value::as_bool),
            by_drop: field("by").and_then(Value::as_str) != Some("exit"),
        }
    }
}

/// A panic as the parser saw it, with what the run was doing then.
#[derive(Debug)]
struct PanicSeen {
    panic: PanicRecord,
    /// The phase open at the panic line.
    phase: Option<String>,
    /// The total teardown time, when the shutdown had completed before it.
    completed: Option<Duration>,
    /// A line after it shows the run went on (not a heartbeat, not a phase closed by the
    /// unwinding, not a note of another thread's).
    went_on: bool,
}

/// The panic that ended a run.
#[derive(Debug)]
pub(crate) struct Fatal {
    pub(crate) panic: PanicRecord,
    pub(crate) phase: Option<String>,
    pub(crate) recorded: bool,
    pub(crate) hook_replaced: bool,
    pub(crate) inferred: bool,
    pub(crate) completed: Option<Duration>,
}

/// The run's panics, and the evidence of whether it outlived them.
#[derive(Debug, Default)]
pub(crate) struct Panics {
    seen: Vec<PanicSeen>,
    /// Every panic numbered up to this the process outlived (the witness's notes).
    outlived_through: u64,
    /// The innermost phase closed by the latest run of unwinding closes.
    unwound: Option<String>,
    unwinding: bool,
}

impl Panics {
    /// Every line of the run, in order, before the parser looks at its kind.
    pub(crate) fn line(&mut self, r: &Value) {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let note = r.get("note").and_then(Value::as_str);
        if note == Some("panic_outlived") {
            let through = r.get("value").and_then(|v| v.get("through"));
            let through = through.and_then(Value::as_u64).unwrap_or(0);
            self.outlived_through = self.outlived_through.max(through);
        }
        // Written by other threads whatever the panicking one does: the watchdog stamps a
        // heartbeat and can append it after the exit note it raced with; the startup thread
        // confirms the verdict it logged; the witness speaks for the panics it numbers.
        let aside = kind == "heartbeat"
            || kind == "panic"
            || matches!(
                note,
                Some(super::unconfirmed::LOGGED_NOTE | "panic_outlived")
            );
        let unwinding =
            kind == "phase_end" && r.get("unwinding").and_then(Value::as_bool) == Some(true);
        if !unwinding && !aside {
            self.unwinding = false;
            if let Some(last) = self.seen.last_mut() {
                last.went_on = true;
            }
        }
    }

    pub(crate) fn panic(
        &mut self,
        panic: PanicRecord,
        phase: Option<String>,
        completed: Option<Duration>,
    ) {
        self.seen.push(PanicSeen {
            panic,
            phase,
            completed,
            went_on: false,
        });
    }

    /// A phase closed by a panic unwinding its thread (the first of a run of them is the
    /// innermost).
    pub(crate) fn unwound(&mut self, phase: &str) {
        if !self.unwinding {
            self.unwound = Some(phase.to_owned());
            self.unwinding = true;
        }
    }

    /// The panic that ended the run, if one did: the one a panicking exit note names (or, when
    /// the hook did not record it, a panic of unknown message), else the last panic when
    /// nothing after it shows the process outlived it (an abort leaves nothing after it).
    pub(crate) fn fatal(
        &self,
        exit: Option<&ExitNote>,
        completed: Option<Duration>,
    ) -> Option<Fatal> {
        let of = |p: &PanicSeen, inferred: bool| Fatal {
            panic: p.panic.clone(),
            phase: p.phase.clone(),
            recorded: true,
            hook_replaced: false,
            inferred,
            completed: p.completed,
        };
        if let Some(exit) = exit.filter(|e| e.panicking) {
            let unrecorded = |hook_replaced| Fatal {
                panic: PanicRecord::default(),
                phase: exit.phase.clone().or_else(|| self.unwound.clone()),
                recorded: false,
                hook_replaced,
                inferred: false,
                completed,
            };
            return Some(match exit.panic_seq {
                Some(Some(seq)) => {
                    let named = self.seen.iter().rev().find(|p| p.panic.seq == Some(seq));
                    named.map_or_else(|| unrecorded(false), |p| of(p, false))
                }
                // The hook saw no panic on the unwinding thread.
                Some(None) => match (exit.panic_hook, self.seen.last()) {
                    (Some(false), _) => unrecorded(false),
                    // One recorded on another thread: likely passed on (`resume_unwind`).
                    (_, Some(p)) => of(p, true),
                    // None recorded in the whole run although the hook was installed.
                    (_, None) => unrecorded(true),
                },
                // An older note that does not say: the last panic recorded, as before.
                None => self
                    .seen
                    .last()
                    .map_or_else(|| unrecorded(false), |p| of(p, false)),
            });
        }
        let last = self.seen.last()?;
        let outlived = last.panic.seq.is_some_and(|s| s <= self.outlived_through);
        (!last.went_on && !outlived).then(|| of(last, false))
    }

    /// The last panic, when it did not end the run: mentioned, never blamed.
    pub(crate) fn outlived(&self) -> Option<RecordedPanic> {
        self.seen.last().map(|p| RecordedPanic {
            message: p.panic.message.clone(),
            location: p.panic.location.clone(),
            thread: p.panic.thread.clone(),
        })
    }
}

/// `during phase drain` / `during its shutdown, before any phase` / `` (no shutdown).
fn during(begun: bool, phase: Option<&str>) -> String {
    match (begun, phase) {
        (_, Some(p)) => format!(" during phase {}", Logfmt(p)),
        (true, None) => " during its shutdown".to_owned(),
        (false, None) => String::new(),
    }
}

pub(crate) fn unknown_message(
    pid: &str,
    reason: UnknownReason,
    begun: bool,
    phase: Option<&str>,
    last_record: Duration,
) -> String {
    let state = if begun {
        format!(
            "had begun a shutdown{} (last record {})",
            during(true, phase),
            Offset(last_record)
        )
    } else {
        "had not begun a shutdown".to_owned()
    };
    format!(
        "Previous shutdown may not have completed: pid {pid} {state}, then its flight record \
         {reason}; whether it completed is unknown"
    )
}

/// What the `Panicked` line says, from the verdict's fields.
pub(crate) struct PanicLine<'a> {
    pub(crate) pid: &'a str,
    pub(crate) begun: bool,
    pub(crate) phase: Option<&'a str>,
    pub(crate) message: &'a str,
    pub(crate) location: Option<&'a str>,
    pub(crate) thread: Option<&'a str>,
    pub(crate) recorded: bool,
    pub(crate) hook_replaced: bool,
    pub(crate) inferred: bool,
    pub(crate) completed: Option<Duration>,
}

pub(crate) fn panic_message(p: &PanicLine<'_>) -> String {
    let at = p
        .location
        .map_or_else(String::new, |l| format!(" at {}", Logfmt(l)));
    let on = p
        .thread
        .map_or_else(String::new, |t| format!(" on thread {}", Logfmt(t)));
    let what = if p.recorded && p.inferred {
        format!(
            "{} (the last panic recorded: the thread that ended the run unwound one it had not \
             recorded itself, passed on from another thread or missed by a replaced hook)",
            Logfmt(p.message)
        )
    } else if p.recorded {
        format!("{}", Logfmt(p.message))
    } else if p.hook_replaced {
        "message unknown: the panic hook was replaced after install".to_owned()
    } else {
        "message unknown: the crate's panic hook did not record it (turned off, or its line is \
         not in the record)"
            .to_owned()
    };
    match p.completed {
        // The stop itself was clean: say so first, then what came after it.
        Some(total) => format!(
            "Previous run ended in a panic: the shutdown completed (total teardown {}), then \
             pid {} panicked{at}{on}: {what}",
            Secs(total),
            p.pid
        ),
        None => {
            let verb = if p.begun {
                "Previous shutdown did not complete"
            } else {
                "Previous run ended in a panic"
            };
            format!(
                "{verb}: pid {} panicked{}{at}{on}: {what}",
                p.pid,
                during(p.begun, p.phase)
            )
        }
    }
}

/// The first `max` characters of `s`.
pub(super) fn cap_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A stuck line's `first` object as parts, every text capped (the record is the crate's own
/// file, but a verdict never trusts its sizes).
pub(crate) fn finding_parts(v: &Value) -> Option<StuckFinding> {
    let mut f: StuckFinding = serde_json::from_value(v.clone()).ok()?;
    let cap = |s: &mut Option<String>| {
        if let Some(t) = s {
            *t = cap_chars(t, 400);
        }
    };
    f.text = cap_chars(&f.text, 400);
    cap(&mut f.span);
    cap(&mut f.peer);
    cap(&mut f.thread);
    cap(&mut f.syscall);
    f.path.truncate(8);
    for p in &mut f.path {
        *p = cap_chars(p, 100);
    }
    Some(f)
}

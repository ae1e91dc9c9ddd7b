//! What a record shows beyond phases: a last line that cannot be read (torn by a full disk,
//! or too large for the reader's window), a recorded panic, and a stuck snapshot's first
//! finding in parts. Pure, like the parser.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::stuck::snapshot::StuckFinding;
use crate::sys::clock::Offset;
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
    /// I/O error, a power loss). Each line is one `write(2)`, so a `SIGKILL` does not do this.
    TornLine,
    /// The record's last line is larger than the 64 KiB the reader looks at (written by a
    /// version that did not cap its lines, or by another program).
    OversizedLine,
    /// The record holds bytes but no line the reader understands.
    Unreadable,
}

impl fmt::Display for UnknownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TornLine => "ends in a torn line (a write cut short: full disk, I/O error, or a kill during a write)",
            Self::OversizedLine => "ends in a line larger than the 64 KiB read window",
            Self::Unreadable => "holds no readable line",
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

/// A `panic` record: what the panic hook wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PanicRecord {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
    pub(crate) thread: Option<String>,
}

impl PanicRecord {
    pub(crate) fn from_value(r: &Value) -> Self {
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        Self {
            message: text("message").unwrap_or_default(),
            location: text("location"),
            thread: text("thread"),
        }
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

pub(crate) fn panic_message(
    pid: &str,
    begun: bool,
    phase: Option<&str>,
    message: &str,
    location: Option<&str>,
    thread: Option<&str>,
) -> String {
    let at = location.map_or_else(String::new, |l| format!(" at {}", Logfmt(l)));
    let on = thread.map_or_else(String::new, |t| format!(" on thread {}", Logfmt(t)));
    let verb = if begun {
        "Previous shutdown did not complete"
    } else {
        "Previous run ended in a panic"
    };
    format!(
        "{verb}: pid {pid} panicked{}{at}{on}: {}",
        during(begun, phase),
        Logfmt(message)
    )
}

/// The first `max` characters of `s`.
pub(super) fn cap_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A stuck line's `first` object as parts, every text capped (the record is the crate's own
/// file, but a verdict never trusts its sizes).
pub(super) fn finding_parts(v: &Value) -> Option<StuckFinding> {
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

//! The one line each verdict logs (users grep these: keep the first words stable). Every
//! figure in it is read from the record; what the record cannot tell exactly (when a kill
//! came) is given as the bounds it can vouch for.

use std::fmt;
use std::time::Duration;

use crate::sys::clock::Offset;
use crate::sys::logfmt::Logfmt;
use crate::verdict::evidence::{self, PanicLine, RecordedPanic};
use crate::verdict::PreviousShutdown;

pub(crate) struct Pid(pub(crate) Option<u32>);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("?"),
        }
    }
}

/// A duration into a phase: `0.60s`.
fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl PreviousShutdown {
    /// The warning to log, or `None` when the previous stop was clean (or there was none).
    #[must_use]
    pub fn message(&self) -> Option<String> {
        match self {
            Self::None | Self::Clean { .. } | Self::Exited { .. } | Self::StillRunning { .. } => {
                None
            }
            Self::Escalated {
                pid,
                phase,
                signal_count,
                exit_code,
                last_record,
            } => {
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
                killed_by,
                ..
            } => {
                let stuck = match stuck {
                    Some(s) => format!("; stuck in {s}"),
                    None => String::new(),
                };
                // How far into the phase the kill came: after the last record, and before the
                // heartbeat that was due next (when the record has them).
                let into = match (phase, entered) {
                    (Some(p), Some(e)) => {
                        let from = secs(last_record.saturating_sub(*e));
                        match killed_by {
                            Some(by) => format!(
                                ", killed between {from} and {} into {}",
                                secs(by.saturating_sub(*e)),
                                Logfmt(p)
                            ),
                            None => format!(", killed {from} or later into {}", Logfmt(p)),
                        }
                    }
                    _ => String::new(),
                };
                let during = match (phase, entered, last_ended) {
                    (Some(p), Some(e), _) => {
                        format!("during phase {} (entered {}, ", Logfmt(p), Offset(*e))
                    }
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
            Self::ExitedEarly {
                pid,
                phase,
                entered,
                exited_at,
                last_ended,
                last_ended_at,
                ..
            } => Some(exited_early(
                Pid(*pid),
                phase.as_deref(),
                *entered,
                *exited_at,
                last_ended.as_deref(),
                *last_ended_at,
            )),
            Self::Panicked {
                pid,
                message,
                location,
                thread,
                shutdown_begun,
                phase,
                recorded,
                hook_replaced,
                inferred,
                completed,
            } => Some(evidence::panic_message(&PanicLine {
                pid: &Pid(*pid).to_string(),
                begun: *shutdown_begun,
                phase: phase.as_deref(),
                message,
                location: location.as_deref(),
                thread: thread.as_deref(),
                recorded: *recorded,
                hook_replaced: *hook_replaced,
                inferred: *inferred,
                completed: *completed,
            })),
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
            Self::NoShutdown {
                pid,
                outlived_panic,
            } => {
                let outlived = outlived_panic.as_ref().map_or_else(String::new, outlived);
                Some(format!(
                    "Previous run (pid {}) ended without starting a shutdown (crash, OOM kill or \
                     power loss){outlived}",
                    Pid(*pid)
                ))
            }
        }
    }
}

/// `; it had outlived a panic at src/worker.rs:3:5 on thread worker: "boom" (caught, or
/// confined to its thread; not what ended it)`.
fn outlived(p: &RecordedPanic) -> String {
    let at = p
        .location
        .as_deref()
        .map_or_else(String::new, |l| format!(" at {}", Logfmt(l)));
    let on = p
        .thread
        .as_deref()
        .map_or_else(String::new, |t| format!(" on thread {}", Logfmt(t)));
    format!(
        "; it had outlived a panic{at}{on}: {} (caught, or confined to its thread; not what ended it)",
        Logfmt(&p.message)
    )
}

/// `Previous shutdown did not complete: pid 42 exited during phase drain without finishing
/// (entered +2.10s, exited +2.50s; finish() was not called)`.
fn exited_early(
    pid: Pid,
    phase: Option<&str>,
    entered: Option<Duration>,
    exited_at: Option<Duration>,
    last_ended: Option<&str>,
    last_ended_at: Option<Duration>,
) -> String {
    let exited = exited_at.map_or_else(String::new, |t| format!("exited {}; ", Offset(t)));
    let (when, facts) = match (phase, last_ended) {
        (Some(p), _) => (
            format!("during phase {}", Logfmt(p)),
            entered.map_or_else(String::new, |e| format!("entered {}, ", Offset(e))),
        ),
        (None, Some(p)) => (
            format!("after phase {} ended", Logfmt(p)),
            last_ended_at.map_or_else(String::new, |e| format!("ended {}, ", Offset(e))),
        ),
        (None, None) => ("before any phase started".to_owned(), String::new()),
    };
    format!(
        "Previous shutdown did not complete: pid {pid} exited {when} without finishing \
         ({facts}{exited}finish() was not called: an error returned from the shutdown path, an \
         early return or an exit)"
    )
}

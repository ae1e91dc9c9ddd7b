//! The verdict's one log event: its message, and its facts as fields of their own for a log
//! pipeline (JSON, journald): the previous pid, the verdict's kind, the last record's offset,
//! the phase, and where a killed stop was stuck.

use std::time::Duration;

use super::PreviousShutdown;
use crate::sys::logfmt::TextField;
use crate::sys::target::PHASE_TARGET;

impl PreviousShutdown {
    /// The verdict's name, as the log event's `verdict` field carries it: `none`, `clean`,
    /// `killed`, `exited_early`, `escalated`, `still_running`, `exited`, `no_shutdown`,
    /// `panicked` or `unknown`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Clean { .. } => "clean",
            Self::Killed { .. } => "killed",
            Self::ExitedEarly { .. } => "exited_early",
            Self::Escalated { .. } => "escalated",
            Self::StillRunning { .. } => "still_running",
            Self::Exited { .. } => "exited",
            Self::NoShutdown { .. } => "no_shutdown",
            Self::Panicked { .. } => "panicked",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The previous process's pid, when the record names it.
    fn pid(&self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::StillRunning { pid } => Some(*pid),
            Self::Clean { pid, .. }
            | Self::Killed { pid, .. }
            | Self::ExitedEarly { pid, .. }
            | Self::Escalated { pid, .. }
            | Self::Exited { pid, .. }
            | Self::NoShutdown { pid, .. }
            | Self::Panicked { pid, .. }
            | Self::Unknown { pid, .. } => *pid,
        }
    }

    /// The phase that was running at the end, when one was.
    fn phase(&self) -> Option<&str> {
        match self {
            Self::Killed { phase, .. }
            | Self::ExitedEarly { phase, .. }
            | Self::Escalated { phase, .. }
            | Self::Panicked { phase, .. }
            | Self::Unknown { phase, .. } => phase.as_deref(),
            _ => None,
        }
    }

    /// The offset of the last record written, where the verdict rests on it.
    fn last_record(&self) -> Option<Duration> {
        match self {
            Self::Killed { last_record, .. }
            | Self::Escalated { last_record, .. }
            | Self::Unknown { last_record, .. } => Some(*last_record),
            _ => None,
        }
    }

    /// Logs [`PreviousShutdown::message`] as a WARN event (target `shutdown`) when there is
    /// one, with its facts as fields of their own: `previous_phase`, `previous_pid`, `verdict`
    /// ([`Self::kind`]), `last_record_s`, and where a killed stop was stuck, `stuck_span` and
    /// `stuck_peer` (each only when known). Call it after the subscriber is installed.
    pub fn log(&self) {
        let Some(message) = self.message() else {
            return;
        };
        let stuck = match self {
            Self::Killed { stuck_finding, .. } => stuck_finding.as_ref(),
            _ => None,
        };
        let span = stuck.and_then(|f| f.span.as_deref()).map(TextField::new);
        let peer = stuck.and_then(|f| f.peer.as_deref()).map(TextField::new);
        tracing::warn!(
            target: PHASE_TARGET,
            previous_phase = self.phase(),
            previous_pid = self.pid(),
            verdict = tracing::field::display(self.kind()),
            last_record_s = self.last_record().map(crate::sys::clock::secs),
            stuck_span = span.as_ref().map(TextField::value),
            stuck_peer = peer.as_ref().map(TextField::value),
            "{message}"
        );
    }
}

//! What started a shutdown: a signal (and its sender), a planned stop, or the app itself.

use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::context::signal::{signal_name, SignalSender};
use crate::sys::clock::{unix_secs, wall_at};
use crate::sys::logfmt::Logfmt;

/// What started the shutdown, handed to [`ShutdownHandle::begin_with`](crate::ShutdownHandle::begin_with).
///
/// `at` becomes the shutdown's origin: every `+X.XXs` offset counts from it, so pass the
/// instant the signal was received, not the instant the helper got around to calling.
///
/// ```
/// use shutdown_forensics::context::ShutdownTrigger;
///
/// let trigger = ShutdownTrigger::now()
///     .with_signal(libc::SIGTERM)
///     .with_correlation_id("deploy-42");
/// assert_eq!(trigger.signal_name.as_deref(), Some("SIGTERM"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ShutdownTrigger {
    /// When the shutdown started (signal receipt); the origin of all offsets.
    pub at: Instant,
    /// The wall-clock time matching `at`.
    pub wall: SystemTime,
    /// The signal number, when a signal started it.
    pub signal: Option<i32>,
    /// The signal's name (`SIGTERM`), when a signal started it.
    pub signal_name: Option<String>,
    /// Who sent the signal, when the kernel told us.
    pub sender: Option<SignalSender>,
    /// True when a planned-stop marker (deploy, takeover) announced this stop.
    pub planned: bool,
    /// An id that ties this stop to a deploy or ticket, shown in the report and record.
    pub correlation_id: Option<String>,
}

impl ShutdownTrigger {
    /// A trigger at `at`; the wall time is derived from the current clocks.
    #[must_use]
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            wall: wall_at(at),
            signal: None,
            signal_name: None,
            sender: None,
            planned: false,
            correlation_id: None,
        }
    }

    /// A trigger at the current instant.
    #[must_use]
    pub fn now() -> Self {
        Self::new(Instant::now())
    }

    /// Sets the wall-clock time explicitly (default: derived from `at`).
    #[must_use]
    pub fn with_wall(mut self, wall: SystemTime) -> Self {
        self.wall = wall;
        self
    }

    /// Sets the signal number and its name (default: none).
    #[must_use]
    pub fn with_signal(mut self, signal: i32) -> Self {
        self.signal = Some(signal);
        self.signal_name = Some(signal_name(signal).into_owned());
        self
    }

    /// Sets the signal's sender (default: unknown).
    #[must_use]
    pub fn with_sender(mut self, sender: SignalSender) -> Self {
        self.sender = Some(sender);
        self
    }

    /// Marks the stop as planned (default: `false`).
    #[must_use]
    pub fn with_planned(mut self, planned: bool) -> Self {
        self.planned = planned;
        self
    }

    /// Sets the correlation id (default: none).
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The serializable part of this trigger, as it appears in reports and flight records.
    #[must_use]
    pub fn info(&self) -> TriggerInfo {
        TriggerInfo {
            wall_unix_s: unix_secs(self.wall),
            signal: self.signal,
            signal_name: self.signal_name.clone(),
            sender: self.sender.clone(),
            planned: self.planned,
            correlation_id: self.correlation_id.clone(),
        }
    }
}

/// A [`ShutdownTrigger`] as recorded: everything but the monotonic instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TriggerInfo {
    /// Wall-clock time of the trigger, Unix seconds.
    pub wall_unix_s: f64,
    /// The signal number, when a signal started the shutdown.
    pub signal: Option<i32>,
    /// The signal's name.
    pub signal_name: Option<String>,
    /// Who sent the signal, when known.
    pub sender: Option<SignalSender>,
    /// True for a planned stop.
    pub planned: bool,
    /// The correlation id, when set.
    pub correlation_id: Option<String>,
}

impl TriggerInfo {
    /// A short human description: `SIGTERM from pid 1 (systemd)`, `planned stop`, `begin()`.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut out = match (&self.signal_name, &self.sender) {
            // Escaped too: a trigger read back from a report file says whatever that file says.
            (Some(sig), Some(s)) if s.pid != 0 => format!(
                "{} from pid {} ({})",
                Logfmt(sig),
                s.pid,
                Logfmt(s.display_name())
            ),
            (Some(sig), Some(s)) => {
                format!("{} from {}", Logfmt(sig), Logfmt(s.display_name()))
            }
            (Some(sig), None) => Logfmt(sig).to_string(),
            (None, _) => "begin()".to_owned(),
        };
        if self.planned {
            out.push_str(", planned");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger read back from a (tampered) report cannot forge a line through `describe`.
    #[test]
    fn describe_escapes_what_a_report_file_says() {
        let info: TriggerInfo = serde_json::from_str(
            r#"{"wall_unix_s":1.0,"signal":15,"signal_name":"SIGTERM\nERROR forged",
                "sender":{"pid":7,"uid":0,"cause":"kill","name":"a\nb"},
                "planned":false,"correlation_id":null}"#,
        )
        .unwrap();
        let text = info.describe();
        assert!(!text.contains('\n'), "{text:?}");
        assert_eq!(text, r#""SIGTERM\nERROR forged" from pid 7 ("a\nb")"#);
        let outside = TriggerInfo {
            sender: info.sender.clone().map(|mut s| {
                s.pid = 0;
                s.name = None;
                s
            }),
            ..info.clone()
        };
        assert_eq!(
            outside.describe(),
            r#""SIGTERM\nERROR forged" from outside-pidns"#
        );
        let no_sender = TriggerInfo {
            sender: None,
            ..info
        };
        assert_eq!(no_sender.describe(), r#""SIGTERM\nERROR forged""#);
    }
}

//! A callback on phase changes, for progress reporting (systemd `STATUS=`, `EXTEND_TIMEOUT_USEC=`).

use std::time::Duration;

/// What happened, as told to a hook installed with
/// [`ShutdownLayerBuilder::on_phase_change`](crate::ShutdownLayerBuilder::on_phase_change).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PhaseEvent {
    /// A phase started (its first entry); the phase label.
    Started(String),
    /// A phase closed after running for `duration`.
    Ended {
        /// The phase label.
        phase: String,
        /// Its wall time from open to close.
        duration: Duration,
    },
    /// Periodic tick while phases run (every progress interval).
    Progress,
    /// The shutdown completed.
    Complete,
}

/// A phase change and where the shutdown stands. Hooks are called outside every lock of this
/// crate, from the thread that caused the change or from the watchdog thread.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PhaseChange {
    /// What happened.
    pub event: PhaseEvent,
    /// Time since the shutdown origin.
    pub elapsed: Duration,
    /// Phases open now, with how long each has run.
    pub open: Vec<(String, Duration)>,
    /// Time left in the whole-shutdown budget, when one is set.
    pub remaining: Option<Duration>,
}

impl PhaseChange {
    pub(crate) fn new(
        event: PhaseEvent,
        elapsed: Duration,
        open: Vec<(String, Duration)>,
        remaining: Option<Duration>,
    ) -> Self {
        Self {
            event,
            elapsed,
            open,
            remaining,
        }
    }
}

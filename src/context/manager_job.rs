//! What the service manager was doing for our unit when its stop signal came: a routine stop
//! job, or none (`systemctl kill`, a signal it only relayed).

use serde::{Deserialize, Serialize};

/// What systemd had queued for our unit when its signal came, asked after the signal's
/// handling (off the signal path, bounded): the difference between a routine stop and an
/// unexpected one, which the sender alone cannot tell (`systemctl stop` and `systemctl kill`
/// both send `SIGTERM` from pid 1 with `kill(2)`, and once our `STOPPING=1` arrived the unit is
/// `deactivating` either way: only the job queue tells them apart).
///
/// In [`ShutdownContext::manager_job`](crate::context::ShutdownContext::manager_job); the
/// `Shutdown context` line says `stop=supervisor stop_job=stop` (at INFO) for a stop job,
/// `stop=unexpected stop_job=none` (WARN) without one, and `stop_job=unknown` when the manager
/// could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ManagerJob {
    /// A job that stops the unit was running: `systemctl stop` (`job_type` `stop`), `systemctl
    /// restart` (`restart`), a dependency's stop or the machine's shutdown (`stop`).
    Stop {
        /// The job's type as `systemctl list-jobs` names it: `stop` or `restart`.
        job_type: String,
        /// The job's id.
        job_id: u32,
    },
    /// The manager answered and had no stop job for the unit: the signal was sent by
    /// `systemctl kill` (or relayed by the manager for someone else), not by a stop.
    None,
    /// The manager could not be asked or did not answer in time; `why` says what failed.
    Unknown {
        /// What failed: `timed out`, `non-zero exit`, `no systemctl`, ...
        why: String,
    },
}

impl ManagerJob {
    /// The `stop_job` value of the context line: the job's type, `none` or `unknown`.
    #[must_use]
    pub fn as_word(&self) -> &str {
        match self {
            Self::Stop { job_type, .. } => job_type,
            Self::None => "none",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// True for a stop job: a stop the manager was asked for.
    #[must_use]
    pub fn is_stop(&self) -> bool {
        matches!(self, Self::Stop { .. })
    }
}

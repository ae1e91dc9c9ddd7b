//! Does the running unit's `TimeoutStopSec` cover our shutdown budget?
//!
//! If it does not, systemd SIGKILLs the service in the middle of its graceful shutdown, and the
//! only trace is a truncated log. The check runs once at startup: find our unit from
//! `/proc/self/cgroup`, ask the manager that owns it, compare.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crate::sys::cgroup::{unit_from_cgroup, SystemdManager};

use super::systemctl::{self, Answer};

/// The headroom [`check_systemd_timing_alignment`] adds on top of the shutdown budget: 30 s.
pub const DEFAULT_STOP_HEADROOM: Duration = Duration::from_secs(30);

/// How long the `systemctl show` exchange may take, both managers together.
const SYSTEMCTL_DEADLINE: Duration = Duration::from_secs(2);

/// How the running unit's `TimeoutStopSec` compares with the shutdown budget.
///
/// Serialized with durations as seconds: `timeout_stop_s` (`null` for `infinity`),
/// `expected_min_s`, `budget_s`, `headroom_s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TimingAlignment {
    /// The unit, e.g. `gateway.service`.
    pub unit: String,
    /// The manager that answered for the unit.
    pub manager: SystemdManager,
    /// The unit's `TimeoutStopUSec`; [`Duration::MAX`] when it is `infinity`.
    #[serde(rename = "timeout_stop_s", serialize_with = "secs_or_null")]
    pub timeout_stop: Duration,
    /// The least `TimeoutStopSec` that covers the shutdown: `budget + headroom`.
    #[serde(rename = "expected_min_s", serialize_with = "secs")]
    pub expected_min: Duration,
    /// The shutdown budget the check was given.
    #[serde(rename = "budget_s", serialize_with = "secs")]
    pub budget: Duration,
    /// The headroom added to the budget.
    #[serde(rename = "headroom_s", serialize_with = "secs")]
    pub headroom: Duration,
    /// True when `timeout_stop` is strictly below `expected_min`: systemd would SIGKILL us
    /// before the shutdown budget runs out. Never true for `infinity`.
    pub mismatch: bool,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn secs_or_null<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if *d == Duration::MAX {
        s.serialize_none()
    } else {
        secs(d, s)
    }
}

impl TimingAlignment {
    /// Compares a unit's `TimeoutStopSec` with `budget + headroom`, e.g. for a unit queried some
    /// other way than [`check_systemd_timing_alignment_with`] does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shutdown_forensics::systemd::{SystemdManager, TimingAlignment};
    ///
    /// let s = Duration::from_secs;
    /// let a = TimingAlignment::new("gw.service", SystemdManager::System, s(90), s(180), s(30));
    /// assert!(a.mismatch);
    /// assert_eq!(a.expected_min, s(210));
    /// ```
    #[must_use]
    pub fn new(
        unit: impl Into<String>,
        manager: SystemdManager,
        timeout_stop: Duration,
        budget: Duration,
        headroom: Duration,
    ) -> Self {
        let expected_min = budget.saturating_add(headroom);
        Self {
            unit: unit.into(),
            manager,
            timeout_stop,
            expected_min,
            budget,
            headroom,
            mismatch: timeout_stop != Duration::MAX && timeout_stop < expected_min,
        }
    }

    /// The `Stale systemd unit detected: …` line with the fix to apply, when `mismatch`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shutdown_forensics::systemd::{SystemdManager, TimingAlignment};
    ///
    /// let s = Duration::from_secs;
    /// let a = TimingAlignment::new("gw.service", SystemdManager::User, s(90), s(180), s(30));
    /// let line = a.stale_unit_warning().unwrap();
    /// assert!(line.starts_with(
    ///     "Stale systemd unit detected: gw.service has TimeoutStopSec=90s \
    ///      but the shutdown budget needs >=210s"
    /// ));
    /// assert!(line.contains("`systemctl --user edit gw.service`"));
    /// ```
    #[must_use]
    pub fn stale_unit_warning(&self) -> Option<String> {
        if !self.mismatch {
            return None;
        }
        let ctl = match self.manager {
            SystemdManager::System => "systemctl",
            SystemdManager::User => "systemctl --user",
        };
        let needed = self.needed_secs();
        let unit = shell_word(&self.unit);
        let mut line = String::with_capacity(320);
        let _ = write!(
            line,
            "Stale systemd unit detected: {} has TimeoutStopSec={} but the shutdown budget needs \
             >={needed}s ({} budget + {} headroom), so systemd would SIGKILL it mid-shutdown; \
             fix: run `{ctl} edit {unit}`, add the lines \"[Service]\" and \
             \"TimeoutStopSec={needed}s\", save, then run `{ctl} daemon-reload`",
            self.unit,
            seconds(self.timeout_stop),
            seconds(self.budget),
            seconds(self.headroom),
        );
        Some(line)
    }

    /// Emits [`stale_unit_warning`](Self::stale_unit_warning) as a `tracing` WARN event with the
    /// fields `unit`, `timeout_stop_s`, `needed_s` and `manager` (`system` or `user`), when
    /// `mismatch`. Returns whether it did.
    pub fn warn_if_stale(&self) -> bool {
        let Some(message) = self.stale_unit_warning() else {
            return false;
        };
        tracing::warn!(
            target: crate::sys::target::PHASE_TARGET,
            unit = %self.unit,
            timeout_stop_s = self.timeout_stop.as_secs_f64(),
            needed_s = self.needed_secs(),
            manager = manager_name(self.manager),
            "{message}"
        );
        true
    }

    /// `expected_min` rounded up to whole seconds, the value to put in the unit.
    fn needed_secs(&self) -> u64 {
        let d = self.expected_min;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

fn manager_name(manager: SystemdManager) -> &'static str {
    match manager {
        SystemdManager::System => "system",
        SystemdManager::User => "user",
    }
}

/// `90s`, `1.5s`: seconds, without trailing zeros.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let text = format!("{:.3}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A unit name as one shell word: valid names hold only `[A-Za-z0-9:_.@\-]` and `\` escapes,
/// and only the backslash needs quoting.
fn shell_word(unit: &str) -> String {
    if unit.contains('\\') {
        format!("'{unit}'")
    } else {
        unit.to_owned()
    }
}

/// systemd's `unit_name_is_valid()` character set and length. Anything else did not come from
/// systemd, and is not passed on to `systemctl` or into a log line.
pub(crate) fn is_valid_unit_name(name: &str) -> bool {
    name.len() < 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b))
}

/// Checks that the running unit's `TimeoutStopSec` covers `drain_timeout` plus
/// [`DEFAULT_STOP_HEADROOM`].
///
/// Same as [`check_systemd_timing_alignment_with`]`(drain_timeout, DEFAULT_STOP_HEADROOM)`; see
/// there for what `None` means and why this blocks.
///
/// ```
/// use std::time::Duration;
///
/// // Outside systemd (no INVOCATION_ID) there is nothing to compare against.
/// if std::env::var_os("INVOCATION_ID").is_none() {
///     assert!(shutdown_forensics::systemd::check_systemd_timing_alignment(Duration::from_secs(180)).is_none());
/// }
/// ```
#[must_use]
pub fn check_systemd_timing_alignment(drain_timeout: Duration) -> Option<TimingAlignment> {
    check_systemd_timing_alignment_with(drain_timeout, DEFAULT_STOP_HEADROOM)
}

/// Checks that the running unit's `TimeoutStopSec` covers `budget + headroom`.
///
/// `None` when not running under systemd (no `INVOCATION_ID`) or when it cannot be told: no
/// `.service` in `/proc/self/cgroup` (a `.scope`, a container, a login session), no
/// `systemctl`, a manager that does not answer within 2 s, or a unit systemd does not know
/// (`LoadState=not-found`, whose `TimeoutStopUSec` is only the manager's default). The manager
/// that owns the cgroup (`systemctl --user` below `user@N.service`, else the system manager) is
/// asked first; the other only if the first cannot answer at all.
///
/// **This blocks** for up to 2 s while `systemctl` runs. From async code use
/// [`check_systemd_timing_alignment_async`] or `tokio::task::spawn_blocking`. Log the result
/// with [`TimingAlignment::warn_if_stale`].
#[must_use]
pub fn check_systemd_timing_alignment_with(
    budget: Duration,
    headroom: Duration,
) -> Option<TimingAlignment> {
    Probe::from_process().check(budget, headroom)
}

/// [`check_systemd_timing_alignment_with`] on a thread of its own, awaitable from any async
/// runtime without blocking it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use shutdown_forensics::systemd::{DEFAULT_STOP_HEADROOM, check_systemd_timing_alignment_async};
///
/// if let Some(alignment) =
///     check_systemd_timing_alignment_async(Duration::from_secs(180), DEFAULT_STOP_HEADROOM).await
/// {
///     alignment.warn_if_stale();
/// }
/// # });
/// ```
pub async fn check_systemd_timing_alignment_async(
    budget: Duration,
    headroom: Duration,
) -> Option<TimingAlignment> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shutdown-unit-check".into())
        .spawn(move || {
            let _ = tx.send(check_systemd_timing_alignment_with(budget, headroom));
        })
        .ok()?;
    rx.await.ok().flatten()
}

/// Everything the check reads from the process, so that tests can supply it instead.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// `$INVOCATION_ID`.
    pub(crate) invocation_id: Option<OsString>,
    /// The text of `/proc/self/cgroup`.
    pub(crate) cgroup: Option<String>,
    /// The program to run, `systemctl` (found on `PATH`).
    pub(crate) systemctl: OsString,
    /// How long both queries together may take.
    pub(crate) deadline: Duration,
}

impl Probe {
    pub(crate) fn from_process() -> Self {
        let mut buf = Vec::new();
        let cgroup = crate::sys::proc::ProcRoot::default()
            .read(None, "cgroup", &mut buf)
            .ok()
            .map(|()| String::from_utf8_lossy(&buf).into_owned());
        Self {
            invocation_id: std::env::var_os("INVOCATION_ID"),
            cgroup,
            systemctl: OsString::from("systemctl"),
            deadline: SYSTEMCTL_DEADLINE,
        }
    }

    pub(crate) fn check(&self, budget: Duration, headroom: Duration) -> Option<TimingAlignment> {
        if self.invocation_id.as_deref().is_none_or(OsStr::is_empty) {
            return None;
        }
        let Some(unit) = self.cgroup.as_deref().and_then(unit_from_cgroup) else {
            tracing::debug!(target: crate::sys::target::PHASE_TARGET, "systemd timing check skipped: no service unit in /proc/self/cgroup");
            return None;
        };
        if !is_valid_unit_name(&unit.name) {
            return None;
        }
        let deadline = Instant::now() + self.deadline;
        let other = match unit.manager {
            SystemdManager::System => SystemdManager::User,
            SystemdManager::User => SystemdManager::System,
        };
        let mut unknown = None;
        for manager in [unit.manager, other] {
            match systemctl::show(&self.systemctl, manager, &unit.name, deadline) {
                Answer::Loaded(timeout_stop) => {
                    return Some(TimingAlignment::new(
                        unit.name,
                        manager,
                        timeout_stop,
                        budget,
                        headroom,
                    ));
                }
                Answer::NotLoaded(state) => {
                    tracing::debug!(target: crate::sys::target::PHASE_TARGET, unit = %unit.name, load_state = %state, "systemd timing check skipped: unit not loaded");
                    return None;
                }
                Answer::Missing => {
                    tracing::debug!(target: crate::sys::target::PHASE_TARGET, "systemd timing check skipped: no systemctl");
                    return None;
                }
                Answer::Failed(why) => {
                    tracing::debug!(target: crate::sys::target::PHASE_TARGET, unit = %unit.name, manager = manager_name(manager), why, "systemctl show failed");
                    unknown = Some(why);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        // Under systemd, yet no manager could answer: say so rather than stay silent.
        if let Some(why) = unknown {
            tracing::warn!(target: crate::sys::target::PHASE_TARGET, unit = %unit.name, why, "systemd timing check unknown: {why}");
        }
        None
    }
}

#[cfg(test)]
mod tests;

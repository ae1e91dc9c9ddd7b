//! The shutdown context: who stopped us, captured from local `/proc` reads in microseconds.
//!
//! In: the signal and its sender, `/proc`, the environment, marker files. Out: a
//! [`ShutdownContext`] and its one logfmt line (`line.rs`). Read `capturer.rs` first: what is
//! read once at install and what at signal time (through `open_files.rs`).

mod capturer;
mod line;
mod open_files;
mod supervisor;

pub use capturer::ContextCapturer;
pub use supervisor::Supervisor;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::manager_job::ManagerJob;
use crate::context::markers::MarkerInfo;
use crate::context::signal::SignalSender;
use crate::sys::proc::ProcSummary;

/// What to capture beyond the defaults. `Default`: no markers, no command lines.
///
/// ```
/// use shutdown_forensics::context::ContextOptions;
/// let opts = ContextOptions::default().with_marker_dir("/var/lib/gateway");
/// assert!(!opts.include_cmdline);
/// ```
#[derive(Debug, Clone)]
pub struct ContextOptions {
    /// Directory holding the marker files. Default: `None` (markers are not looked for).
    pub marker_dir: Option<PathBuf>,
    /// File name of the takeover marker inside `marker_dir`. Default: `.takeover.json`.
    pub takeover_marker: String,
    /// File name of the planned-stop marker inside `marker_dir`. Default: `.planned-stop.json`.
    pub planned_stop_marker: String,
    /// Markers older than this (by their `written_at`) never name us. Default: 10 minutes.
    pub marker_max_age: Option<Duration>,
    /// Record command lines of ourselves, our parent and a tracer (truncated to 300
    /// characters). Default: `false`, because command lines can hold secrets.
    pub include_cmdline: bool,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            marker_dir: None,
            takeover_marker: ".takeover.json".to_owned(),
            planned_stop_marker: ".planned-stop.json".to_owned(),
            marker_max_age: Some(Duration::from_secs(600)),
            include_cmdline: false,
        }
    }
}

impl ContextOptions {
    /// Looks for marker files in `dir`. Default: no marker directory.
    #[must_use]
    pub fn with_marker_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.marker_dir = Some(dir.into());
        self
    }

    /// Sets both marker file names. Defaults: `.takeover.json` and `.planned-stop.json`.
    #[must_use]
    pub fn with_marker_names(
        mut self,
        takeover: impl Into<String>,
        planned_stop: impl Into<String>,
    ) -> Self {
        self.takeover_marker = takeover.into();
        self.planned_stop_marker = planned_stop.into();
        self
    }

    /// Markers older than `age` are stale; `None` accepts any age. Default: 10 minutes.
    #[must_use]
    pub fn with_marker_max_age(mut self, age: Option<Duration>) -> Self {
        self.marker_max_age = age;
        self
    }

    /// Records command lines (truncated to 300 characters). Default: `false`.
    #[must_use]
    pub fn with_cmdline(mut self, include: bool) -> Self {
        self.include_cmdline = include;
        self
    }
}

/// Everything known about a shutdown at the moment its signal arrived.
///
/// Built by [`ShutdownContext::capture`] from local `/proc` reads and the environment only: no
/// subprocess, no network, no lock shared with the async runtime. It never panics; facts that
/// cannot be had are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ShutdownContext {
    /// Wall-clock time of the capture, unix seconds.
    pub ts: f64,
    /// `CLOCK_MONOTONIC` seconds at the capture (comparable with other processes' stamps).
    pub ts_monotonic: f64,
    /// Signal name, `UNKNOWN` when none was given.
    pub signal: String,
    /// Signal number.
    pub signal_num: Option<i32>,
    /// Our pid.
    pub pid: u32,
    /// Our parent's pid.
    pub ppid: u32,
    /// Our parent.
    pub parent: ProcSummary,
    /// Ourselves (JSON key `self`).
    #[serde(rename = "self")]
    pub process: ProcSummary,
    /// Our age in seconds when the signal arrived.
    pub process_age_s: Option<f64>,
    /// The real sender, from `siginfo_t`, when the caller knows it.
    pub sender: Option<SignalSender>,
    /// Who supervises us.
    pub supervisor: Supervisor,
    /// `INVOCATION_ID` (systemd sets it for every service start).
    pub systemd_invocation_id: Option<String>,
    /// `JOURNAL_STREAM` (our stdout/stderr go to the journal).
    pub systemd_journal_stream: Option<String>,
    /// The systemd unit from `/proc/self/cgroup`, when it names a `.service`.
    pub systemd_unit: Option<String>,
    /// True when systemd runs us (`INVOCATION_ID` set, or our parent is `systemd`).
    pub under_systemd: bool,
    /// The 1-minute load average.
    pub loadavg_1m: Option<f64>,
    /// A debugger or tracer attached to us (`TracerPid`), when one is.
    pub tracer_pid: Option<u32>,
    /// The tracer, when one is attached.
    pub tracer: Option<ProcSummary>,
    /// The takeover marker, when present.
    pub takeover_marker: Option<MarkerInfo>,
    /// The planned-stop marker, when present.
    pub planned_stop_marker: Option<MarkerInfo>,
    /// An id shared with the diagnostic log and the flight record, when the signal helper
    /// captured this context.
    pub correlation_id: Option<String>,
    /// How long the capture itself took, in microseconds.
    pub capture_us: u64,
    /// Under systemd, for a signal the manager sent: whether a stop job was running for our
    /// unit (asked after the signal was handled, bounded). `None` when not asked (not under
    /// systemd, or another sender). The context a waiter got at the wake-up does not have it
    /// yet; [`ShutdownSignal::context`](crate::ShutdownSignal::context) asked afterwards
    /// does.
    #[serde(default)]
    pub manager_job: Option<ManagerJob>,
}

impl ShutdownContext {
    /// True when a takeover or planned-stop marker names this process: the stop was planned.
    #[must_use]
    pub fn is_planned(&self) -> bool {
        [&self.takeover_marker, &self.planned_stop_marker]
            .into_iter()
            .any(|m| m.as_ref().is_some_and(|m| m.for_self))
    }

    /// How the stop came, as the context line's `stop` field says it: `planned` (a marker
    /// names us), `supervisor` (the service manager ran a stop job for our unit:
    /// [`ManagerJob::Stop`]), else `unexpected`.
    #[must_use]
    pub fn stop_kind(&self) -> &'static str {
        if self.is_planned() {
            "planned"
        } else if self.manager_job.as_ref().is_some_and(ManagerJob::is_stop) {
            "supervisor"
        } else {
            "unexpected"
        }
    }
}

impl fmt::Display for ShutdownContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_log_line())
    }
}

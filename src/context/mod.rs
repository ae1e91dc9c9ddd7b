//! The shutdown context: who stopped us, captured from local `/proc` reads in microseconds.

mod line;
mod supervisor;

pub use supervisor::Supervisor;
use supervisor::{EnvFacts, SupervisorFacts};

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cgroup;
use crate::markers::{read_marker, Identity, MarkerInfo};
use crate::proc::{self as procfs, ProcRoot, ProcSummary};
use crate::signal::{signal_name_or_unknown, SignalSender};

/// What to capture beyond the defaults. `Default`: no markers, no command lines.
///
/// ```
/// use shutdown_forensics::ContextOptions;
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
    /// Record command lines of ourselves, our parent, the sender and a tracer (truncated to 300
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
}

/// `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` in seconds.
fn clock_secs(clock: libc::clockid_t) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn boottime_secs() -> Option<f64> {
    clock_secs(libc::CLOCK_BOOTTIME)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boottime_secs() -> Option<f64> {
    None
}

fn clock_ticks_per_sec() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

impl ShutdownContext {
    /// Captures the context with default options (no markers, no command lines).
    ///
    /// ```
    /// use shutdown_forensics::ShutdownContext;
    /// let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    /// assert_eq!(ctx.signal, "SIGTERM");
    /// assert_eq!(ctx.pid, std::process::id());
    /// println!("{}", ctx.to_log_line());
    /// ```
    #[must_use]
    pub fn capture(signal: Option<i32>) -> Self {
        Self::capture_with(&ContextOptions::default(), signal)
    }

    /// Captures the context with `options`.
    #[must_use]
    pub fn capture_with(options: &ContextOptions, signal: Option<i32>) -> Self {
        Self::capture_from(&ProcRoot::default(), options, signal, None)
    }

    /// Captures the context of a signal whose sender is known (see
    /// [`SignalSender::from_siginfo`], which should run first: senders exit within
    /// microseconds).
    #[must_use]
    pub fn capture_with_sender(
        options: &ContextOptions,
        signal: Option<i32>,
        sender: Option<SignalSender>,
    ) -> Self {
        Self::capture_from(&ProcRoot::default(), options, signal, sender)
    }

    pub(crate) fn capture_from(
        proc: &ProcRoot,
        options: &ContextOptions,
        signal: Option<i32>,
        sender: Option<SignalSender>,
    ) -> Self {
        let started = Instant::now();
        let now = SystemTime::now();
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ts_monotonic = clock_secs(libc::CLOCK_MONOTONIC).unwrap_or(0.0);
        let cmdline = options.include_cmdline;
        let mut buf = Vec::with_capacity(2048);

        let pid = std::process::id();
        let mut process = ProcSummary {
            pid,
            ..ProcSummary::default()
        };
        let mut tty_nr = 0;
        if let Some(stat) = proc.stat(None, &mut buf) {
            process.name = Some(stat.comm);
            process.state = Some(stat.state);
            process.ppid = Some(stat.ppid);
            process.start_time = Some(stat.start_time);
            tty_nr = stat.tty_nr;
        }
        let ppid = process
            .ppid
            .unwrap_or_else(std::os::unix::process::parent_id);
        let mut tracer_pid = None;
        if proc.read(None, "status", &mut buf).is_ok() {
            let status = String::from_utf8_lossy(&buf);
            tracer_pid = procfs::parse_tracer_pid(&status);
            process.uid = procfs::parse_uid(&status);
        }
        if cmdline && proc.read(None, "cmdline", &mut buf).is_ok() {
            process.cmdline = Some(procfs::parse_cmdline(&buf, procfs::CMDLINE_MAX));
        }
        let process_age_s = match (process.start_time, boottime_secs(), clock_ticks_per_sec()) {
            (Some(start), Some(up), Some(hz)) => Some((up - start as f64 / hz).max(0.0)),
            _ => None,
        };
        let parent = proc.summary(ppid, cmdline, &mut buf);
        let loadavg_1m = proc
            .read_root("loadavg", &mut buf)
            .ok()
            .and_then(|()| procfs::parse_loadavg_1m(&String::from_utf8_lossy(&buf)));
        let cgroup_path = proc.read(None, "cgroup", &mut buf).ok().and_then(|()| {
            let text = String::from_utf8_lossy(&buf);
            cgroup::systemd_cgroup_path(&text).map(str::to_owned)
        });
        let tracer = tracer_pid.map(|t| proc.summary(t, cmdline, &mut buf));
        let env = EnvFacts::read();

        let me = Identity {
            pid,
            start_time: process.start_time,
        };
        let (takeover_marker, planned_stop_marker) = match &options.marker_dir {
            Some(dir) => (
                read_marker(
                    &dir.join(&options.takeover_marker),
                    me,
                    now,
                    options.marker_max_age,
                ),
                read_marker(
                    &dir.join(&options.planned_stop_marker),
                    me,
                    now,
                    options.marker_max_age,
                ),
            ),
            None => (None, None),
        };

        let unit = cgroup_path
            .as_deref()
            .and_then(cgroup::unit_from_cgroup_path);
        let parent_is_systemd = parent.name.as_deref() == Some("systemd");
        let under_systemd = env.invocation_id.is_some() || parent_is_systemd;
        let supervisor = Supervisor::decide(&SupervisorFacts {
            under_systemd,
            unit: unit.as_ref(),
            ppid,
            env: &env,
            cgroup_path: cgroup_path.as_deref(),
            tty_nr,
        });

        Self {
            ts,
            ts_monotonic,
            signal: signal_name_or_unknown(signal).into_owned(),
            signal_num: signal,
            pid,
            ppid,
            parent,
            process,
            process_age_s,
            sender,
            supervisor,
            systemd_invocation_id: env.invocation_id,
            systemd_journal_stream: env.journal_stream,
            systemd_unit: if under_systemd {
                unit.map(|u| u.name)
            } else {
                None
            },
            under_systemd,
            loadavg_1m,
            tracer_pid,
            tracer,
            takeover_marker,
            planned_stop_marker,
            correlation_id: None,
            capture_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// True when a takeover or planned-stop marker names this process: the stop was planned.
    #[must_use]
    pub fn is_planned(&self) -> bool {
        [&self.takeover_marker, &self.planned_stop_marker]
            .into_iter()
            .any(|m| m.as_ref().is_some_and(|m| m.for_self))
    }
}

impl fmt::Display for ShutdownContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_log_line())
    }
}

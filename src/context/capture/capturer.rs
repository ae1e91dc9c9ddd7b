//! Capture in two steps: facts that do not change while the process runs are read once, when
//! the capturer is made (at install time); the facts of the moment are read when the signal
//! arrives. The signal path then reads three `/proc` files instead of six, through files
//! opened at install.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::open_files::{is_loadavg, is_stat_of, is_status_of, OpenFiles};
use super::supervisor::{container_runtime, EnvFacts, SupervisorFacts};
use super::{ContextOptions, ShutdownContext, Supervisor};
use crate::context::markers::{read_marker, Identity};
use crate::context::signal::{signal_name_or_unknown, SignalSender};
use crate::sys::cgroup::{self, CgroupUnit};
use crate::sys::proc::{self as procfs, ProcRoot, ProcSummary};

/// Captures [`ShutdownContext`]s with fixed options, having read once what does not change
/// while the process runs: its start time and controlling terminal, its cgroup (and so its
/// systemd unit), the container runtime, the systemd environment.
///
/// [`ShutdownContext::capture_with`] makes a capturer for each call; the signal helper makes
/// one at install, so that a signal costs only the reads that can have changed. A process that
/// renames itself, moves to another cgroup or changes those environment variables afterwards
/// should make a new capturer.
///
/// [`ContextCapturer::new`] also keeps the three files read at signal time open
/// (`/proc/self/status`, the parent's `stat`, `/proc/loadavg`: three file descriptors, closed
/// on exec and shared by clones) and reads them again from their start at each capture:
/// `/proc` regenerates the text, so the facts are as fresh as with a new `open`, without the
/// path lookups. A parent that is no longer the parent, a capturer used in a forked child, a
/// failed read and a read that does not look like the file it should be (a descriptor the app
/// closed and reused for something else) all fall back to reading by path.
///
/// ```
/// use shutdown_forensics::context::{ContextCapturer, ContextOptions};
/// let capturer = ContextCapturer::new(ContextOptions::default());
/// let ctx = capturer.capture(Some(libc::SIGTERM), None);
/// assert_eq!(ctx.signal, "SIGTERM");
/// ```
#[derive(Debug, Clone)]
pub struct ContextCapturer {
    options: ContextOptions,
    name: Option<String>,
    start_time: Option<u64>,
    tty_nr: i64,
    env: EnvFacts,
    unit: Option<CgroupUnit>,
    container: Option<Option<String>>,
    clock_ticks: Option<f64>,
    /// The parent at construction (pid, start time, uid): reused while it is the same process.
    parent: Option<(u32, u64, u32)>,
    ppid_at_start: Option<u32>,
    files: OpenFiles,
}

impl ShutdownContext {
    /// Captures the context with default options (no markers, no command lines).
    ///
    /// ```
    /// use shutdown_forensics::context::ShutdownContext;
    /// let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    /// assert_eq!(ctx.signal, "SIGTERM");
    /// assert_eq!(ctx.pid, std::process::id());
    /// println!("{}", ctx.to_log_line());
    /// ```
    #[must_use]
    pub fn capture(signal: Option<i32>) -> Self {
        Self::capture_with(&ContextOptions::default(), signal)
    }

    /// Captures the context with `options`. To capture more than once (or fast, at signal
    /// time), make a [`ContextCapturer`] once and call [`ContextCapturer::capture`].
    #[must_use]
    pub fn capture_with(options: &ContextOptions, signal: Option<i32>) -> Self {
        ContextCapturer::one_shot(options.clone()).capture(signal, None)
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
        ContextCapturer::one_shot(options.clone()).capture(signal, sender)
    }
}

impl ContextCapturer {
    /// Reads the facts that do not change while the process runs (and the parent's identity,
    /// so that capturing it again at signal time costs one read less).
    #[must_use]
    pub fn new(options: ContextOptions) -> Self {
        let mut capturer = Self::one_shot(options);
        let proc = ProcRoot::default();
        capturer.files = OpenFiles::open(&proc, capturer.ppid_at_start);
        let mut buf = Vec::with_capacity(512);
        if let Some(ppid) = capturer.ppid_at_start {
            let p = proc.summary(ppid, false, &mut buf);
            capturer.parent = p
                .start_time
                .zip(p.uid)
                .map(|(start, uid)| (ppid, start, uid));
        }
        capturer
    }

    /// The static facts only, for a single capture ([`ShutdownContext::capture_with`]):
    /// nothing is read twice.
    pub(crate) fn one_shot(options: ContextOptions) -> Self {
        let proc = ProcRoot::default();
        let mut buf = Vec::with_capacity(2048);
        let stat = proc.stat(None, &mut buf);
        let cgroup_path = proc.read(None, "cgroup", &mut buf).ok().and_then(|()| {
            let text = String::from_utf8_lossy(&buf);
            cgroup::systemd_cgroup_path(&text).map(str::to_owned)
        });
        let env = EnvFacts::read();
        Self {
            parent: None,
            files: OpenFiles::default(),
            ppid_at_start: stat.as_ref().map(|st| st.ppid),
            options,
            tty_nr: stat.as_ref().map_or(0, |s| s.tty_nr),
            start_time: stat.as_ref().map(|s| s.start_time),
            name: stat.map(|s| s.comm),
            unit: cgroup_path
                .as_deref()
                .and_then(cgroup::unit_from_cgroup_path),
            container: container_runtime(&env, cgroup_path.as_deref()),
            env,
            clock_ticks: procfs::clock_ticks_per_sec(),
        }
    }

    /// The options every capture uses.
    #[must_use]
    pub fn options(&self) -> &ContextOptions {
        &self.options
    }

    /// The `stat` of `pid`, read through the parent's open file when `pid` is that parent
    /// (systemd, a supervisor or an init that forwards signals: the usual sender), else by
    /// path. The open file reads only while its process lives, so a success is that process.
    pub(crate) fn stat_of(&self, pid: u32, buf: &mut Vec<u8>) -> Option<procfs::Stat> {
        let proc = ProcRoot::default();
        let file = self.files.parent_stat.as_ref().filter(|(p, _)| *p == pid);
        self.files
            .read(
                std::process::id(),
                file.map(|(_, f)| &**f),
                buf,
                |text| is_stat_of(text, pid),
                |buf| proc.read(Some(pid), "stat", buf),
            )
            .ok()
            .and_then(|()| procfs::parse_stat(buf))
    }

    /// Captures the context of `signal`, with its `sender` when known (read the sender first
    /// with [`SignalSender::from_siginfo`]: senders exit within microseconds).
    #[must_use]
    pub fn capture(&self, signal: Option<i32>, sender: Option<SignalSender>) -> ShutdownContext {
        let started = Instant::now();
        let now = SystemTime::now();
        let ts_monotonic = clock_secs(libc::CLOCK_MONOTONIC).unwrap_or(0.0);
        let proc = ProcRoot::default();
        let cmdline = self.options.include_cmdline;
        let mut buf = Vec::with_capacity(2048);

        let pid = std::process::id();
        let mut process = ProcSummary {
            pid,
            name: self.name.clone(),
            start_time: self.start_time,
            ..ProcSummary::default()
        };
        // `status` has everything that can change: parent (re-parenting), state, uid, tracer.
        let mut tracer_pid = None;
        let files = &self.files;
        let status = files.read(
            pid,
            files.status.as_deref(),
            &mut buf,
            |text| is_status_of(text, pid),
            |buf| proc.read(None, "status", buf),
        );
        if status.is_ok() {
            let status = String::from_utf8_lossy(&buf);
            process.ppid = procfs::parse_ppid(&status);
            process.state = procfs::parse_state(&status);
            process.uid = procfs::parse_uid(&status);
            tracer_pid = procfs::parse_tracer_pid(&status);
        }
        if cmdline && proc.read(None, "cmdline", &mut buf).is_ok() {
            process.cmdline = Some(procfs::parse_cmdline(&buf, procfs::CMDLINE_MAX));
        }
        let ppid = process
            .ppid
            .unwrap_or_else(std::os::unix::process::parent_id);
        let known = self
            .parent
            .filter(|(pid, _, _)| *pid == ppid)
            .map(|(_, start, uid)| (start, uid));
        let parent_stat = files
            .parent_stat
            .as_ref()
            .filter(|(p, _)| *p == ppid)
            .map(|(_, f)| &**f);
        let stat = files
            .read(
                pid,
                parent_stat,
                &mut buf,
                |text| is_stat_of(text, ppid),
                |buf| proc.read(Some(ppid), "stat", buf),
            )
            .ok()
            .and_then(|()| procfs::parse_stat(&buf));
        let parent = proc.summary_of(ppid, stat, cmdline, &mut buf, known);
        let loadavg_1m = files
            .read(pid, files.loadavg.as_deref(), &mut buf, is_loadavg, |buf| {
                proc.read_root("loadavg", buf)
            })
            .ok()
            .and_then(|()| procfs::parse_loadavg_1m(&String::from_utf8_lossy(&buf)));
        let tracer = tracer_pid.map(|t| proc.summary(t, cmdline, &mut buf));

        let me = Identity {
            pid,
            start_time: self.start_time,
        };
        let opts = &self.options;
        let (takeover_marker, planned_stop_marker) = match &opts.marker_dir {
            Some(dir) => (
                read_marker(
                    &dir.join(&opts.takeover_marker),
                    me,
                    now,
                    opts.marker_max_age,
                ),
                read_marker(
                    &dir.join(&opts.planned_stop_marker),
                    me,
                    now,
                    opts.marker_max_age,
                ),
            ),
            None => (None, None),
        };

        let under_systemd =
            self.env.invocation_id.is_some() || parent.name.as_deref() == Some("systemd");
        let supervisor = Supervisor::decide(&SupervisorFacts {
            under_systemd,
            unit: self.unit.as_ref(),
            ppid,
            container: self.container.as_ref(),
            tty_nr: self.tty_nr,
        });
        let process_age_s = match (self.start_time, procfs::boottime_secs(), self.clock_ticks) {
            (Some(start), Some(up), Some(hz)) => Some((up - start as f64 / hz).max(0.0)),
            _ => None,
        };

        ShutdownContext {
            ts: now
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
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
            systemd_invocation_id: self.env.invocation_id.clone(),
            systemd_journal_stream: self.env.journal_stream.clone(),
            systemd_unit: self
                .unit
                .as_ref()
                .filter(|_| under_systemd)
                .map(|u| u.name.clone()),
            under_systemd,
            loadavg_1m,
            tracer_pid,
            tracer,
            takeover_marker,
            planned_stop_marker,
            correlation_id: None,
            capture_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            manager_job: None,
        }
    }
}

/// A clock's reading in seconds.
fn clock_secs(clock: libc::clockid_t) -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// Puts a file holding `text` under the descriptor of `target`, as an app that closed
    /// our descriptor and opened something else on its number would.
    fn swap_under(target: &File, text: &str) {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, text.as_bytes()).unwrap();
        // SAFETY: both descriptors are open; dup2 replaces `target`'s open file atomically.
        let rc = unsafe { libc::dup2(tmp.as_raw_fd(), target.as_raw_fd()) };
        assert_eq!(rc, target.as_raw_fd());
    }

    /// The parent's `stat` through the open file, any other pid by path: each is that process.
    #[test]
    fn stat_of_reads_the_parent_through_its_open_file_and_others_by_path() {
        let capturer = ContextCapturer::new(ContextOptions::default());
        let mut buf = Vec::new();
        let ppid = std::os::unix::process::parent_id();
        let by_path = ProcRoot::default().stat(Some(ppid), &mut buf).unwrap();
        let through_file = capturer.stat_of(ppid, &mut buf).expect("parent stat");
        // (The state may differ between the two reads: the parent runs.)
        assert_eq!(
            (&through_file.comm, through_file.start_time),
            (&by_path.comm, by_path.start_time)
        );

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("this test needs sleep(1)");
        let stat = capturer.stat_of(child.id(), &mut buf).expect("child stat");
        assert_eq!(stat.comm, "sleep");
        assert_eq!(stat.ppid, std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(capturer.stat_of(child.id(), &mut buf), None);
        let me = capturer
            .stat_of(std::process::id(), &mut buf)
            .expect("own stat");
        assert_eq!(Some(me.start_time), capturer.start_time);

        // The open file is what is read: a parent `stat` put under its descriptor is believed.
        let (_, file) = capturer
            .files
            .parent_stat
            .as_ref()
            .expect("parent file open");
        swap_under(
            file,
            &format!("{ppid} (through-file) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n"),
        );
        assert_eq!(
            capturer.stat_of(ppid, &mut buf).unwrap().comm,
            "through-file"
        );
        let ctx = capturer.capture(Some(libc::SIGTERM), None);
        assert_eq!(ctx.parent.name.as_deref(), Some("through-file"));
    }

    /// A descriptor that now holds some other file is not read as `/proc`: the capture reads
    /// by path instead and reports the real facts.
    #[test]
    fn a_descriptor_reused_for_another_file_is_not_believed() {
        let capturer = ContextCapturer::new(ContextOptions::default());
        let files = &capturer.files;
        swap_under(files.loadavg.as_deref().unwrap(), "42.0 app data\n");
        swap_under(
            files.status.as_deref().unwrap(),
            "Name:\tx\nTgid:\t1\nPPid:\t99999\nTracerPid:\t4242\n",
        );
        let (_, parent) = files.parent_stat.as_ref().unwrap();
        swap_under(parent, "1 (not-the-parent) S 0 1 1 0 -1 0\n");
        let ctx = capturer.capture(Some(libc::SIGTERM), None);
        let load = ctx.loadavg_1m.expect("loadavg by path");
        assert!((load - 42.0).abs() > f64::EPSILON, "{load}");
        assert_eq!(ctx.ppid, std::os::unix::process::parent_id());
        assert_ne!(ctx.tracer_pid, Some(4242));
        let ppid = std::os::unix::process::parent_id();
        assert_eq!(ctx.parent.pid, ppid);
        let real = ProcRoot::default()
            .stat(Some(ppid), &mut Vec::new())
            .unwrap();
        assert_eq!(ctx.parent.name.as_deref(), Some(real.comm.as_str()));
    }

    #[test]
    fn content_checks() {
        assert!(is_stat_of(b"42 (a) S 1", 42));
        assert!(!is_stat_of(b"421 (a) S 1", 42));
        assert!(!is_stat_of(b"42", 42));
        assert!(is_status_of(b"Name:\tx\nTgid:\t7\nPid:\t7\n", 7));
        assert!(!is_status_of(b"Name:\tx\nTgid:\t77\n", 7));
        assert!(is_loadavg(b"0.52 0.58 0.59 1/389 12345\n"));
        assert!(!is_loadavg(b"42.0 app data\n"));
        assert!(!is_loadavg(b""));
    }
}

//! The one builder that ties it together: signal listener, context, diagnostic, flight record,
//! systemd notify and the startup checks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::context::capture::ContextOptions;
use crate::context::escalation::{Escalation, DEFAULT_SIGNALS};
use crate::diagnostic::DiagnosticOptions;
use crate::error::Error;
use crate::signal_helper::listener::{self, Config, ListenerState};
use crate::signal_helper::signal::ShutdownSignal;
use crate::sys::private_file;
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::termination_message;

/// A kill deadline longer than this (systemd's `infinity`) is not watched for.
const MAX_KILL_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long [`Forensics::finish`] waits for the signal path's context event (a stuck log
/// sink holds it; the shutdown must not wait for that), or with a layer only for its place in
/// the log order (taken within milliseconds of the signal).
const CONTEXT_EVENT_PATIENCE: Duration = Duration::from_secs(2);

/// Configures and installs the signal helper. Every setting has a working default.
///
/// ```no_run
/// use shutdown_forensics::{Forensics, ShutdownLayer};
/// use tracing_subscriber::layer::SubscriberExt;
/// use tracing_subscriber::util::SubscriberInitExt;
///
/// # fn main() -> Result<(), shutdown_forensics::Error> {
/// let layer = ShutdownLayer::new();
/// let handle = layer.handle();
/// tracing_subscriber::registry().with(layer).init();
/// let forensics = Forensics::builder()
///     .with_handle(handle)
///     .with_diagnostic("logs/shutdown-diag.log")
///     .install()?;
/// let ctx = forensics.signal().wait(); // blocks until SIGTERM or SIGINT
/// println!("stopping: {}", ctx.to_log_line());
/// forensics.finish();
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "nothing listens until `install` is called"]
pub struct ForensicsBuilder {
    signals: Vec<i32>,
    context: ContextOptions,
    handle: Option<ShutdownHandle>,
    diagnostic: Option<DiagnosticOptions>,
    escalation: Escalation,
    guards: Vec<tracing_appender::non_blocking::WorkerGuard>,
    stop_check: bool,
    stop_budget: Option<Duration>,
    stop_headroom: Duration,
    notify: bool,
    extend: Option<(Duration, Duration)>,
    report_path: Option<PathBuf>,
    kill_deadline: Option<Duration>,
    panic_hook: bool,
    abort_snapshot: bool,
    termination_message: Option<PathBuf>,
}

impl Default for ForensicsBuilder {
    fn default() -> Self {
        Self {
            signals: DEFAULT_SIGNALS.to_vec(),
            context: ContextOptions::default(),
            handle: None,
            diagnostic: None,
            escalation: Escalation::LogOnly,
            guards: Vec::new(),
            stop_check: true,
            stop_budget: None,
            stop_headroom: crate::systemd::DEFAULT_STOP_HEADROOM,
            notify: true,
            extend: None,
            report_path: None,
            kill_deadline: None,
            panic_hook: true,
            abort_snapshot: true,
            termination_message: None,
        }
    }
}

/// The installed signal helper. Keep it alive for the life of `main`: dropping it stops the
/// listener, writes how the run left to the flight record, and flushes the log guards it
/// adopted.
///
/// After the drop, each signal it listened to does again what it did before the first install:
/// a `SIGTERM` that had its default action ends the process, as if the crate had never been
/// installed (signal-hook itself never gives a signal back; the crate runs the default action
/// when no `Forensics` listens). A handler the app registered through signal-hook (or tokio's
/// `signal`) *after* the install cannot be told apart: drop `Forensics` at the end of `main`,
/// not before. Installing again after the drop works and listens afresh.
///
/// Dropping it during a shutdown that [`finish`](Self::finish) did not end (an error returned
/// from the shutdown path) logs a WARN with the fix, and the next start reports the run as
/// exited without finishing, not as killed.
///
/// # Signals and your threads
///
/// The kernel runs a signal's handler on any thread of the process that does not block it,
/// not necessarily the listener's. The handler only writes a byte to a pipe, but the thread it
/// interrupts sees the interruption: most blocking calls restart (the handlers are installed
/// with `SA_RESTART`), yet calls with a timeout, such as a socket read with `SO_RCVTIMEO`,
/// `poll`, `epoll_wait` or `nanosleep`, return `EINTR` regardless (signal(7)). std's loops
/// (`read_exact`, `write_all`, `thread::sleep`) and tokio retry it; code that makes such calls
/// itself (libc, a raw `recv` with a timeout) should retry on `ErrorKind::Interrupted`.
///
/// The helper also keeps three `/proc` files open for the capture (close-on-exec; see
/// [`ContextCapturer`](crate::context::ContextCapturer)). If code closes descriptors it did not open
/// (some daemonizers do) and the numbers are reused, the capture notices that what it reads is
/// not the `/proc` file and reads by path instead.
///
/// ```no_run
/// use shutdown_forensics::Forensics;
///
/// # fn main() -> Result<(), shutdown_forensics::Error> {
/// let forensics = Forensics::builder().install()?; // zero configuration
/// let ctx = forensics.signal().wait();
/// eprintln!("stopping: {}", ctx.to_log_line());
/// forensics.finish();
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping Forensics stops the listener; the signals then take their default action"]
pub struct Forensics {
    shared: Arc<ListenerState>,
    signals: signal_hook::iterator::Handle,
    report_path: Option<PathBuf>,
    termination_message: Option<PathBuf>,
    /// Without a handle, `finish` logs the completion line itself, once.
    finished: AtomicBool,
    /// The signals listened to: their default action comes back at the drop.
    installed_signals: Vec<i32>,
}

impl Forensics {
    /// A builder with defaults that work with zero configuration.
    pub fn builder() -> ForensicsBuilder {
        ForensicsBuilder::default()
    }

    /// The trigger the app waits on.
    #[must_use]
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Tells systemd the service is up (`READY=1`, for `Type=notify` units) when
    /// `NOTIFY_SOCKET` is set and notifications are on; a no-op otherwise. Call it once the
    /// service accepts work. Returns whether a notification was sent.
    pub fn ready(&self) -> bool {
        #[cfg(feature = "systemd")]
        if let Some(n) = &self.shared.config.notifier {
            return n.send("READY=1\nSTATUS=running").is_ok();
        }
        false
    }

    /// Ends the shutdown: logs `+3.62s shutdown complete (total teardown 3.62s)`, flushes the
    /// flight record and, when configured, writes the report and context as JSON
    /// ([`ForensicsBuilder::with_report_path`]; without a handle the report is `null`).
    /// Returns the teardown time, or `None` before any shutdown began or when it was already
    /// finished.
    ///
    /// With a handle ([`ForensicsBuilder::with_handle`]) the layer logs the line and the phases
    /// are in the report. Without one the line is still logged (to the current subscriber),
    /// counted from the first signal's receipt, but no phase is timed.
    pub fn finish(&self) -> Option<Duration> {
        let handle = self.shared.config.handle.as_ref();
        let signals = self.signal().signal_count();
        if signals > 0 {
            // The context event comes last on the signal path: ours must follow it. With a
            // layer, the completion line is logged after it by the log order (and recorded at
            // once, whatever the sink does); without one, wait for it to be out.
            match handle {
                Some(_) => self.shared.wait_ordered(CONTEXT_EVENT_PATIENCE),
                None => self.shared.wait_handled(CONTEXT_EVENT_PATIENCE),
            }
        }
        let mut total = None;
        if let Some(handle) = handle {
            if signals > 1 {
                // Repeats past the first ten are logged and recorded only every hundredth.
                handle.record("signals", serde_json::json!({ "count": signals }));
            }
            total = handle.finish();
            let _ = handle.flush();
            if total.is_some() && self.termination_message.is_some() {
                handle.shared.termination_message_at_finish();
            }
        } else if let Some(at) = self.shared.first_received() {
            if !self.finished.swap(true, Ordering::SeqCst) {
                let took = at.elapsed();
                crate::timeline::events::complete_line(took);
                total = Some(took);
                if let Some(path) = &self.termination_message {
                    let ctx = self.signal().context();
                    let signal = ctx.as_ref().map(|c| c.signal.as_str());
                    let text = termination_message::complete_without_phases(took, signal);
                    if let Err(e) = private_file::replace_contents(path, text.as_bytes()) {
                        tracing::warn!(target: crate::sys::target::PHASE_TARGET, path = %path.display(), error = %e, "termination message not written");
                    }
                }
            }
        }
        if let Some(path) = &self.report_path {
            let report = handle.map(ShutdownHandle::report);
            let ctx = self.signal().context();
            let body = serde_json::json!({ "report": report, "context": ctx.as_deref() });
            if let Err(e) =
                crate::sys::private_file::write_atomic(path, body.to_string().as_bytes())
            {
                tracing::warn!(target: crate::sys::target::PHASE_TARGET, path = %path.display(), error = %e, "shutdown report not written");
            }
        }
        total
    }
}

impl Drop for Forensics {
    fn drop(&mut self) {
        self.signals.close();
        crate::signal_helper::abort::disarm(&self.shared);
        // As if the crate had never been installed: a later SIGTERM ends the process again.
        crate::signal_helper::disposition::release(&self.installed_signals);
        // Always say how the run left, so that the next start tells an exit from a kill: no
        // shutdown (a start-up error), a shutdown left without `finish()` (an error returned
        // from it), or a panic unwinding (judged by the panic it unwinds).
        let mut unfinished = None;
        if let Some(handle) = &self.shared.config.handle {
            let ending = crate::signal_helper::exit_note::on_drop(&handle.shared);
            if ending.begun && !ending.finished {
                unfinished = Some((ending.at, ending.phase));
            }
        } else if let Some(at) = self.shared.first_received() {
            if !self.finished.load(Ordering::SeqCst) {
                unfinished = Some((Some(at.elapsed()), None));
            }
        }
        if let (Some((at, phase)), false) = (unfinished, std::thread::panicking()) {
            let warn = || crate::timeline::events::finish_not_called(at, phase.as_deref());
            match &self.shared.config.handle {
                Some(h) => h.shared.emit(warn),
                None => warn(),
            }
        }
        // Startup messages whose subscriber never came: stderr rather than nowhere.
        if let Some(handle) = &self.shared.config.handle {
            handle.shared.startup.flush_deferred();
        }
        self.shared.flush_guards();
    }
}

impl ForensicsBuilder {
    /// The signals that start the shutdown, replacing the default. Default:
    /// [`DEFAULT_SIGNALS`] (`SIGTERM`, `SIGINT`); signals not listed keep their disposition
    /// (a `SIGHUP` handler of the app's own still gets its reloads).
    pub fn with_signals(mut self, signals: &[i32]) -> Self {
        self.signals = signals.to_vec();
        self
    }

    /// What the context captures (markers, command lines). Default: [`ContextOptions::default`].
    pub fn with_context_options(mut self, options: ContextOptions) -> Self {
        self.context = options;
        self
    }

    /// Ties the helper to a [`crate::ShutdownLayer`]: the phase timeline starts at signal
    /// receipt, the context and repeats go to its flight record, the previous run's verdict is
    /// logged at install (or, when the layer is not part of a subscriber yet, as soon as it is;
    /// on stderr if it never is). From then on only the signal (or [`ShutdownHandle::begin`],
    /// or a root `shutdown` span) starts the shutdown clock: a phase span opened before it is
    /// not timed, and the first one is reported once (`phase drain seen outside a shutdown`).
    /// At install the helper also checks that the subscriber lets phase spans through (target
    /// `shutdown` at INFO) and says once, with the fix, when it does not.
    /// Default: none (the helper still captures and logs the context, and
    /// [`Forensics::finish`] still logs the completion line, but no phase is timed).
    pub fn with_handle(mut self, handle: ShutdownHandle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Spawns the detached diagnostic (ps / pstree / dmesg, 0600) into `path` on the first
    /// signal, bounded to 5 s; missing directories above `path` are created at install.
    /// Default: no diagnostic.
    pub fn with_diagnostic(mut self, path: impl Into<PathBuf>) -> Self {
        self.diagnostic = Some(DiagnosticOptions::new(path));
        self
    }

    /// The diagnostic with every option of [`DiagnosticOptions`]. Default: no diagnostic.
    pub fn with_diagnostic_options(mut self, options: DiagnosticOptions) -> Self {
        self.diagnostic = Some(options);
        self
    }

    /// What later signals do. Default: [`Escalation::LogOnly`].
    pub fn with_escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = escalation;
        self
    }

    /// Keeps a tracing-appender guard so that a forced exit ([`Escalation::Exit`]) and the drop
    /// of [`Forensics`] still flush the log files. Default: none adopted.
    pub fn adopt_guard(mut self, guard: tracing_appender::non_blocking::WorkerGuard) -> Self {
        self.guards.push(guard);
        self
    }

    /// The shutdown budget checked against systemd's `TimeoutStopSec` at install (plus
    /// `headroom`); `None` skips the check. Default: the layer's total budget
    /// ([`crate::ShutdownLayerBuilder::with_total_budget`]) when a handle with one was given,
    /// else 30 s; headroom 30 s.
    pub fn with_stop_budget(mut self, budget: Option<Duration>, headroom: Duration) -> Self {
        self.stop_check = budget.is_some();
        self.stop_budget = budget;
        self.stop_headroom = headroom;
        self
    }

    /// sd_notify `STOPPING=1` and `STATUS=` when `NOTIFY_SOCKET` is set. Default: on.
    pub fn with_notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// While phases run, send `EXTEND_TIMEOUT_USEC` every `step`, never past `ceiling` after
    /// the shutdown began. Default: off.
    pub fn with_extend_timeout(mut self, step: Duration, ceiling: Duration) -> Self {
        self.extend = Some((step, ceiling));
        self
    }

    /// When the supervisor will SIGKILL the process, counted from the stop signal: Kubernetes'
    /// `terminationGracePeriodSeconds`, docker's `stop -t` (10 s by default), which cannot be
    /// read from inside. Shortly before it (1 s, or half the time if less) a stuck snapshot is
    /// taken and written to the flight record, so the next start says where the stop was stuck
    /// (earlier when a phase runs out of budget just before that: the snapshot then is the
    /// kill's; its CPU sampling and socket reads are cut to fit the time left).
    /// Needs a handle ([`Self::with_handle`]). Default: under systemd, the unit's
    /// `TimeoutStopUSec` as read by the startup check, moved by every `EXTEND_TIMEOUT_USEC`
    /// the helper sends ([`Self::with_extend_timeout`]); elsewhere none.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use shutdown_forensics::{Forensics, ShutdownLayer};
    ///
    /// # fn main() -> Result<(), shutdown_forensics::Error> {
    /// let layer = ShutdownLayer::new();
    /// // terminationGracePeriodSeconds: 30 in the pod spec
    /// let grace = std::env::var("GRACE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    /// let forensics = Forensics::builder()
    ///     .with_handle(layer.handle())
    ///     .with_kill_deadline(Duration::from_secs(grace))
    ///     .install()?;
    /// # Ok(()) }
    /// ```
    pub fn with_kill_deadline(mut self, deadline: Duration) -> Self {
        self.kill_deadline = Some(deadline);
        self
    }

    /// Writes `{"report": <ShutdownReport>, "context": <ShutdownContext>}` to `path` (mode
    /// 0600, replaced atomically, synced) when [`Forensics::finish`] runs, on the thread that
    /// calls it. A stop that never got there (SIGKILLed, crashed, exited early) has its report
    /// written by the next start, at [`install`](Self::install), rebuilt from the flight
    /// record of the handle ([`Self::with_handle`]): `"complete": false`, the phases so far
    /// (one still running is `open`), the stuck snapshots' findings, the context, and a
    /// `"recovered"` object with the record's path and the verdict; so the file always
    /// describes the last stop. Default: not written.
    pub fn with_report_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.report_path = Some(path.into());
        self
    }

    /// Records a panic (message, `file:line:col`, thread) in the flight record of the handle
    /// ([`Self::with_handle`]) before the hook that was set until then runs, so that the next
    /// start reports [`PreviousShutdown::Panicked`](crate::verdict::PreviousShutdown::Panicked) rather
    /// than a normal exit. One process-wide hook, installed at the first
    /// [`install`](Self::install) with a flight record and chained to the previous hook: set
    /// your own hook before `install`. A hook set after it replaces it: a panic that ends the
    /// run is then still judged a panic (the exit note says the process was unwinding), but
    /// its message and place are unknown, and the verdict says why. With the hook, a thread
    /// of its own (`shutdown-panic-witness`, idle until a panic) notes when the process
    /// outlived a panic, so that a caught one is never blamed for a later kill. Default: on.
    pub fn with_panic_hook(mut self, on: bool) -> Self {
        self.panic_hook = on;
        self
    }

    /// Under systemd, a `SIGABRT` the service manager sends while the shutdown runs (at
    /// `TimeoutStopSec` with `TimeoutStopFailureMode=abort`) first gets a stuck snapshot
    /// (reason `supervisor_abort`, CPU sampling and socket reads fitted to 500 ms) in the flight
    /// record and the log, then the process dies of it with its default action, a core dump
    /// where the limits allow one (at most 1.5 s after the signal, whatever a log sink waits
    /// for). Any other `SIGABRT`, `abort()` and `panic = "abort"` included, dies at once as
    /// without the crate. Needs a handle ([`Self::with_handle`]); left alone when `SIGABRT`
    /// had a handler before. Default: on under systemd (`INVOCATION_ID` set).
    pub fn with_abort_snapshot(mut self, on: bool) -> Self {
        self.abort_snapshot = on;
        self
    }

    /// Writes a summary of the stop, at most 4 KiB, to `path` (Kubernetes'
    /// `terminationMessagePath`; its default is `/dev/termination-log`), so that `kubectl
    /// describe pod` shows it under the container's `Last State` instead of a bare exit code.
    /// Written with what is true at each point: shortly before a known kill, with that
    /// snapshot (`shutdown not finished at +54.00s: in phase drain for 53.98s (budget
    /// 30.00s); a SIGKILL is expected at +55.00s (kill deadline); stuck in ...`, needs a
    /// kill deadline and a handle: [`Self::with_kill_deadline`], [`Self::with_handle`]), and
    /// at [`Forensics::finish`], replacing it (`shutdown complete in 3.62s; slowest phase drain
    /// 3.41s ...`). Replaced atomically (mode 0600, no symlink followed) where a rename can;
    /// a file that cannot be renamed over (Kubernetes bind-mounts it) is overwritten in
    /// place with one write. A failure is logged (`termination message not written`).
    /// Default: none; there is no implicit path, since outside a pod `/dev` is not the place
    /// for it.
    pub fn with_termination_message(mut self, path: impl Into<PathBuf>) -> Self {
        self.termination_message = Some(path.into());
        self
    }

    /// Registers the signal handlers, starts the listener thread and runs the startup checks
    /// (previous flight record verdict; systemd `TimeoutStopSec`, on a thread of its own).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when a signal cannot be listened for (no signals, a number
    /// out of range, one that cannot be caught like `SIGKILL`, or one the libc reserves), with
    /// nothing registered; [`ErrorKind::Io`](crate::ErrorKind::Io) when the diagnostic's directory cannot be created
    /// (missing ones are created, mode 0700) or the listener cannot be started.
    ///
    /// ```
    /// use shutdown_forensics::{ErrorKind, Forensics};
    ///
    /// let err = Forensics::builder().with_signals(&[libc::SIGKILL]).install().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn install(self) -> Result<Forensics, Error> {
        // First, before anything has side effects (hooks, threads, handlers).
        listener::check_signals(&self.signals)?;
        if let (Some(handle), Some(deadline)) = (&self.handle, self.kill_deadline) {
            handle.set_kill_deadline(deadline);
        }
        if let (Some(handle), Some(path)) = (&self.handle, &self.termination_message) {
            let _ = handle.shared.startup.termination_message.set(path.clone());
        }
        if let (Some(handle), Some(diag)) = (&self.handle, &self.diagnostic) {
            // Stuck snapshots go to the diagnostic file too.
            let _ = handle
                .shared
                .diagnostic_path
                .set(diag.log_path().to_path_buf());
        }
        // A directory that cannot be made must fail the start, not the shutdown.
        if let Some(opts) = &self.diagnostic {
            crate::sys::private_file::create_parent_dirs(opts.log_path()).map_err(|e| {
                Error::io(
                    format!("prepare shutdown diagnostic {}", opts.log_path().display()),
                    e,
                )
            })?;
        }
        if let Some(handle) = &self.handle {
            let timeline = &handle.shared;
            // The signal starts the clock: a phase before it (a helper reused at startup) must
            // not turn a 0.1 s stop into "+3.02s ... total teardown 3.12s".
            timeline.startup.set_begin_explicit();
            // A phase before install (the same helper run at startup) may have started it.
            if let Some(labels) = timeline.void_phase_begin() {
                crate::timeline::events::ran_before_install(timeline, &labels);
            }
            // The report file describes the last stop: when that one never finished (killed,
            // crashed), its report is rebuilt from the record now.
            let report_error = (self.report_path.as_deref())
                .and_then(|path| crate::timeline::recovered::write_previous(handle, path).err());
            // The subscriber may not exist yet (install before `init()`): the verdict and the
            // filter check wait for it, or go to stderr if it never comes (at drop).
            let shared = std::sync::Arc::clone(&handle.shared);
            let kill_deadline = self.kill_deadline;
            let startup_messages = move |subscribed: bool| {
                if let Some(e) = &report_error {
                    let line = format!("shutdown report of the previous stop not written: {e}");
                    if tracing::enabled!(target: crate::sys::target::PHASE_TARGET, tracing::Level::WARN)
                    {
                        tracing::warn!(target: crate::sys::target::PHASE_TARGET, error = %e, "{line}");
                    } else {
                        eprintln!("shutdown-forensics: {line}");
                    }
                }
                if let Some(record) = &shared.record {
                    // Each goes to stderr when no subscriber takes it (never to nowhere).
                    record.log_previous();
                    let warn = tracing::enabled!(target: crate::sys::target::PHASE_TARGET, tracing::Level::WARN);
                    for verdict in record.previous_takeovers() {
                        match verdict.message() {
                            Some(_) if warn => verdict.log(),
                            Some(m) => eprintln!("shutdown-forensics: {m}"),
                            None => {}
                        }
                    }
                    if let Some(e) = record.error() {
                        let line = format!(
                            "flight record disabled: {e}; running without one (a kill during \
                             the shutdown will not be reported at the next start)"
                        );
                        if warn {
                            tracing::warn!(
                                target: crate::sys::target::PHASE_TARGET,
                                error = %e,
                                "{line}"
                            );
                        } else {
                            eprintln!("shutdown-forensics: {line}");
                        }
                    }
                    // What the history of the last stops advises (signal_helper/advice.rs).
                    crate::signal_helper::advice::at_start(record);
                    if let Some(deadline) = kill_deadline {
                        let source = crate::verdict::advice::TimeoutSource::KillDeadline;
                        crate::signal_helper::advice::supervisor_timeout(record, deadline, &source);
                    }
                }
                if subscribed {
                    crate::timeline::startup::warn_if_phases_filtered();
                }
            };
            // A subscriber exists already and the layer is not in it (it would have joined it
            // when it was made): `fmt().init()` with the handle of a layer added nowhere.
            // Said now, and what waited for the layer's subscriber goes to this one.
            let subscriber_exists = tracing::dispatcher::get_default(|d| {
                !d.is::<tracing_core::subscriber::NoSubscriber>()
            });
            if timeline.dispatch.get().is_none() && subscriber_exists {
                timeline.startup.say_not_subscribed();
                startup_messages(false);
            } else {
                timeline
                    .startup
                    .when_subscribed(&timeline.dispatch, Box::new(startup_messages));
            }
        }
        if self.handle.is_none() {
            // A layer in the subscriber whose handle the app forgot to pass.
            if let Some(h) = crate::timeline::layer::in_current_subscriber() {
                h.shared
                    .startup
                    .say_handle_not_given(h.shared.record.is_some());
            }
        }
        if self.stop_check {
            let budget = self
                .stop_budget
                .or_else(|| {
                    self.handle
                        .as_ref()
                        .and_then(|h| h.shared.config.total_budget)
                })
                .unwrap_or(Duration::from_secs(30));
            let headroom = self.stop_headroom;
            let handle = self.handle.clone();
            // systemd's kill deadline, unless the app set one: the unit's stop timeout.
            let set_deadline = self.kill_deadline.is_none();
            let deadline_handle = self.handle.clone();
            // systemctl may take up to 2 s: never on the caller's (possibly async) thread.
            let _ = std::thread::Builder::new()
                .name("shutdown-systemd-check".into())
                .spawn(move || {
                    let check = || {
                        if let Some(alignment) =
                            crate::systemd::check_systemd_timing_alignment_with(budget, headroom)
                        {
                            alignment.warn_if_stale();
                            // Extensions sent later move it (systemd/notify_hook.rs).
                            let kill = alignment.timeout_stop;
                            // `infinity` (or absurd values): no deadline to watch for.
                            if let (true, Some(h)) = (set_deadline, &deadline_handle) {
                                if kill > Duration::ZERO && kill < MAX_KILL_DEADLINE {
                                    h.set_kill_deadline(kill);
                                    // An app's own deadline was advised on at install.
                                    if let Some(record) = &h.shared.record {
                                        let unit = alignment.unit.clone();
                                        let source =
                                            crate::verdict::advice::TimeoutSource::Systemd(unit);
                                        crate::signal_helper::advice::supervisor_timeout(
                                            record, kill, &source,
                                        );
                                    }
                                }
                            }
                        }
                    };
                    // To the layer's subscriber: this thread has no default of its own.
                    match handle {
                        Some(h) => h.shared.emit(check),
                        None => check(),
                    }
                });
        }
        #[cfg(feature = "systemd")]
        let notifier = if self.notify {
            crate::systemd::Notifier::from_env()
        } else {
            None
        };
        #[cfg(feature = "systemd")]
        if let (Some(handle), Some(n)) = (&self.handle, &notifier) {
            crate::systemd::notify_hook::attach(
                handle,
                n.clone(),
                self.extend
                    .map(|(step, ceiling)| crate::systemd::ExtendPolicy::new(step, ceiling)),
            );
        }
        if let (true, Some(handle)) = (self.panic_hook, &self.handle) {
            crate::signal_helper::panic_hook::install(handle);
        }
        let report_path = self.report_path;
        let termination_message = self.termination_message;
        let config = Config {
            capturer: crate::context::capture::ContextCapturer::new(self.context),
            handle: self.handle,
            diagnostic: self.diagnostic,
            escalation: self.escalation,
            #[cfg(feature = "systemd")]
            notifier,
        };
        let shared = Arc::new(ListenerState::new(config));
        if let Ok(mut g) = shared.guards.lock() {
            g.extend(self.guards);
        }
        crate::signal_helper::disposition::acquire(&self.signals);
        let signals = match listener::spawn(Arc::clone(&shared), &self.signals) {
            Ok(signals) => signals,
            Err(e) => {
                crate::signal_helper::disposition::release(&self.signals);
                return Err(Error::io("register shutdown signal handlers", e));
            }
        };
        if let Some(handle) = &shared.config.handle {
            crate::signal_helper::exit_note::arm(&handle.shared);
        }
        crate::signal_helper::abort::arm(&shared, self.abort_snapshot);
        Ok(Forensics {
            shared,
            signals,
            report_path,
            termination_message,
            finished: AtomicBool::new(false),
            installed_signals: self.signals,
        })
    }
}

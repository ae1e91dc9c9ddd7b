//! The signal listener thread: latches the first signal, captures the context, wakes the app,
//! and records (without re-running anything) every later signal.
//!
//! It runs on its own thread, fed by signal-hook's self-pipe, so that capture works even when
//! the async runtime is wedged: the signal handler itself only writes to a pipe.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use signal_hook::iterator::exfiltrator::origin::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::{Cause, Origin, Sent};

use crate::context::capture::{ContextCapturer, ShutdownContext};
use crate::context::escalation::Escalation;
use crate::context::signal::{signal_name, SignalCause, SignalSender};
use crate::context::trigger::ShutdownTrigger;
use crate::diagnostic::{spawn_diagnostic_with, DiagnosticOptions};
use crate::error::{Error, ErrorKind};
use crate::sys::clock::Offset;
use crate::sys::logfmt::Logfmt;
use crate::timeline::handle::ShutdownHandle;

/// How long an escalation may spend flushing before the process is ended anyway.
const ESCALATION_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Repeats beyond this many are logged only every [`REPEAT_LOG_EVERY`]-th, so that a storm of
/// signals cannot flood the log or the flight record. The count is always kept.
const REPEAT_LOG_FIRST: u32 = 10;
const REPEAT_LOG_EVERY: u32 = 100;

/// Where the shutdown stands, shared by the listener, the app's [`crate::ShutdownSignal`]s
/// and the owner.
pub(crate) struct ListenerState {
    pub(crate) count: AtomicU32,
    pub(crate) slot: Mutex<Option<Arc<ShutdownContext>>>,
    pub(crate) cv: Condvar,
    pub(crate) tx: tokio::sync::watch::Sender<Option<Arc<ShutdownContext>>>,
    pub(crate) guards: Mutex<Vec<tracing_appender::non_blocking::WorkerGuard>>,
    pub(crate) config: Config,
    first_at: Mutex<Option<Instant>>,
    /// How far the first signal's handling got.
    progress: Mutex<Progress>,
    progress_cv: Condvar,
    /// Cancelled with the wake-up; handed out as child tokens.
    #[cfg(feature = "tokio-util")]
    pub(crate) token: tokio_util::sync::CancellationToken,
}

/// How far the first signal's handling got (see [`ListenerState::wait_ordered`]).
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// The context event has its turn in the log order: later lines follow it.
    ordered: bool,
    /// The handling is over, its context event included.
    handled: bool,
}

/// The listener's settings, fixed at install.
#[derive(Debug)]
pub(crate) struct Config {
    /// Prepared at install: the signal path reads only what can have changed.
    pub(crate) capturer: ContextCapturer,
    pub(crate) handle: Option<ShutdownHandle>,
    pub(crate) diagnostic: Option<DiagnosticOptions>,
    pub(crate) escalation: Escalation,
    #[cfg(feature = "systemd")]
    pub(crate) notifier: Option<crate::systemd::Notifier>,
}

impl std::fmt::Debug for ListenerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerState")
            .field("count", &self.count)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ListenerState {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            count: AtomicU32::new(0),
            slot: Mutex::new(None),
            cv: Condvar::new(),
            tx: tokio::sync::watch::Sender::new(None),
            guards: Mutex::new(Vec::new()),
            config,
            first_at: Mutex::new(None),
            progress: Mutex::new(Progress::default()),
            progress_cv: Condvar::new(),
            #[cfg(feature = "tokio-util")]
            token: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Handles one signal (or a manual trigger when `signal` is `None`). Never panics out.
    ///
    /// Events go to the subscriber the [`ShutdownHandle`]'s layer lives in, even when that is
    /// only the app thread's default (`with_default`) and not the global one: this runs on the
    /// listener thread, which has no default of its own.
    pub(crate) fn on_signal(
        &self,
        signal: Option<i32>,
        sender: Option<SignalSender>,
        received: Instant,
    ) {
        // One atomic decides both the count and the latch, so a manual trigger racing a signal
        // cannot make the second of them "first" with a count of 2.
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let first = n == 1;
        let run = || {
            if first {
                self.first(signal, sender, received);
            } else {
                self.repeat(signal, sender.as_ref(), n, received);
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| match &self.config.handle {
            Some(handle) => handle.shared.emit(run),
            None => run(),
        }));
        if outcome.is_err() {
            // A panicking subscriber must not stop the listener: later signals still count.
            self.contained(&format!("handling signal #{n}"));
        }
    }

    /// Says that a panic was contained, where it cannot hurt: a note in the flight record and
    /// a line on stderr only when stderr can take it now (no `eprintln!`: it panics on a
    /// broken pipe and blocks on a full one).
    fn contained(&self, step: &str) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(handle) = &self.config.handle {
                handle.record("contained_panic", json!({ "step": step }));
            }
            crate::sys::stderr::try_line(&format!(
                "shutdown-forensics: panic in {step}; the shutdown goes on"
            ));
        }));
    }

    /// Waits (at most `limit`) until the first signal's handling is over, so that its context
    /// event is written before the app's last lines and the process's exit.
    pub(crate) fn wait_handled(&self, limit: Duration) {
        self.wait_progress(limit, |p| p.handled);
    }

    /// Waits (at most `limit`) until the first signal's context event has its turn in the
    /// log order (the capture is done, the record lines are written): from then on a line of
    /// the layer is logged after it, and none of its record lines waits for it.
    pub(crate) fn wait_ordered(&self, limit: Duration) {
        self.wait_progress(limit, |p| p.ordered || p.handled);
    }

    fn wait_progress(&self, limit: Duration, reached: impl Fn(&Progress) -> bool) {
        let progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .progress_cv
            .wait_timeout_while(progress, limit, |p| !reached(p))
            .map_err(PoisonError::into_inner);
    }

    fn advance(&self, step: impl FnOnce(&mut Progress)) {
        step(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
        self.progress_cv.notify_all();
    }

    /// Walks the first signal's path once on the listener thread before it first waits, so
    /// that the signal does not pay for what a thread's first pass costs: its malloc arena and
    /// stack pages, the code pages of the `/proc` reads and the kernel's lookups of those
    /// files. Nothing is emitted, written or recorded.
    fn prewarm(&self) {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: getuid(2) cannot fail and has no preconditions.
        let uid = unsafe { libc::getuid() };
        let capturer = &self.config.capturer;
        let read = |pid, buf: &mut Vec<u8>| capturer.stat_of(pid, buf);
        let sender = SignalSender::from_proc_with(me, uid, SignalCause::Kill, Instant::now(), read);
        drop(capturer.capture(None, Some(sender)));
        // Its first use on a thread draws the thread's hash keys with getrandom(2).
        drop(crate::diagnostic::generate_correlation_id());
    }

    /// The first signal, in an order chosen so that nothing that can fail or block (the app's
    /// log sink, a process spawn) comes before the facts are on disk and the app is awake:
    /// capture, `STOPPING=1`, the flight record (`begin` and the context), the app's wake-up,
    /// the layer's watchdog thread, the diagnostic, and only then the context event.
    fn first(&self, signal: Option<i32>, sender: Option<SignalSender>, received: Instant) {
        if let Ok(mut at) = self.first_at.lock() {
            *at = Some(received);
        }
        let correlation_id = crate::diagnostic::generate_correlation_id();
        let mut ctx = self.config.capturer.capture(signal, sender.clone());
        ctx.correlation_id = Some(correlation_id.clone());
        // Before the layer's timeline starts: its notify hook sends STATUS= and
        // EXTEND_TIMEOUT_USEC from then on, and the manager must hear STOPPING=1 first. A
        // datagram that never blocks.
        #[cfg(feature = "systemd")]
        if let Some(n) = &self.config.notifier {
            let _ = n.stopping();
            let _ = n.status(&format!("shutting down: {}", ctx.signal));
        }
        // Each step is isolated: a panicking subscriber or writer must neither skip the
        // other steps nor, above all, leave the app waiting for a wake-up that never comes.
        if let Some(handle) = &self.config.handle {
            self.isolated("the flight record", || {
                let mut trigger = ShutdownTrigger::new(received)
                    .with_planned(ctx.is_planned())
                    .with_correlation_id(correlation_id.clone());
                if let Some(sig) = signal {
                    trigger = trigger.with_signal(sig);
                }
                if let Some(s) = sender {
                    trigger = trigger.with_sender(s);
                }
                // The watchdog thread is started after the wake-up (below): a spawn must not
                // come before it.
                handle
                    .shared
                    .begin_without_watchdog(trigger.at, Some(trigger.info()));
                handle.record("context", serde_json::to_value(&ctx).unwrap_or_default());
            });
        }
        let ctx = Arc::new(ctx);
        // The context event's turn in the log order, from before the app is woken: the app's
        // first phase lines are logged after it (a stalled sink delays them by the log order's
        // bounded patience). Their record lines never wait for it: a blocked sink must not
        // keep a phase out of the record.
        let turn = (self.config.handle.as_ref()).map(|h| h.shared.log_order.take());
        self.advance(|p| p.ordered = true);
        match self.slot.lock() {
            Ok(mut slot) => *slot = Some(Arc::clone(&ctx)),
            Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&ctx)),
        }
        self.cv.notify_all();
        self.tx.send_replace(Some(Arc::clone(&ctx)));
        #[cfg(feature = "tokio-util")]
        self.token.cancel();
        if let Some(handle) = &self.config.handle {
            self.isolated("the watchdog", || handle.shared.wake_watchdog_if_needed());
        }
        let mut diagnostic_error = None;
        if let Some(opts) = &self.config.diagnostic {
            self.isolated("the diagnostic", || {
                let opts = opts
                    .clone()
                    .with_signal_name(ctx.signal.clone())
                    .with_correlation_id(correlation_id);
                if let Err(e) = spawn_diagnostic_with(&opts) {
                    diagnostic_error = Some((opts.log_path().to_owned(), e));
                }
            });
        }
        // Under systemd, for the manager's signal: a stop job or not (bounded; decides the
        // event's level). See manager_job.rs.
        let asked = catch_unwind(AssertUnwindSafe(|| {
            crate::signal_helper::manager_job::asked(&ctx, received)
        }));
        let ctx = match asked {
            Ok(Some(updated)) => self.replace_context(updated),
            Ok(None) => ctx,
            Err(_) => {
                self.contained("the stop job query");
                ctx
            }
        };
        // The ONE context event, last: a log sink that blocks (stderr a full pipe) holds only
        // this thread, after the app was woken and the diagnostic started.
        self.isolated("the context event", || match turn {
            Some(turn) => turn.emit(|| ctx.log()),
            None => ctx.log(),
        });
        if self.config.handle.is_none() {
            self.isolated("the handle check", || {
                if let Some(h) = crate::timeline::layer::in_current_subscriber() {
                    h.shared
                        .startup
                        .say_handle_not_given(h.shared.record.is_some());
                }
            });
        }
        if let Some(handle) = &self.config.handle {
            // The layer never joined a subscriber: said now (a SIGKILL may follow), with the
            // startup messages that waited for one (the previous run's verdict).
            if handle.shared.dispatch.get().is_none() {
                self.isolated("the startup messages", || {
                    handle.shared.startup.say_not_subscribed();
                    handle.shared.startup.flush_deferred();
                });
            }
        }
        if let Some((path, e)) = diagnostic_error {
            self.isolated("the diagnostic warning", || {
                tracing::warn!(
                    target: crate::sys::target::PHASE_TARGET,
                    path = %path.display(),
                    error = %e,
                    "shutdown diagnostic not started"
                );
            });
        }
        self.advance(|p| p.handled = true);
    }

    /// Puts the context with the manager's answer where [`crate::ShutdownSignal::context`]
    /// (and the report at `finish`) finds it, and the answer in the flight record. Waiters
    /// woken already keep theirs; one that subscribes from now on gets this one.
    fn replace_context(&self, ctx: ShutdownContext) -> Arc<ShutdownContext> {
        if let (Some(handle), Some(job)) = (&self.config.handle, &ctx.manager_job) {
            handle.record("manager_job", json!(job));
        }
        let ctx = Arc::new(ctx);
        match self.slot.lock() {
            Ok(mut slot) => *slot = Some(Arc::clone(&ctx)),
            Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&ctx)),
        }
        self.tx.send_replace(Some(Arc::clone(&ctx)));
        ctx
    }

    /// Runs one step of the first signal's handling; a panic in it is contained and noted.
    fn isolated(&self, step: &str, f: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            self.contained(step);
        }
    }

    fn repeat(
        &self,
        signal: Option<i32>,
        sender: Option<&SignalSender>,
        n: u32,
        received: Instant,
    ) {
        let escalate =
            matches!(self.config.escalation, Escalation::Exit { after, .. } if n >= after.max(2));
        let logged = n <= REPEAT_LOG_FIRST + 1 || n % REPEAT_LOG_EVERY == 0 || escalate;
        if logged {
            let at = Offset(self.offset(received));
            let name = signal.map_or_else(|| "manual".into(), signal_name);
            let pid = sender.map_or_else(|| "unknown".to_owned(), |s| s.pid.to_string());
            let who = Logfmt(sender.map_or("unknown", SignalSender::display_name));
            tracing::warn!(
                target: crate::sys::target::PHASE_TARGET,
                signal = %name,
                count = n,
                sender_pid = %pid,
                sender_name = %who,
                "repeated signal {name} #{n} from pid {pid} ({who}) at {at}"
            );
            if let Some(handle) = &self.config.handle {
                handle.record(
                    "repeated_signal",
                    json!({"signal": name, "count": n, "sender": sender, "at_s": at.0.as_secs_f64()}),
                );
            }
        }
        if let Escalation::Exit { after, code } = self.config.escalation {
            if n >= after.max(2) {
                self.escalate(n, code);
            }
        }
    }

    /// Flushes what can be flushed and exits: the app asked for this on the Nth signal. A
    /// stuck writer (the app's log sink, the flight record) must not keep the process alive
    /// against the operator's wish: a deadline thread ends it regardless after two seconds.
    fn escalate(&self, n: u32, code: i32) {
        let _ = std::thread::Builder::new()
            .name("shutdown-escalate".into())
            .spawn(move || {
                std::thread::sleep(ESCALATION_FLUSH_LIMIT);
                // SAFETY: _exit(2) only ends the process; no Rust state is touched after it.
                unsafe { libc::_exit(code) }
            });
        tracing::warn!(target: crate::sys::target::PHASE_TARGET, count = n, exit_code = code, "signal #{n}: escalating, exiting with code {code}");
        if let Some(handle) = &self.config.handle {
            handle.record("escalated", json!({"count": n, "exit_code": code}));
            let _ = handle.flush();
        }
        self.flush_guards();
        std::process::exit(code);
    }

    /// Drops the adopted guards: each flushes its non-blocking writer (bounded by its own
    /// timeout). A poisoned lock still yields them.
    pub(crate) fn flush_guards(&self) {
        let guards = match self.guards.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        drop(guards);
    }

    /// When the first signal (or trigger) was received, if one was.
    pub(crate) fn first_received(&self) -> Option<Instant> {
        self.first_at.lock().ok().and_then(|g| *g)
    }

    /// When the listener took the signal from signal-hook's queue, counted from the shutdown's
    /// origin. Signals that arrive while the first is being handled are taken (and stamped)
    /// only afterwards, so in a storm this is the time of handling, not of delivery.
    fn offset(&self, received: Instant) -> Duration {
        let since_origin = self
            .config
            .handle
            .as_ref()
            .and_then(ShutdownHandle::elapsed);
        if let Some(e) = since_origin {
            return e.saturating_sub(received.elapsed());
        }
        let first = self.first_at.lock().ok().and_then(|g| *g);
        first.map_or(Duration::ZERO, |f| received.saturating_duration_since(f))
    }
}

/// The sender as signal-hook reports it, with its `/proc` entry read at once.
pub(crate) fn sender_from_origin(
    origin: &Origin,
    received: Instant,
    capturer: &ContextCapturer,
) -> Option<SignalSender> {
    let cause = match origin.cause {
        Cause::Sent(Sent::User) => SignalCause::Kill,
        Cause::Sent(Sent::TKill) => SignalCause::Tkill,
        Cause::Sent(Sent::Queue) => SignalCause::Sigqueue,
        Cause::Kernel => SignalCause::Kernel,
        _ => SignalCause::Other,
    };
    match origin.process {
        Some(p) => Some(SignalSender::from_proc_with(
            p.pid,
            p.uid,
            cause,
            received,
            |pid, buf| capturer.stat_of(pid, buf),
        )),
        None if cause == SignalCause::Kernel => {
            Some(SignalSender::from_proc(0, 0, cause, received))
        }
        None => None,
    }
}

/// signal-hook's own bound on signal numbers (it panics past it).
const MAX_SIGNUM: i32 = 128;

/// Checks every signal before any is registered, so that `install` fails with an error rather
/// than a panic (signal-hook panics on `SIGKILL`, `SIGSTOP`, `SIGSEGV`, ... and on numbers
/// out of range), and so that a bad signal cannot leave the good ones half-registered: once
/// signal-hook took a signal over it never restores the default action, so a `SIGTERM`
/// registered and then dropped would be ignored for the rest of the process.
pub(crate) fn check_signals(signals: &[i32]) -> Result<(), Error> {
    if signals.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "no signals to listen for",
        ));
    }
    for &sig in signals {
        if signal_hook::consts::FORBIDDEN.contains(&sig) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} cannot be caught", signal_name(sig)),
            ));
        }
        if !(1..MAX_SIGNUM).contains(&sig) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{sig} is not a signal number"),
            ));
        }
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a null `act` only queries the current action; `old` is valid and writable.
        // The libc refuses here what it would refuse at registration (e.g. glibc's 32, 33).
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} cannot be handled: {}",
                    signal_name(sig),
                    std::io::Error::last_os_error()
                ),
            ));
        }
    }
    Ok(())
}

/// Starts the listener on a thread named `shutdown-signals`, then registers `signals` (checked
/// with [`check_signals`] first). The thread exists before any handler does: a failed spawn
/// leaves every signal's disposition untouched.
pub(crate) fn spawn(
    shared: Arc<ListenerState>,
    signals: &[i32],
) -> std::io::Result<signal_hook::iterator::Handle> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<SignalsInfo<WithOrigin>>(1);
    std::thread::Builder::new()
        .name("shutdown-signals".into())
        .spawn(move || {
            // While the handlers are being registered (a signal that comes meanwhile waits in
            // the self-pipe until the warm-up is over).
            shared.isolated("the listener's warm-up", || shared.prewarm());
            // No iterator arrives when the registration failed: then there is nothing to do.
            let Ok(mut iter) = rx.recv() else { return };
            for origin in iter.forever() {
                let received = Instant::now();
                // The sender exits within microseconds of kill(2): read its /proc entry first.
                let sender = sender_from_origin(&origin, received, &shared.config.capturer);
                shared.on_signal(Some(origin.signal), sender, received);
            }
        })?;
    let iter = SignalsInfo::<WithOrigin>::new(signals)?;
    let handle = iter.handle();
    tx.send(iter)
        .map_err(|_| std::io::Error::other("the signal listener thread is gone"))?;
    Ok(handle)
}

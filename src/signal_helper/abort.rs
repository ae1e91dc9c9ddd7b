//! systemd's `TimeoutStopFailureMode=abort`: at `TimeoutStopSec` the manager sends `SIGABRT`
//! (not `SIGKILL`), so that the process dumps core where it hangs. The stop's stuck snapshot is
//! taken and recorded first, bounded, and then the process dies of that `SIGABRT` as systemd
//! expects (a core dump where the limits allow one, `code=killed, status=6/ABRT` otherwise).
//!
//! `SIGABRT` is also what `abort()` raises inside the process (`panic = "abort"`, a failed
//! assertion in C code): `si_code` `SI_TKILL`, the process itself the sender. Those must die at
//! once with the default action, so the handler decides in the handler, from `siginfo_t`
//! alone: only a `kill(2)` (`SI_USER`) from the service manager (pid 1, or the user manager
//! that is our parent) is forwarded, once, through a pipe to the `shutdown-abort` thread.
//! Everything else, and a forward that fails, runs the default action right in the handler
//! (signal-hook's `emulate_default_handler`: `SIG_DFL`, unblock, raise; async-signal-safe).
//!
//! The thread takes the snapshot only while a shutdown runs (a manager's `SIGABRT` before the
//! stop, systemd's `WatchdogSec=`, dies at once too), fitted to [`SNAPSHOT_LIMIT`]; a thread
//! of its own ends the process at [`HARD_LIMIT`] whatever the snapshot is waiting for. Then
//! it flushes the log guards and re-raises with the default action.
//!
//! Installed only under systemd (`INVOCATION_ID` set), with a handle, and only when `SIGABRT`
//! had its default action: a handler of the app's own is left alone.

// Elsewhere than Linux the handler is never installed: its parts are unused there.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::json;

use crate::signal_helper::listener::ListenerState;
use crate::stuck::snapshot::StuckReason;

/// The snapshot's CPU gap and socket reads are fitted to this (as a kill deadline's are to the
/// time left): systemd waits `TimeoutAbortSec` (by default `TimeoutStopSec`) for the process
/// to die before its `SIGKILL`, and a core dump should not wait long.
pub(crate) const SNAPSHOT_LIMIT: Duration = Duration::from_millis(500);
/// The process dies this long after the `SIGABRT` at the latest, whatever the snapshot, the
/// log sink or the log guards are waiting for.
pub(crate) const HARD_LIMIT: Duration = Duration::from_millis(1500);

/// The write end of the pipe to the `shutdown-abort` thread (-1: none). Read in the handler.
static FORWARD_FD: AtomicI32 = AtomicI32::new(-1);
/// The service manager's pid: 1, or the user manager (our parent). Read in the handler.
static MANAGER_PID: AtomicI32 = AtomicI32::new(1);
/// Set by the first forwarded `SIGABRT`: a second one dies at once.
static FORWARDED: AtomicBool = AtomicBool::new(false);
/// The handler is installed (once per process).
static INSTALLED: Mutex<bool> = Mutex::new(false);
/// The `Forensics` whose shutdown gets the snapshot (the last one installed).
static CURRENT: Mutex<Option<Weak<ListenerState>>> = Mutex::new(None);

/// Called by `install`: makes `state` the one whose shutdown a manager's `SIGABRT` snapshots,
/// installing the handler and its thread the first time. Does nothing when `on` is false, when
/// not under systemd, without a handle, or when `SIGABRT` has a handler already.
pub(crate) fn arm(state: &Arc<ListenerState>, on: bool) {
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some_and(|v| !v.is_empty());
    if !on || !under_systemd || state.config.handle.is_none() {
        return;
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if !*installed {
        match install() {
            Ok(()) => *installed = true,
            Err(why) => {
                tracing::debug!(target: crate::sys::target::PHASE_TARGET, why, "SIGABRT snapshot not installed");
                return;
            }
        }
    }
    *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::downgrade(state));
}

/// Called at the drop of `Forensics`: a `SIGABRT` no longer snapshots its shutdown.
pub(crate) fn disarm(state: &Arc<ListenerState>) {
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    if current
        .as_ref()
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(state)))
    {
        *current = None;
    }
}

#[cfg(target_os = "linux")]
fn install() -> Result<(), &'static str> {
    use std::os::fd::FromRawFd;

    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries the current action; `old` is valid and writable.
    if unsafe { libc::sigaction(libc::SIGABRT, std::ptr::null(), &mut old) } != 0 {
        return Err("sigaction query failed");
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Err("SIGABRT has a handler or is ignored: left alone");
    }
    // Under a user manager its services are its children; the system manager is pid 1.
    let mut cgroup = Vec::new();
    let user = (crate::sys::proc::ProcRoot::default().read(None, "cgroup", &mut cgroup))
        .ok()
        .and_then(|()| crate::sys::cgroup::unit_from_cgroup(&String::from_utf8_lossy(&cgroup)))
        .is_some_and(|u| u.manager == crate::sys::cgroup::SystemdManager::User);
    let manager = if user {
        i32::try_from(std::os::unix::process::parent_id()).unwrap_or(1)
    } else {
        1
    };
    MANAGER_PID.store(manager, Ordering::SeqCst);
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err("pipe2 failed");
    }
    // SAFETY: fds[0] was just created by pipe2 and is owned by nothing else.
    let reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    // The handler must never block: a full pipe (it cannot be, one message) fails the write.
    // SAFETY: fcntl on the descriptor pipe2 just created.
    unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
    let spawned = std::thread::Builder::new()
        .name("shutdown-abort".into())
        .spawn(move || forwarded(reader));
    if spawned.is_err() {
        // SAFETY: the write end is ours and was never published.
        unsafe { libc::close(fds[1]) };
        return Err("no thread");
    }
    FORWARD_FD.store(fds[1], Ordering::SeqCst);
    // SAFETY: an all-zero `sigaction` is a valid value; its fields are set below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_sigabrt as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is valid writable memory.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: `act` is fully initialised and `on_sigabrt` is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGABRT, &act, std::ptr::null_mut()) } != 0 {
        FORWARD_FD.store(-1, Ordering::SeqCst);
        return Err("sigaction failed");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn install() -> Result<(), &'static str> {
    Err("only on Linux")
}

/// The `SIGABRT` handler: async-signal-safe (atomics, `write(2)`, and signal-hook's default
/// action emulation). Forwards a manager's `SIGABRT` once; everything else dies now.
#[cfg(target_os = "linux")]
extern "C" fn on_sigabrt(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno; saved and restored around write.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t (checked for null anyway);
    // si_pid is meaningful for SI_USER, which is checked first.
    let from_manager = !info.is_null()
        && unsafe { (*info).si_code == libc::SI_USER && (*info).si_pid() > 0 }
        && unsafe { (*info).si_pid() } == MANAGER_PID.load(Ordering::SeqCst);
    let fd = FORWARD_FD.load(Ordering::SeqCst);
    if from_manager && fd >= 0 && !FORWARDED.swap(true, Ordering::SeqCst) {
        let byte = [1u8];
        // SAFETY: write(2) is async-signal-safe; the buffer is valid for one byte.
        if unsafe { libc::write(fd, byte.as_ptr().cast(), 1) } == 1 {
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
    }
    // As if there were no handler: SIG_DFL, unblocked, raised again; dies here.
    let _ = signal_hook::low_level::emulate_default_handler(libc::SIGABRT);
}

/// The `shutdown-abort` thread: waits for a forwarded `SIGABRT`, then snapshots and dies.
fn forwarded(mut reader: std::fs::File) {
    use std::io::Read;
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(1) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The pipe cannot close (its write end is never closed): nothing to wait for.
            _ => return,
        }
    }
    // Whatever happens below, the process dies by the deadline.
    let _ = std::thread::Builder::new()
        .name("shutdown-abort-deadline".into())
        .spawn(|| {
            std::thread::sleep(HARD_LIMIT);
            die();
        });
    let state = CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(Weak::upgrade);
    if let Some(state) = state {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| snapshot(&state)));
    }
    die();
}

/// The snapshot, its record line and WARN line, and the log guards flushed; only while a
/// shutdown runs.
fn snapshot(state: &ListenerState) {
    let Some(handle) = &state.config.handle else {
        return;
    };
    let timeline = &handle.shared;
    if !timeline.shutdown_running() {
        return;
    }
    let run = || {
        let at = handle.elapsed().unwrap_or_default();
        let pid = MANAGER_PID.load(Ordering::SeqCst);
        handle.record(
            "supervisor_abort",
            json!({"signal": "SIGABRT", "sender_pid": pid, "at_s": at.as_secs_f64()}),
        );
        // Record lines are single write(2)s: they outlive the process without an fsync.
        timeline.snapshot_before_death(StuckReason::SupervisorAbort, SNAPSHOT_LIMIT);
    };
    timeline.emit(run);
    state.flush_guards();
}

/// Dies of `SIGABRT` with its default action (a core dump where the limits allow one).
fn die() {
    let _ = signal_hook::low_level::emulate_default_handler(libc::SIGABRT);
    // emulate_default_handler falls back on abort(3) itself; this is never reached.
    std::process::abort();
}

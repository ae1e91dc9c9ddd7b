//! The panic hook: a panic is written to the flight record (message, location, thread) before
//! the app's own hook runs, so the next start judges the run as a panic, not as an exit.
//!
//! One hook per process, installed once and chained to the hook that was set before it; the
//! record it writes to is the one of the latest [`ForensicsBuilder::install`](crate::ForensicsBuilder::install).
//!
//! A recorded panic did not necessarily end the run: tokio catches a task's panic, a thread
//! that panics ends alone. The exit note (`exit_note.rs`) says when the run ended while a
//! panic unwound; the witness (below) notes when the process outlived one.
//!
//! The witness: a `panic` line alone does not say whether the panic ended the run. Unwinding
//! the thread that owns [`Forensics`](crate::Forensics) leaves an exit note; an abort (`panic =
//! "abort"`, a panic while panicking, an app hook that aborts) leaves nothing after the line;
//! but a panic that tokio caught in a task, or that ended only its own thread, also leaves
//! nothing after it until the process is SIGKILLed hours later. So a thread of its own, woken
//! once each panic's hooks have returned, waits [`OUTLIVED_AFTER`] and appends
//! `{"kind":"note","note":"panic_outlived","value":{"through":N}}`: every panic numbered up to
//! `N` had its hooks return and the process was still running that long after. The next start
//! then never blames such a panic for how the run ended. Nothing runs in the hook for it but
//! an atomic and an unpark.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use serde_json::json;

use crate::sys::clock::unix_secs;
use crate::timeline::handle::ShutdownHandle;
use crate::timeline::state::Timeline;

static TARGET: Mutex<Option<Weak<Timeline>>> = Mutex::new(None);
static INSTALLED: Once = Once::new();
/// Set once the hook is installed: a panic the hook did not record was then seen by a hook
/// set after it (it replaced this one), not missed for want of one.
static HOOK_SET: AtomicBool = AtomicBool::new(false);

/// Panics whose hook started, and whose hook (the app's chained one included) returned.
/// Each panic line carries its number (`seq`), so the witness can say which ones the process
/// outlived.
static STARTED: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The `seq` of the last panic this hook saw on this thread (0: none). Read by the
    /// exit note written while this thread unwinds. No destructor: still readable in `atexit`.
    static LAST_ON_THREAD: Cell<u64> = const { Cell::new(0) };
}

/// Points the hook at `handle`'s flight record, installing the hook the first time. Does
/// nothing when the handle has no record.
pub(crate) fn install(handle: &ShutdownHandle) {
    if handle.shared.record.is_none() {
        return;
    }
    *TARGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::downgrade(&handle.shared));
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let seq = STARTED.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = LAST_ON_THREAD.try_with(|l| l.set(seq));
            record(info, seq);
            previous(info);
            // Only now: an app hook that ends the process (exit, abort) never gets here.
            RETURNED.fetch_add(1, Ordering::SeqCst);
            wake_witness();
        }));
        HOOK_SET.store(true, Ordering::SeqCst);
        start_witness();
    });
}

/// Whether the hook was installed in this process (it may have been replaced since).
pub(crate) fn was_installed() -> bool {
    HOOK_SET.load(Ordering::SeqCst)
}

/// The `seq` of the last panic the hook saw on the calling thread, if any.
pub(crate) fn last_on_thread() -> Option<u64> {
    LAST_ON_THREAD.try_with(Cell::get).ok().filter(|s| *s > 0)
}

/// The timeline the hook writes to, if it is still alive. Never waits.
fn target() -> Option<Arc<Timeline>> {
    TARGET
        .try_lock()
        .ok()
        .and_then(|t| t.as_ref().and_then(Weak::upgrade))
}

/// Writes the `panic` line: one `write(2)`, no lock of the layer taken (the panic may have
/// happened while one was held), never a panic of its own.
fn record(info: &PanicHookInfo<'_>, seq: u64) {
    // try_lock: the hook must never wait; the mutex is only held to swap a pointer.
    let Some(shared) = target() else {
        return;
    };
    let Some(record) = &shared.record else {
        return;
    };
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current();
    let line = json!({
        "kind": "panic",
        "seq": seq,
        "wall_unix_s": unix_secs(std::time::SystemTime::now()),
        "message": crate::record::line_caps::cap_str(message),
        "location": location,
        "thread": thread.name(),
    });
    let _ = record.append_line(&line, true);
}

/// How long the process must outlive a panic's hooks before the witness says so: an abort
/// comes within microseconds of the hook's return.
const OUTLIVED_AFTER: Duration = Duration::from_millis(200);

static WITNESS: OnceLock<Thread> = OnceLock::new();

/// Starts the witness thread (once per process, with the hook). Without it (the spawn
/// failed), panics are judged as before: a panic that is the record's last word ended the run.
fn start_witness() {
    let spawned = std::thread::Builder::new()
        .name("shutdown-panic-witness".into())
        .stack_size(256 * 1024)
        .spawn(witness);
    if let Ok(handle) = spawned {
        let _ = WITNESS.set(handle.thread().clone());
    }
}

/// Called from the hook once every hook of a panic returned.
fn wake_witness() {
    if let Some(t) = WITNESS.get() {
        t.unpark();
    }
}

/// The witness thread: see the module docs.
fn witness() {
    let mut witnessed = 0u64;
    loop {
        std::thread::park_timeout(Duration::from_secs(3600));
        loop {
            let started = STARTED.load(Ordering::SeqCst);
            if started == witnessed {
                break;
            }
            if RETURNED.load(Ordering::SeqCst) != started {
                // A hook still running (or one that never returns: the process is ending).
                std::thread::park_timeout(OUTLIVED_AFTER);
                continue;
            }
            std::thread::sleep(OUTLIVED_AFTER);
            if STARTED.load(Ordering::SeqCst) != started {
                continue; // another panic meanwhile: wait for it too
            }
            if let Some(shared) = target() {
                let note = json!({"kind": "note", "note": "panic_outlived", "value": {"through": started}});
                shared.write(&note, true);
            }
            witnessed = started;
        }
    }
}

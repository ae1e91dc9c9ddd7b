//! The panic witness: notes in the flight record that the process outlived a panic.
//!
//! A `panic` line alone does not say whether the panic ended the run. Unwinding the thread
//! that owns [`Forensics`](crate::Forensics) leaves an exit note; an abort (`panic = "abort"`,
//! a panic while panicking, an app hook that aborts) leaves nothing after the line; but a panic
//! that tokio caught in a task, or that ended only its own thread, also leaves nothing after
//! it until the process is SIGKILLed hours later. So a thread of its own, woken once each
//! panic's hooks have returned, waits [`OUTLIVED_AFTER`] and appends
//! `{"kind":"note","note":"panic_outlived","value":{"through":N}}`: every panic numbered up to
//! `N` had its hooks return and the process was still running that long after. The next start
//! then never blames such a panic for how the run ended.
//!
//! Nothing here runs in the hook but an atomic and an unpark.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use serde_json::json;

use crate::signal_helper::panic_hook::{target, RETURNED, STARTED};

/// How long the process must outlive a panic's hooks before the witness says so: an abort
/// comes within microseconds of the hook's return.
pub(crate) const OUTLIVED_AFTER: Duration = Duration::from_millis(200);

static WITNESS: OnceLock<Thread> = OnceLock::new();

/// Starts the witness thread (once per process, with the hook). Without it (the spawn
/// failed), panics are judged as before: a panic that is the record's last word ended the run.
pub(crate) fn start() {
    let spawned = std::thread::Builder::new()
        .name("shutdown-panic-witness".into())
        .stack_size(256 * 1024)
        .spawn(run);
    if let Ok(handle) = spawned {
        let _ = WITNESS.set(handle.thread().clone());
    }
}

/// Called from the hook once every hook of a panic returned.
pub(crate) fn wake() {
    if let Some(t) = WITNESS.get() {
        t.unpark();
    }
}

fn run() {
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

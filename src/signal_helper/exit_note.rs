//! The exit note: how the process left, written to the flight record as it leaves, so that
//! the next start tells an exit apart from a kill.
//!
//! Written when [`Forensics`](crate::Forensics) is dropped (the end of `main`, an early
//! return, a `?` on the shutdown path, a panic unwinding through it) and, while one is still
//! alive, by an `atexit(3)` handler (`std::process::exit` inside a phase, a panic hook that
//! exits). `{"kind":"note","note":"exit","value":{...}}` with `shutdown` (one had begun),
//! `finished`, `panicking`, and while panicking `panic_seq` (the last panic the crate's hook
//! saw on this thread, `null` when it saw none: the hook was off or replaced) and
//! `panic_hook` (whether the crate's hook was ever installed), and `by` (`drop` or `exit`).
//!
//! Neither path may panic or wait for long: the record's own bounded lock is the only wait.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};

use serde_json::{json, Value};

use crate::signal_helper::panic_hook;
use crate::sys::clock::secs;
use crate::timeline::state::Timeline;

/// The timeline whose record gets the note at `exit(3)`, and the process it belongs to (a
/// forked child that calls `exit` must not write into its parent's record).
static AT_EXIT: Mutex<Option<(Weak<Timeline>, u32)>> = Mutex::new(None);
static REGISTERED: Once = Once::new();

/// What the note says about the shutdown when it was written.
pub(crate) struct Ending {
    /// A shutdown had begun.
    pub(crate) begun: bool,
    /// It had finished.
    pub(crate) finished: bool,
    /// Offset of the note from the shutdown origin, once begun.
    pub(crate) at: Option<std::time::Duration>,
    /// The innermost phase open then, if any.
    pub(crate) phase: Option<String>,
}

/// Where the shutdown stands now.
pub(crate) fn ending(shared: &Timeline) -> Ending {
    let now = shared.clock.now();
    let st = shared.lock();
    Ending {
        begun: st.origin.is_some(),
        finished: st.finished.is_some(),
        at: st.origin.map(|_| st.offset(now)),
        phase: (st.phases.iter().rev())
            .find(|p| p.started && p.close.is_none())
            .map(|p| p.label.clone()),
    }
}

/// Arms the `atexit` note for `shared` (registering the handler once per process).
pub(crate) fn arm(shared: &Arc<Timeline>) {
    if shared.record.is_none() {
        return;
    }
    *AT_EXIT.lock().unwrap_or_else(PoisonError::into_inner) =
        Some((Arc::downgrade(shared), std::process::id()));
    REGISTERED.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it catches every
        // panic) and touches only statics that live as long as the process.
        let _ = unsafe { libc::atexit(at_exit) };
    });
}

/// Writes the note for a drop of `Forensics`, and disarms the `atexit` one for `shared`.
pub(crate) fn on_drop(shared: &Arc<Timeline>) -> Ending {
    {
        let mut armed = AT_EXIT.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = armed
            .as_ref()
            .is_some_and(|(t, _)| std::ptr::eq(t.as_ptr(), Arc::as_ptr(shared)));
        if ours {
            *armed = None;
        }
    }
    let ending = ending(shared);
    write(shared, &ending, "drop");
    ending
}

fn write(shared: &Timeline, ending: &Ending, by: &str) {
    let panicking = std::thread::panicking();
    let mut value = json!({
        "shutdown": ending.begun,
        "finished": ending.finished,
        "panicking": panicking,
        "by": by,
    });
    if panicking {
        value["panic_seq"] = panic_hook::last_on_thread().map_or(Value::Null, Value::from);
        value["panic_hook"] = Value::Bool(panic_hook::was_installed());
    }
    let t = ending.at.map(secs);
    shared.write(
        &json!({"kind": "note", "note": "exit", "t": t, "value": value}),
        true,
    );
}

/// Runs inside `exit(3)`: the process leaves while a `Forensics` is alive.
extern "C" fn at_exit() {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let armed = AT_EXIT
            .try_lock()
            .ok()
            .and_then(|mut a| a.take())
            .filter(|(_, pid)| *pid == std::process::id());
        if let Some(shared) = armed.and_then(|(t, _)| t.upgrade()) {
            let ending = ending(&shared);
            write(&shared, &ending, "exit");
        }
    }));
}

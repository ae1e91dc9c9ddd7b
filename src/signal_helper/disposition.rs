//! What a signal does once no [`Forensics`](crate::Forensics) listens to it any more: what it
//! did before the first install.
//!
//! signal-hook never gives a signal back: once it registered an action its handler stays, and
//! with no action left the signal is swallowed. A `Forensics` dropped early (`let _ =
//! Forensics::builder().install()?;` gets around `#[must_use]`) would leave `SIGTERM`
//! ignored for the rest of the process, and the supervisor would wait its whole stop timeout
//! before a `SIGKILL`. So for each signal whose disposition was the default before the first
//! install, one more action is registered, once per process, that runs the default action
//! (signal-hook's `emulate_default_handler`: back to `SIG_DFL`, unblock, raise) whenever no
//! `Forensics` listens to that signal.
//!
//! Left alone: a signal that had a handler or was ignored before the first install (by the
//! app, by tokio through signal-hook): it keeps doing what it did. A handler registered through
//! signal-hook *after* the install cannot be seen from here; dropping `Forensics` still makes
//! the signal fatal then (documented on [`Forensics`](crate::Forensics)).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// signal-hook's own bound on signal numbers.
const SLOTS: usize = 128;

/// Per signal: run the default action (no `Forensics` listens). Read in the signal handler:
/// atomics only.
static DEFAULT_NOW: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

#[derive(Clone, Copy)]
struct Slot {
    /// Live `Forensics` listening to this signal.
    live: u32,
    /// Whether the signal had its default disposition before the first install (`None`:
    /// not asked yet).
    was_default: Option<bool>,
    /// The conditional default action is registered.
    registered: bool,
}

static SLOT_STATE: Mutex<[Slot; SLOTS]> = Mutex::new(
    [Slot {
        live: 0,
        was_default: None,
        registered: false,
    }; SLOTS],
);

fn index(sig: i32) -> Option<usize> {
    usize::try_from(sig).ok().filter(|i| *i < SLOTS)
}

/// Whether `sig`'s handler is `SIG_DFL` now (`false` when it cannot be asked).
fn is_default(sig: i32) -> bool {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries the current action; `old` is valid and writable.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == libc::SIG_DFL
}

/// Called by `install` for the signals it is about to listen to (checked already), before
/// their handlers are registered: the first time, notes each one's disposition and registers
/// the conditional default for those that had theirs; every time, turns the default off.
pub(crate) fn acquire(signals: &[i32]) {
    let mut slots = SLOT_STATE.lock().unwrap_or_else(PoisonError::into_inner);
    for &sig in signals {
        let Some(i) = index(sig) else { continue };
        let slot = &mut slots[i];
        let was_default = *slot.was_default.get_or_insert_with(|| is_default(sig));
        if was_default && !slot.registered {
            // Checked by `install` (not forbidden, in range), so this cannot panic.
            slot.registered =
                signal_hook::flag::register_conditional_default(sig, &DEFAULT_NOW[i]).is_ok();
        }
        slot.live = slot.live.saturating_add(1);
        DEFAULT_NOW[i].store(false, Ordering::SeqCst);
    }
}

/// Called when a `Forensics` goes (or its install failed after [`acquire`]): a signal no
/// `Forensics` listens to any more gets its default action back.
pub(crate) fn release(signals: &[i32]) {
    let mut slots = SLOT_STATE.lock().unwrap_or_else(PoisonError::into_inner);
    for &sig in signals {
        let Some(i) = index(sig) else { continue };
        let slot = &mut slots[i];
        slot.live = slot.live.saturating_sub(1);
        if slot.live == 0 && slot.registered {
            DEFAULT_NOW[i].store(true, Ordering::SeqCst);
        }
    }
}

//! What a signal helper asks of the layer at start: messages that must wait until the layer's
//! subscriber exists (the previous run's verdict, the filter check), and whether a phase may
//! start the shutdown clock on its own.
//!
//! Deferred work cannot run inside `on_register_dispatch`: tracing calls it while it holds its
//! dispatcher registry lock, and the first event of a new callsite takes that lock again. It
//! runs on a short-lived thread of its own instead, which waits for the lock like any other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_core::dispatcher::{self, Dispatch, WeakDispatch};

use crate::sys::target::PHASE_TARGET;

/// Work to run once the layer's subscriber exists: called with `true` then (log through it),
/// or with `false` when it never came (write to stderr instead).
pub(crate) type Deferred = Box<dyn FnOnce(bool) + Send>;

/// The signal helper's requests to the layer.
#[derive(Default)]
pub(crate) struct Startup {
    deferred: Mutex<Vec<Deferred>>,
    /// Set by the signal helper: only a signal, `begin` or a root `shutdown` span starts the
    /// clock; a phase seen before that is not timed.
    begin_explicit: AtomicBool,
    outside_said: AtomicBool,
    outside: Mutex<Option<String>>,
    not_subscribed_said: AtomicBool,
    handle_not_given_said: AtomicBool,
    /// Span callsites outside the `shutdown` target named like a budgeted phase: `(name,
    /// target)`, at most [`MAX_MISNAMED`].
    misnamed: Mutex<Vec<(&'static str, &'static str)>>,
    /// Where the signal helper writes the termination message (`termination_message.rs`).
    pub(crate) termination_message: OnceLock<std::path::PathBuf>,
    /// Held around each write of it; true once `finish` wrote its final one (a message before
    /// a kill taken meanwhile must not replace it).
    pub(crate) termination_final: Mutex<bool>,
}

/// Misnamed span callsites kept at most.
const MAX_MISNAMED: usize = 16;

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("begin_explicit", &self.begin_explicit)
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// Runs `f(true)` with the layer's subscriber (`dispatch`, once set) as the default: now
    /// when the layer is part of one, else as soon as it becomes part of one.
    pub(crate) fn when_subscribed(&self, dispatch: &OnceLock<WeakDispatch>, f: Deferred) {
        let mut pending = self.deferred.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock: `subscribed` runs after the dispatch is set and takes it.
        match dispatch.get().and_then(WeakDispatch::upgrade) {
            Some(d) => {
                drop(pending);
                dispatcher::with_default(&d, || f(true));
            }
            None => pending.push(f),
        }
    }

    /// The layer joined `dispatch`: runs what was deferred, on a thread of its own.
    pub(crate) fn subscribed(&self, dispatch: &Dispatch) {
        let work =
            std::mem::take(&mut *self.deferred.lock().unwrap_or_else(PoisonError::into_inner));
        if work.is_empty() {
            return;
        }
        let dispatch = dispatch.clone();
        let spawned = std::thread::Builder::new()
            .name("shutdown-startup".into())
            .spawn(move || {
                dispatcher::with_default(&dispatch, || {
                    // This runs while tracing may still be registering the subscriber: its
                    // level filter stays OFF and callsites' interest unset until that ends (and
                    // with a single subscriber, nothing here waits for it). Rebuilding the
                    // interest now, from this subscriber, makes the filter check below see
                    // what the subscriber enables instead of "nothing".
                    tracing_core::callsite::rebuild_interest_cache();
                    work.into_iter().for_each(|f| f(true));
                });
            });
        if spawned.is_err() {
            eprintln!("shutdown-forensics: could not start a thread for the startup messages");
        }
    }

    /// Runs what is still waiting for a subscriber with `false` (it writes to stderr).
    pub(crate) fn flush_deferred(&self) {
        let work =
            std::mem::take(&mut *self.deferred.lock().unwrap_or_else(PoisonError::into_inner));
        work.into_iter().for_each(|f| f(false));
    }

    /// From now on a phase does not start the shutdown clock (see [`Startup`]).
    pub(crate) fn set_begin_explicit(&self) {
        self.begin_explicit.store(true, Ordering::Relaxed);
    }

    pub(crate) fn begin_explicit(&self) -> bool {
        self.begin_explicit.load(Ordering::Relaxed)
    }

    /// Keeps the first phase seen outside a shutdown (once per layer) until it can be said.
    pub(crate) fn note_outside_shutdown(&self, label: &str) {
        if !self.outside_said.swap(true, Ordering::Relaxed) {
            *self.outside.lock().unwrap_or_else(PoisonError::into_inner) = Some(label.to_owned());
        }
    }

    /// The phase to say was seen outside a shutdown, once.
    pub(crate) fn take_outside_shutdown(&self) -> Option<String> {
        if !self.outside_said.load(Ordering::Relaxed) {
            return None;
        }
        self.outside
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Startup {
    /// Keeps a span callsite named like a budgeted phase but outside the `shutdown` target
    /// (`info_span!("drain")` where `phase!("drain")` was meant), for the finish to name.
    pub(crate) fn note_misnamed(&self, name: &'static str, target: &'static str) {
        let mut m = self.misnamed.lock().unwrap_or_else(PoisonError::into_inner);
        if m.len() < MAX_MISNAMED && !m.contains(&(name, target)) {
            m.push((name, target));
        }
    }

    /// The targets of the misnamed span callsites named `name`.
    pub(crate) fn misnamed_targets(&self, name: &str) -> Vec<&'static str> {
        let m = self.misnamed.lock().unwrap_or_else(PoisonError::into_inner);
        m.iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .collect()
    }

    /// Says once that a signal helper was installed without this layer's handle although the
    /// layer is in the subscriber, with the fix; `record`: the layer has a flight record.
    pub(crate) fn say_handle_not_given(&self, record: bool) {
        if self.handle_not_given_said.swap(true, Ordering::Relaxed) {
            return;
        }
        let record = if record {
            ", the context and signals are not in its flight record, and the previous run's \
             verdict is not logged at start"
        } else {
            ""
        };
        let line = format!(
            "a ShutdownLayer is in the subscriber but Forensics was installed without its \
             handle: the shutdown clock starts at the first phase instead of the signal{record}; \
             pass it: Forensics::builder().with_handle(layer.handle())"
        );
        if tracing::enabled!(target: PHASE_TARGET, tracing::Level::WARN) {
            tracing::warn!(target: PHASE_TARGET, "{line}");
        } else {
            crate::sys::stderr::try_line(&format!("shutdown-forensics: {line}"));
        }
    }

    /// Says once, through the current subscriber (stderr when it filters the line out), that
    /// the layer whose handle the signal helper was given is part of no subscriber, with the
    /// fix. Called where that is known: at install when a subscriber already exists, else at
    /// the signal.
    pub(crate) fn say_not_subscribed(&self) {
        if self.not_subscribed_said.swap(true, Ordering::Relaxed) {
            return;
        }
        let line = "the ShutdownLayer whose handle was given to Forensics::with_handle is not \
                    part of any subscriber: shutdown phases are not timed, logged or recorded, \
                    and stuck snapshots name no spans; add it to the subscriber you install: \
                    tracing_subscriber::registry().with(layer).with(fmt::layer()).init() \
                    (fmt().init() builds a subscriber without it)";
        if tracing::enabled!(target: PHASE_TARGET, tracing::Level::WARN) {
            tracing::warn!(target: PHASE_TARGET, "{line}");
        } else {
            // Also on the signal path: never `eprintln!` there.
            crate::sys::stderr::try_line(&format!("shutdown-forensics: {line}"));
        }
    }
}

/// Says once per process, through the current subscriber when it lets `shutdown` WARN events
/// through and on stderr otherwise, that phase spans (target `shutdown`, INFO) are filtered
/// out, with the fix. Returns whether they are.
pub(crate) fn warn_if_phases_filtered() -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    if tracing::span_enabled!(target: PHASE_TARGET, tracing::Level::INFO) {
        return false;
    }
    if SAID.swap(true, Ordering::Relaxed) {
        return true;
    }
    let fix = "the `shutdown` target is filtered out at INFO, so shutdown phases are not \
               timed, logged or reported; enable it in the filter (e.g. \
               RUST_LOG=warn,shutdown=info) or filter only the fmt layer (a per-layer filter: \
               fmt::layer().with_filter(..))";
    if tracing::enabled!(target: PHASE_TARGET, tracing::Level::WARN) {
        tracing::warn!(target: PHASE_TARGET, "{fix}");
    } else {
        eprintln!("shutdown-forensics: {fix}");
    }
    true
}

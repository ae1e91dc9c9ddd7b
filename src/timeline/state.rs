//! The state shared by the layer, its handles and the budget watchdog.
//!
//! Locking rule: the state mutex is held only to read or update bookkeeping. Every event,
//! flight-record write and hook call happens after it is released, so an event that reaches
//! this layer again (or a writer that logs) can never deadlock on it.
//!
//! Order: the [`RecordLock`] is taken before the state mutex, around a step's bookkeeping,
//! its record lines and its log line, so readers see every phase's lines in the order the
//! bookkeeping changed (never `over budget` after `done`), and a checkpoint lists exactly
//! what the lines before it left open. Hooks are called after both are released.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tracing_core::dispatcher::{self, WeakDispatch};

use crate::sys::clock::{secs, unix_secs, Clock};
use crate::timeline::fields::Fields;
use crate::timeline::hook::{PhaseChange, PhaseEvent};
use crate::timeline::recorder::FlightRecord;
use crate::who::trigger::TriggerInfo;

/// At most this many phases are tracked per process; more are ignored (phases are meant to
/// be a handful of named steps, not one per connection).
pub(crate) const MAX_PHASES: usize = 4096;

pub(crate) type Hook = Box<dyn Fn(&PhaseChange) + Send + Sync>;

/// Configuration fixed at build time.
#[derive(Debug, Default)]
pub(crate) struct Config {
    pub(crate) budgets: Vec<(String, Duration)>,
    pub(crate) total_budget: Option<Duration>,
    pub(crate) progress_interval: Duration,
}

impl Config {
    pub(crate) fn budget_for(&self, label: &str, name: &str) -> Option<Duration> {
        let find = |key: &str| self.budgets.iter().find(|(k, _)| k == key).map(|(_, d)| *d);
        find(label).or_else(|| find(name))
    }
}

pub(crate) struct Shared {
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    /// Orders record lines and phase log lines (see the module docs).
    pub(crate) record_lock: RecordLock,
    pub(crate) record: Option<FlightRecord>,
    pub(crate) dispatch: OnceLock<WeakDispatch>,
    pub(crate) hook: Option<Hook>,
    /// A second hook attached after build, by the signal helper (systemd notify).
    pub(crate) late_hook: OnceLock<Hook>,
    /// Phase spans alive now: when zero, callbacks for other spans return at once.
    pub(crate) live_spans: AtomicUsize,
    pub(crate) watchdog: Mutex<Option<Thread>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("clock", &self.clock)
            .field("config", &self.config)
            .field("record", &self.record)
            .field("hook", &self.has_hook())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) origin: Option<Instant>,
    pub(crate) origin_wall: Option<SystemTime>,
    pub(crate) trigger: Option<TriggerInfo>,
    pub(crate) finished: Option<Instant>,
    pub(crate) total_warned: bool,
    pub(crate) phases: Vec<PhaseState>,
    pub(crate) watchdog_running: bool,
}

#[derive(Debug)]
pub(crate) struct PhaseState {
    pub(crate) name: &'static str,
    pub(crate) label: String,
    pub(crate) parent: Option<usize>,
    pub(crate) open: Instant,
    pub(crate) close: Option<Instant>,
    pub(crate) fields: Fields,
    pub(crate) budget: Option<Duration>,
    pub(crate) warned: bool,
    pub(crate) started: bool,
}

impl State {
    pub(crate) fn offset(&self, at: Instant) -> Duration {
        self.origin
            .map_or(Duration::ZERO, |o| at.saturating_duration_since(o))
    }

    pub(crate) fn open_phases(&self, now: Instant) -> Vec<(String, Duration)> {
        self.phases
            .iter()
            .filter(|p| p.close.is_none())
            .map(|p| (p.label.clone(), now.saturating_duration_since(p.open)))
            .collect()
    }

    pub(crate) fn remaining(&self, budget: Option<Duration>, now: Instant) -> Option<Duration> {
        Some(budget?.saturating_sub(self.offset(now)))
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the shutdown bookkeeping down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with this layer's subscriber as the default, so events emitted from the
    /// watchdog or a signal thread reach it too.
    pub(crate) fn emit(&self, f: impl FnOnce()) {
        match self.dispatch.get().and_then(WeakDispatch::upgrade) {
            Some(d) => dispatcher::with_default(&d, f),
            None => f(),
        }
    }

    /// Appends a record line; failures are ignored (the record is best effort by nature).
    /// Notes are `essential == false`: dropped when the run's record is full.
    pub(crate) fn write(&self, value: &Value, essential: bool) {
        let Some(record) = &self.record else {
            return;
        };
        // The line and the checkpoint it may trigger are one step: no other thread's line
        // (a phase_end) can land between the snapshot and its write.
        let _order = self.record_lock.lock();
        if let Ok(true) = record.append_line(value, essential) {
            let _ = record.append_line(&self.checkpoint(), true);
        }
    }

    /// Who we are, what is open, what ended last: lets a reader of only the record's tail
    /// judge the run. Taken under the record lock, so it matches the lines before it: a phase
    /// is open from its `phase_start` line to its `phase_end` line.
    fn checkpoint(&self) -> Value {
        let now = self.clock.now();
        let st = self.lock();
        let open: Vec<Value> = (st.phases.iter().enumerate())
            .filter(|(_, p)| p.started && p.close.is_none())
            .map(|(i, p)| json!({"id": i, "phase": p.label, "t": secs(st.offset(p.open))}))
            .collect();
        let last_ended = (st.phases.iter().enumerate())
            .filter_map(|(i, p)| Some((p.close?, i, p)))
            .max_by_key(|(close, i, _)| (*close, *i))
            .map(|(close, i, p)| json!({"id": i, "phase": p.label, "t": secs(st.offset(close))}));
        json!({
            "kind": "checkpoint",
            "t": st.origin.map(|_| secs(st.offset(now))),
            "pid": std::process::id(),
            "begun": st.origin.is_some(),
            "trigger": st.trigger,
            "open": open,
            "last_ended": last_ended,
        })
    }

    pub(crate) fn notify(&self, change: impl FnOnce() -> PhaseChange) {
        if !self.has_hook() {
            return;
        }
        let change = change();
        if let Some(hook) = &self.hook {
            hook(&change);
        }
        if let Some(hook) = self.late_hook.get() {
            hook(&change);
        }
    }

    pub(crate) fn has_hook(&self) -> bool {
        self.hook.is_some() || self.late_hook.get().is_some()
    }

    /// Sets the origin if there is none; returns the `begin` record to write when it did.
    pub(crate) fn begin_locked(
        &self,
        st: &mut State,
        at: Instant,
        trigger: Option<TriggerInfo>,
    ) -> Option<Value> {
        if st.origin.is_some() {
            return None;
        }
        let wall = match &trigger {
            Some(t) => Duration::try_from_secs_f64(t.wall_unix_s)
                .map_or_else(|_| self.clock.wall_at(at), |d| SystemTime::UNIX_EPOCH + d),
            None => self.clock.wall_at(at),
        };
        st.origin = Some(at);
        st.origin_wall = Some(wall);
        let line = json!({
            "kind": "begin",
            "t": 0.0,
            "pid": std::process::id(),
            "wall_unix_s": unix_secs(wall),
            "trigger": trigger,
        });
        st.trigger = trigger;
        Some(line)
    }

    /// Starts a shutdown at `at`; false if one had already begun.
    pub(crate) fn begin(self: &Arc<Self>, at: Instant, trigger: Option<TriggerInfo>) -> bool {
        let order = self.record_lock.lock();
        let line = self.begin_locked(&mut self.lock(), at, trigger);
        let begun = line.is_some();
        if let Some(line) = line {
            self.write(&line, true);
            drop(order);
            self.wake_watchdog_if_needed();
        }
        begun
    }

    /// Logs completion once; returns the total teardown time.
    pub(crate) fn finish(self: &Arc<Self>) -> Option<Duration> {
        let order = self.record_lock.lock();
        let now = self.clock.now();
        let (total, open, remaining) = {
            let mut st = self.lock();
            let origin = st.origin?;
            if st.finished.is_some() {
                return None;
            }
            st.finished = Some(now);
            let remaining = st.remaining(self.config.total_budget, now);
            (
                now.saturating_duration_since(origin),
                st.open_phases(now),
                remaining,
            )
        };
        let t = secs(total);
        self.write(&json!({"kind": "complete", "t": t, "total_s": t}), true);
        crate::timeline::events::complete(self, total);
        drop(order);
        self.notify(|| PhaseChange::new(PhaseEvent::Complete, total, open, remaining));
        self.wake_watchdog();
        Some(total)
    }

    /// Wakes the watchdog (it re-reads deadlines), spawning it first when something needs
    /// watching: a budget, or a progress hook.
    pub(crate) fn wake_watchdog_if_needed(self: &Arc<Self>) {
        let needed = {
            let mut st = self.lock();
            let wanted = self.has_hook()
                || self.config.total_budget.is_some()
                || st
                    .phases
                    .iter()
                    .any(|p| p.budget.is_some() && p.close.is_none());
            let spawn = wanted && !st.watchdog_running && st.origin.is_some();
            if spawn {
                st.watchdog_running = true;
            }
            spawn
        };
        if needed {
            crate::timeline::watchdog::spawn(self);
        } else {
            self.wake_watchdog();
        }
    }

    pub(crate) fn wake_watchdog(&self) {
        let thread = self
            .watchdog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(t) = thread {
            t.unpark();
        }
    }
}

/// How long a thread waits for the [`RecordLock`] before it writes unordered: a stalled log
/// writer must delay a shutdown, never hang it.
const RECORD_LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// A re-entrant lock (an event emitted under it may reach this layer again on the same
/// thread, e.g. a writer that logs) whose waiters give up after [`RECORD_LOCK_PATIENCE`].
#[derive(Debug)]
pub(crate) struct RecordLock {
    owner: Mutex<Owner>,
    free: Condvar,
    patience: Duration,
}

impl Default for RecordLock {
    fn default() -> Self {
        Self::with_patience(RECORD_LOCK_PATIENCE)
    }
}

#[derive(Debug, Default)]
struct Owner {
    /// [`thread_key`] of the holder; meaningful while `depth > 0`.
    thread: usize,
    depth: usize,
    /// A waiter already ran out of patience during this hold: later waiters give up at once,
    /// so one stalled holder delays the shutdown by one patience window, not one per write.
    stalled: bool,
}

/// Held while a step's lines are written; `None` inside when the wait ran out.
#[must_use]
pub(crate) struct RecordGuard<'a>(Option<&'a RecordLock>);

/// A number that identifies the calling thread while it runs (the address of a thread
/// local); 0 when it cannot be had (thread-local storage being torn down).
fn thread_key() -> usize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.try_with(|k| std::ptr::from_ref(k) as usize)
        .unwrap_or(0)
}

impl RecordLock {
    pub(crate) fn with_patience(patience: Duration) -> Self {
        Self {
            owner: Mutex::default(),
            free: Condvar::new(),
            patience,
        }
    }

    /// Whether the guard holds the lock (false when the wait ran out and lines go unordered).
    #[cfg(test)]
    fn held(guard: &RecordGuard<'_>) -> bool {
        guard.0.is_some()
    }

    fn owner(&self) -> MutexGuard<'_, Owner> {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock(&self) -> RecordGuard<'_> {
        let me = thread_key();
        let mut owner = self.owner();
        if owner.depth > 0 && me != 0 && owner.thread == me {
            owner.depth += 1;
            return RecordGuard(Some(self));
        }
        let deadline = Instant::now() + self.patience;
        while owner.depth > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if owner.stalled || left.is_zero() {
                owner.stalled = true;
                return RecordGuard(None);
            }
            owner = (self.free.wait_timeout(owner, left))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *owner = Owner {
            thread: me,
            depth: 1,
            stalled: false,
        };
        RecordGuard(Some(self))
    }
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.0 else {
            return;
        };
        let mut owner = lock.owner();
        owner.depth = owner.depth.saturating_sub(1);
        if owner.depth == 0 {
            owner.stalled = false;
            drop(owner);
            lock.free.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_stalled_holder_costs_one_patience_window_not_one_per_write() {
        let lock = Arc::new(RecordLock::with_patience(Duration::from_millis(200)));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, is_held) = std::sync::mpsc::channel::<()>();
        let holder = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let _g = lock.lock();
                held.send(()).unwrap();
                let _ = released.recv(); // a writer stuck until told otherwise
            })
        };
        is_held.recv().unwrap();
        let start = Instant::now();
        let first = lock.lock();
        assert!(!RecordLock::held(&first));
        assert!(start.elapsed() >= Duration::from_millis(200));
        let again = Instant::now();
        for _ in 0..10 {
            assert!(!RecordLock::held(&lock.lock()));
        }
        assert!(
            again.elapsed() < Duration::from_millis(200),
            "later writes do not wait again"
        );
        drop(first);
        release.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            RecordLock::held(&lock.lock()),
            "after the holder released, waiting works again"
        );
    }

    #[test]
    fn the_record_lock_is_reentrant_and_excludes_other_threads() {
        let lock = Arc::new(RecordLock::default());
        let outer = lock.lock();
        let inner = lock.lock(); // an event that reaches the layer again: no deadlock
        drop(inner);
        let got = Arc::new(AtomicBool::new(false));
        let other = {
            let (lock, got) = (Arc::clone(&lock), Arc::clone(&got));
            std::thread::spawn(move || {
                let _g = lock.lock();
                got.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "still held by the outer guard");
        drop(outer);
        assert!(other.join().is_ok());
        assert!(got.load(Ordering::SeqCst));
    }
}

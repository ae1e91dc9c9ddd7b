//! The state shared by the layer, its handles and the budget watchdog.
//!
//! Locking rule: the state mutex is held only to read or update bookkeeping. Every event,
//! flight-record write and hook call happens after it is released, so an event that reaches
//! this layer again (or a writer that logs) can never deadlock on it.
//!
//! Order: the [`RecordLock`] is taken before the state mutex, around a step's bookkeeping and
//! its record lines, so the record has every phase's lines in the order the bookkeeping
//! changed (never `over budget` after `done`), and a checkpoint lists exactly what the lines
//! before it left open. It is never held across an event: the app's log sink may block, and
//! a record line must not wait for it. The step's log line keeps the same order through a
//! turn of the [`LogOrder`], taken under the record lock and used after it is released
//! (`log_order.rs`). Hooks are called after both are released.

use std::sync::atomic::AtomicUsize;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tracing_core::dispatcher::{self, WeakDispatch};

use crate::context::trigger::TriggerInfo;
use crate::record::flight_record::FlightRecord;
use crate::record::lock::RecordLock;
use crate::stuck::snapshot::StuckSnapshot;
use crate::stuck::spans::SpanTracker;
use crate::sys::clock::{secs, unix_secs, Clock};
use crate::timeline::hook::PhaseChange;
use crate::timeline::log_order::LogOrder;
use crate::timeline::log_thread::LogThread;
use crate::timeline::phase_fields::PhaseFields;

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
    /// Take a stuck snapshot when a phase runs past its budget (default: yes).
    pub(crate) stuck_on_budget: bool,
    /// Gap between a stuck snapshot's two CPU samples.
    pub(crate) cpu_sample_gap: Duration,
}

impl Config {
    pub(crate) fn budget_for(&self, label: &str, name: &str) -> Option<Duration> {
        let find = |key: &str| self.budgets.iter().find(|(k, _)| k == key).map(|(_, d)| *d);
        find(label).or_else(|| find(name))
    }
}

/// The shutdown's bookkeeping, shared by the layer, its handles, the watchdog and the
/// signal helper.
pub(crate) struct Timeline {
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    pub(crate) state: Mutex<State>,
    /// Orders record lines (see the module docs).
    pub(crate) record_lock: RecordLock,
    /// Orders log lines as the record lines are (see the module docs).
    pub(crate) log_order: LogOrder,
    /// Emits the watchdog's events, so that a blocked log sink never stalls the watchdog.
    pub(crate) log_thread: LogThread,
    pub(crate) record: Option<FlightRecord>,
    pub(crate) dispatch: OnceLock<WeakDispatch>,
    pub(crate) hook: Option<Hook>,
    /// A second hook attached after build, by the signal helper (systemd notify).
    pub(crate) late_hook: OnceLock<Hook>,
    /// Phase spans alive now: when zero, callbacks for other spans return at once.
    pub(crate) open_phases: AtomicUsize,
    /// Their ids (callbacks of other spans skip the registry lookup while a phase is open).
    pub(crate) phase_ids: crate::timeline::phase_ids::PhaseIds,
    pub(crate) watchdog: Mutex<Option<Thread>>,
    /// The app's open spans, for stuck snapshots.
    pub(crate) spans: SpanTracker,
    /// Span tracking is on (the default).
    pub(crate) track_spans: bool,
    /// The signal helper's diagnostic file: stuck snapshots are appended to it too.
    pub(crate) diagnostic_path: OnceLock<std::path::PathBuf>,
    /// Stuck snapshots being taken now (the completion waits for them, bounded).
    pub(crate) snapshots_in_flight: Mutex<usize>,
    pub(crate) snapshot_done: Condvar,
    /// What the signal helper asked for at install (deferred messages, explicit begin).
    pub(crate) startup: crate::timeline::startup::Startup,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
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
    /// The origin on the span tracker's coarse clock (to tell spans opened before the stop).
    pub(crate) origin_coarse: Option<u64>,
    pub(crate) trigger: Option<TriggerInfo>,
    pub(crate) finished: Option<Instant>,
    pub(crate) total_warned: bool,
    pub(crate) phases: Vec<PhaseState>,
    pub(crate) watchdog_running: bool,
    /// When the supervisor kills us, from the shutdown origin (systemd's `TimeoutStopUSec`,
    /// or the app's `with_kill_deadline`).
    pub(crate) kill_deadline: Option<Duration>,
    /// The snapshot before the kill was taken.
    pub(crate) kill_snapshot_taken: bool,
    /// While `EXTEND_TIMEOUT_USEC` keeps moving the deadline: at most this long before it.
    pub(crate) kill_lead_cap: Option<Duration>,
    /// Stuck snapshots taken so far (capped).
    pub(crate) stuck: Vec<StuckSnapshot>,
    /// Phases that closed over budget before the watchdog saw them: label and budget, each
    /// with a snapshot reserved, for the watchdog to take.
    pub(crate) pending_snapshots: Vec<(String, Duration)>,
    /// Spans already reported as left open (a later line does not repeat them); capped.
    pub(crate) reported_abandoned: Vec<u64>,
    /// The origin was set by a phase span (no signal, no `begin`).
    pub(crate) begun_by_phase: bool,
    /// Phases `..voided` ran before the signal helper was installed and are not part of the
    /// shutdown: left out of every list, their spans' later calls ignored.
    pub(crate) voided: usize,
}

#[derive(Debug)]
pub(crate) struct PhaseState {
    pub(crate) name: &'static str,
    pub(crate) label: String,
    pub(crate) parent: Option<usize>,
    pub(crate) open: Instant,
    pub(crate) close: Option<Instant>,
    pub(crate) fields: PhaseFields,
    pub(crate) budget: Option<Duration>,
    pub(crate) warned: bool,
    pub(crate) started: bool,
}

impl State {
    pub(crate) fn offset(&self, at: Instant) -> Duration {
        self.origin
            .map_or(Duration::ZERO, |o| at.saturating_duration_since(o))
    }

    /// The phases of this shutdown, with their indices (those voided at install left out).
    pub(crate) fn live_phases(&self) -> impl DoubleEndedIterator<Item = (usize, &PhaseState)> {
        self.phases.iter().enumerate().skip(self.voided)
    }

    pub(crate) fn open_phases(&self, now: Instant) -> Vec<(String, Duration)> {
        self.live_phases()
            .map(|(_, p)| p)
            .filter(|p| p.close.is_none())
            .map(|p| (p.label.clone(), now.saturating_duration_since(p.open)))
            .collect()
    }

    pub(crate) fn remaining(&self, budget: Option<Duration>, now: Instant) -> Option<Duration> {
        Some(budget?.saturating_sub(self.offset(now)))
    }
}

impl Timeline {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the shutdown bookkeeping down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True between the shutdown's begin and its finish.
    pub(crate) fn shutdown_running(&self) -> bool {
        let st = self.lock();
        st.origin.is_some() && st.finished.is_none()
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
        let open: Vec<Value> = (st.live_phases())
            .filter(|(_, p)| p.started && p.close.is_none())
            .map(|(i, p)| json!({"id": i, "phase": p.label, "t": secs(st.offset(p.open))}))
            .collect();
        let last_ended = (st.live_phases())
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
        let ago = self.clock.now().saturating_duration_since(at);
        st.origin_coarse = Some(
            crate::stuck::spans::coarse_now()
                .saturating_sub(u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX)),
        );
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

//! Phase bookkeeping: what the layer's callbacks do once a span is known to be a phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing_core::span::{Id, Record};
use tracing_core::Subscriber as _;
use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::stuck::abandoned::{self, Abandoned};

use crate::context::trigger::TriggerInfo;
use crate::sys::clock::secs;
use crate::timeline::hook::{PhaseChange, PhaseEvent};
use crate::timeline::phase_fields::PhaseFields;
use crate::timeline::state::{PhaseState, Timeline, MAX_PHASES};

/// How long completion waits for a stuck snapshot under way (one takes ~150 ms).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(1);

/// `drain`, or `disconnect<slack>` for a span with an `adapter` field.
fn label(name: &str, fields: &PhaseFields) -> String {
    match fields.get("adapter") {
        Some(Value::String(a)) => format!("{name}<{a}>"),
        Some(v) => format!("{name}<{v}>"),
        None => name.to_owned(),
    }
}

/// A `drain` phase gets the requests in flight of `shutdown_forensics::http` as `key`
/// (`active_at_start` when it opens, `active_now` when it closes) unless the app recorded it.
/// Nothing without tracked connections: a zero would claim a fact nobody counted.
fn drain_counts(name: &str, fields: &mut PhaseFields, key: &str) {
    if name != "drain" || fields.get(key).is_some() {
        return;
    }
    if let Some(c) = crate::connections::counts() {
        fields.set(key, json!(c.requests));
    }
}

fn budget_field(fields: &PhaseFields) -> Option<Duration> {
    let s = fields.get("budget_s")?.as_f64()?;
    Duration::try_from_secs_f64(s).ok()
}

/// The coarse clock's resolution is a scheduler tick (1–10 ms): spans opened this close to
/// the origin count as opened before it.
const COARSE_SLACK_NS: u64 = 10_000_000;
/// Ids of spans reported as left open, kept at most (for not repeating them).
const MAX_REPORTED: usize = 4096;

/// `abandoned_spans=2 oldest_abandoned="request{...} age 29.8s"` (and `abandoned_scan_cut=true`
/// when the count may be short) on a `done` or completion line.
fn set_abandoned(fields: &mut PhaseFields, a: &Abandoned) {
    fields.set("abandoned_spans", json!(a.count));
    if let Some(oldest) = &a.oldest {
        fields.set("oldest_abandoned", json!(oldest));
    }
    if a.cut {
        fields.set("abandoned_scan_cut", json!(true));
    }
}

fn note_reported(reported: &mut Vec<u64>, a: &Abandoned) {
    let room = MAX_REPORTED.saturating_sub(reported.len());
    reported.extend(a.ids.iter().take(room));
}

impl Timeline {
    /// Starts a shutdown at `at`; false if one had already begun.
    pub(crate) fn begin(self: &Arc<Self>, at: Instant, trigger: Option<TriggerInfo>) -> bool {
        let begun = self.begin_without_watchdog(at, trigger);
        if begun {
            self.wake_watchdog_if_needed();
        }
        begun
    }

    /// [`Self::begin`] without starting the watchdog: the signal listener starts it (a thread
    /// spawn) only once it has woken the app, microseconds later. A phase that opens meanwhile
    /// starts it itself.
    pub(crate) fn begin_without_watchdog(
        self: &Arc<Self>,
        at: Instant,
        trigger: Option<TriggerInfo>,
    ) -> bool {
        let order = self.record_lock.lock();
        let line = self.begin_locked(&mut self.lock(), at, trigger);
        let begun = line.is_some();
        if let Some(line) = line {
            self.write(&line, true);
            drop(order);
        }
        begun
    }

    /// At the signal helper's install: a shutdown clock that a phase started (no signal, no
    /// `begin`, not finished) is stopped, and the phases so far are left out of the shutdown
    /// (a `reset` record line says so to the next start's verdict). Returns their labels.
    pub(crate) fn void_phase_begin(&self) -> Option<Vec<String>> {
        let order = self.record_lock.lock();
        let labels = {
            let mut st = self.lock();
            if !st.begun_by_phase || st.trigger.is_some() || st.finished.is_some() {
                return None;
            }
            let labels = (st.live_phases().map(|(_, p)| p.label.clone())).collect();
            st.voided = st.phases.len();
            st.origin = None;
            st.origin_wall = None;
            st.origin_coarse = None;
            st.begun_by_phase = false;
            st.total_warned = false;
            st.kill_snapshot_taken = false;
            st.stuck.clear();
            st.reported_abandoned.clear();
            labels
        };
        self.write(&json!({"kind": "reset", "phases": labels}), true);
        drop(order);
        Some(labels)
    }

    /// Logs completion once; returns the total teardown time.
    pub(crate) fn finish(self: &Arc<Self>) -> Option<Duration> {
        // A snapshot under way (taken when a phase ran out of budget) is delivered first. The
        // watchdog reserves its snapshots under the record lock: checked again once we hold it.
        let deadline = std::time::Instant::now() + SNAPSHOT_WAIT;
        let order = loop {
            self.wait_for_snapshots(deadline.saturating_duration_since(std::time::Instant::now()));
            let order = self.record_lock.lock();
            if !self.snapshot_in_flight() || std::time::Instant::now() >= deadline {
                break order;
            }
            drop(order);
        };
        let abandoned = {
            let st = self.lock();
            (st.origin.is_some() && st.finished.is_none()).then_some(())
        }
        .and_then(|()| self.abandoned_at_finish());
        let now = self.clock.now();
        let (total, open, remaining) = {
            let mut st = self.lock();
            let origin = st.origin?;
            if st.finished.is_some() {
                return None;
            }
            st.finished = Some(now);
            if let Some(a) = &abandoned {
                note_reported(&mut st.reported_abandoned, a);
            }
            let remaining = st.remaining(self.config.total_budget, now);
            (
                now.saturating_duration_since(origin),
                st.open_phases(now),
                remaining,
            )
        };
        let t = secs(total);
        let mut line = json!({"kind": "complete", "t": t, "total_s": t});
        if let Some(a) = &abandoned {
            line["abandoned_spans"] = json!(a.count);
        }
        self.write(&line, true);
        let turn = self.log_order.take();
        drop(order);
        turn.emit(|| crate::timeline::events::complete(self, total, abandoned.as_ref()));
        for line in self.budgets_never_applied() {
            crate::timeline::events::budget_never_applied(self, &line);
        }
        self.notify(|| PhaseChange::new(PhaseEvent::Complete, total, open, remaining));
        // The history's line and the metrics (timeline/history.rs), after the record's.
        let report = {
            let st = self.lock();
            crate::timeline::report::ShutdownReport::from_state(&st, now, self.config.total_budget)
        };
        self.record_stop(&report);
        self.wake_watchdog();
        Some(total)
    }

    /// Registers a phase opened now; returns its index (`None` past [`MAX_PHASES`]).
    pub(crate) fn open_phase(
        self: &Arc<Self>,
        name: &'static str,
        mut fields: PhaseFields,
        parent: Option<usize>,
    ) -> Option<usize> {
        let now = self.clock.now();
        drain_counts(name, &mut fields, "active_at_start");
        let label = label(name, &fields);
        let budget = budget_field(&fields).or_else(|| self.config.budget_for(&label, name));
        let order = self.record_lock.lock();
        let (index, begin) = {
            let mut st = self.lock();
            if st.phases.len() >= MAX_PHASES {
                return None;
            }
            if st.origin.is_none() && self.startup.begin_explicit() {
                // A signal helper starts the clock; a phase before it (a helper reused at
                // startup) must not.
                // Said when the span closes: an event emitted from inside span creation
                // would reach no subscriber (tracing's re-entrancy guard).
                self.startup.note_outside_shutdown(&label);
                return None;
            }
            let begin = self.begin_locked(&mut st, now, None);
            st.begun_by_phase |= begin.is_some();
            st.phases.push(PhaseState {
                name,
                label,
                parent,
                open: now,
                close: None,
                fields,
                budget,
                warned: false,
                started: false,
            });
            (st.phases.len() - 1, begin)
        };
        if let Some(line) = begin {
            self.write(&line, true);
        }
        drop(order);
        self.wake_watchdog_if_needed();
        Some(index)
    }

    /// At a phase's first entry: the `started` record, line and hook call.
    pub(crate) fn enter_phase(&self, index: usize) {
        let order = self.record_lock.lock();
        let now = self.clock.now();
        let started = {
            let mut st = self.lock();
            let origin = st.origin;
            if index < st.voided {
                return;
            }
            let Some(p) = st.phases.get_mut(index) else {
                return;
            };
            if std::mem::replace(&mut p.started, true) {
                return;
            }
            let at = origin.map_or(Duration::ZERO, |o| p.open.saturating_duration_since(o));
            let (label, parent) = (p.label.clone(), p.parent);
            let change = self.has_hook().then(|| {
                let remaining = st.remaining(self.config.total_budget, now);
                PhaseChange::new(
                    PhaseEvent::Started(label.clone()),
                    st.offset(now),
                    st.open_phases(now),
                    remaining,
                )
            });
            (label, parent, at, change)
        };
        let (label, parent, at, change) = started;
        self.write_start(index, &label, parent, at);
        let turn = self.log_order.take();
        drop(order);
        turn.emit(|| crate::timeline::events::started(self, &label, at));
        if let Some(change) = change {
            self.notify(|| change);
        }
    }

    fn write_start(&self, index: usize, label: &str, parent: Option<usize>, at: Duration) {
        self.write(
            &json!({"kind": "phase_start", "t": secs(at), "id": index, "phase": label, "parent": parent}),
            true,
        );
    }

    /// PhaseFields recorded after the span was created (`span.record(..)`).
    pub(crate) fn record_phase(self: &Arc<Self>, index: usize, values: &Record<'_>) {
        // Visit outside the lock: a value's Debug impl is user code and may log.
        let mut update = PhaseFields::default();
        values.record(&mut update);
        let new_budget = budget_field(&update);
        {
            let mut st = self.lock();
            if index < st.voided {
                return;
            }
            let Some(p) = st.phases.get_mut(index) else {
                return;
            };
            for (k, v) in update.iter() {
                p.fields.set(k, v.clone());
            }
            if new_budget.is_some() {
                p.budget = new_budget;
            }
        }
        if new_budget.is_some() {
            self.wake_watchdog_if_needed();
        }
    }

    /// When phase `index` ran past its budget (it gave up): the coarse instant up to which a
    /// span counts as in flight at the stop, and the spans reported as left open already.
    pub(crate) fn gave_up(&self, index: usize) -> Option<(u64, Vec<u64>)> {
        let now = self.clock.now();
        let st = self.lock();
        let p = st.phases.get(index).filter(|_| index >= st.voided)?;
        let over = p.budget? < now.saturating_duration_since(p.open);
        let before = st.origin_coarse?.saturating_add(COARSE_SLACK_NS);
        over.then(|| (before, st.reported_abandoned.clone()))
    }

    /// The spans the shutdown leaves open that no phase reported (for the completion line):
    /// in flight since before the stop, not the caller's span nor its ancestors.
    fn abandoned_at_finish(&self) -> Option<Abandoned> {
        if !self.track_spans {
            return None;
        }
        let (before, reported) = {
            let st = self.lock();
            let before = st.origin_coarse?.saturating_add(COARSE_SLACK_NS);
            (before, st.reported_abandoned.clone())
        };
        // Without the registry the caller's ancestors cannot be told apart: nothing is said.
        let dispatch = self.dispatch.get()?.upgrade()?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let current = registry.current_span().id().cloned();
        let scope = current
            .as_ref()
            .and_then(|id| registry.span(id))
            .into_iter()
            .flat_map(|s| s.scope().map(|s| s.id().into_u64()));
        let render = |id: u64, meta: &'static tracing_core::Metadata<'static>| {
            let fields = registry
                .span(&Id::from_u64(id))
                .and_then(|s| crate::stuck::views::fields_of(&s))
                .or_else(|| crate::stuck::views::slot_fields_of(&self.spans, id));
            crate::stuck::views::render_span(meta.name(), fields.as_ref())
        };
        abandoned::find(&self.spans, before, scope, &reported, render)
    }

    /// At a phase's close: the over-budget warning if the watchdog has not given it yet,
    /// then the `done` record, line and hook call.
    pub(crate) fn close_phase(&self, index: usize, abandoned: Option<Abandoned>) {
        // Held from the check of `warned` to the `phase_end` line: a warning the watchdog
        // claimed is recorded (and, by its turn, logged) before this phase's end.
        let order = self.record_lock.lock();
        let now = self.clock.now();
        let closed = {
            let mut st = self.lock();
            let origin = st.origin;
            let offset = |t: std::time::Instant| {
                origin.map_or(Duration::ZERO, |o| t.saturating_duration_since(o))
            };
            if index < st.voided {
                return;
            }
            let Some(p) = st.phases.get_mut(index) else {
                return;
            };
            if p.close.is_some() {
                return;
            }
            p.close = Some(now);
            let took = now.saturating_duration_since(p.open);
            let over = p.budget.filter(|b| took > *b && !p.warned);
            p.warned |= over.is_some();
            let was_started = std::mem::replace(&mut p.started, true);
            let (label, parent, at_open) = (p.label.clone(), p.parent, offset(p.open));
            drain_counts(p.name, &mut p.fields, "active_now");
            let mut recorded = p.fields.clone();
            if let Some(a) = &abandoned {
                set_abandoned(&mut recorded, a);
            }
            let fields = serde_json::to_value(&p.fields).unwrap_or(Value::Null);
            let change = self.has_hook().then(|| {
                let remaining = st.remaining(self.config.total_budget, now);
                PhaseChange::new(
                    PhaseEvent::Ended {
                        phase: label.clone(),
                        duration: took,
                    },
                    st.offset(now),
                    st.open_phases(now),
                    remaining,
                )
            });
            if let Some(a) = &abandoned {
                note_reported(&mut st.reported_abandoned, a);
            }
            (
                label,
                parent,
                was_started,
                at_open,
                st.offset(now),
                took,
                over,
                recorded,
                fields,
                change,
            )
        };
        let (label, parent, was_started, at_open, at, took, over, recorded, fields, change) =
            closed;
        if !was_started {
            self.write_start(index, &label, parent, at_open);
        }
        if let Some(budget) = over {
            self.write_over_budget(Some(index), &label, at, budget);
        }
        let mut end = json!({"kind": "phase_end", "t": secs(at), "id": index, "phase": label,
                             "duration_s": secs(took), "fields": fields});
        if let Some(a) = &abandoned {
            end["abandoned_spans"] = json!(a.count);
        }
        if std::thread::panicking() {
            // Closed by a panic unwinding its thread: the panic came during this phase (the
            // next start says so even when no panic line was recorded).
            end["unwinding"] = json!(true);
        }
        self.write(&end, true);
        if let (Some(budget), true) = (over, self.config.stuck_on_budget) {
            // It ran out of budget as it closed (a timeout equal to the budget): the watchdog
            // did not see it open. It still gets its snapshot (of what it left behind), taken
            // by the watchdog, never on this thread; reserved now, so completion waits for it.
            self.reserve_snapshots(1);
            self.lock().pending_snapshots.push((label.clone(), budget));
        }
        // The lines in the record's order, once the record lock is free.
        let turn = self.log_order.take();
        drop(order);
        turn.emit(|| {
            if !was_started {
                crate::timeline::events::started(self, &label, at_open);
            }
            if let Some(budget) = over {
                crate::timeline::events::over_budget(self, &label, at, budget);
            }
            crate::timeline::events::done(self, &label, at, took, &recorded);
        });
        if over.is_some() {
            self.wake_watchdog();
        }
        if let Some(change) = change {
            self.notify(|| change);
        }
    }

    pub(crate) fn write_over_budget(
        &self,
        index: Option<usize>,
        label: &str,
        at: Duration,
        budget: Duration,
    ) {
        self.write(
            &json!({"kind": "over_budget", "t": secs(at), "id": index, "phase": label,
                    "budget_s": secs(budget)}),
            true,
        );
    }
}

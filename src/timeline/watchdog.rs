//! The budget watchdog: a plain thread (no async runtime needed) that warns while a phase is
//! still running past its budget (and takes a stuck snapshot then), takes another snapshot
//! shortly before a known kill deadline, appends a heartbeat to the flight record at most
//! once a second, and ticks the progress hook.

use std::sync::{Arc, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::stuck::collect::FirstSample;
use crate::stuck::snapshot::StuckReason;
use crate::timeline::hook::{PhaseChange, PhaseEvent};
use crate::timeline::log_order::Turn;
use crate::timeline::state::Timeline;
use crate::timeline::stuck_delivery::{fit_cpu_gap, Delivery};

/// Longest sleep between checks, so a dropped layer or a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Heartbeat lines are at least this far apart.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// The snapshot before a kill comes this long before it (or at half the time left, if less).
pub(crate) const KILL_LEAD: Duration = Duration::from_secs(1);

/// When, from the origin, the snapshot before a kill at `deadline` is due: `KILL_LEAD` before
/// it, or half the time if less, or `lead_cap` if less (a deadline that extensions keep moving:
/// the snapshot must not come before the next extension is due).
pub(crate) fn kill_snapshot_at(deadline: Duration, lead_cap: Option<Duration>) -> Duration {
    let lead = KILL_LEAD.min(deadline / 2);
    deadline.saturating_sub(lead_cap.map_or(lead, |c| lead.min(c)))
}

/// A snapshot for a budget is taken in place of the one before the kill when it would end
/// less than this before that one is due (it would delay it): the kill's is taken now.
const SNAPSHOT_MARGIN: Duration = Duration::from_millis(50);

/// A phase a snapshot is about, with its budget.
type StuckPhase = (String, Option<Duration>);

/// What one check found to do. At most one snapshot per check: the one before the kill when it
/// is due, else one for every phase that ran out of budget since the last check (each taken
/// alone used to take its ~150 ms, one after another, while the kill came closer).
#[derive(Default)]
struct Due {
    overruns: Vec<Overrun>,
    progress: Option<PhaseChange>,
    kill_snapshot: bool,
    /// Snapshots already reserved by a phase that closed over budget.
    pending: Vec<(String, Duration)>,
    heartbeat: Option<Duration>,
    /// A budget ends within the CPU sample gap: take the snapshot's first sample now.
    first_sample: bool,
}

impl Due {
    /// Whether a phase still open ran out of budget and gets a snapshot.
    fn budget_snapshot(&self, stuck_on_budget: bool) -> bool {
        stuck_on_budget && self.overruns.iter().any(|o| o.index.is_some())
    }

    /// The one snapshot of this check, if any: its reason and phase (`None`: the innermost
    /// open one). For overruns, the phase opened last of those that ran out of budget.
    fn snapshot(&self, stuck_on_budget: bool) -> Option<(StuckReason, Option<StuckPhase>)> {
        if self.kill_snapshot {
            return Some((StuckReason::KillDeadline, None));
        }
        let overrun = (self.overruns.iter().rev())
            .filter(|o| o.index.is_some() && stuck_on_budget)
            .map(|o| (o.label.clone(), Some(o.budget)))
            .next();
        let pending = (self.pending.first()).map(|(label, budget)| (label.clone(), Some(*budget)));
        let phase = overrun.or(pending)?;
        Some((StuckReason::Budget, Some(phase)))
    }
}

impl Timeline {
    /// Wakes the watchdog (it re-reads deadlines), spawning it first when something needs
    /// watching: a budget, or a progress hook.
    pub(crate) fn wake_watchdog_if_needed(self: &Arc<Self>) {
        let needed = {
            let mut st = self.lock();
            let wanted = self.has_hook()
                || self.config.total_budget.is_some()
                || self.record.is_some()
                || st.kill_deadline.is_some()
                || st
                    .live_phases()
                    .any(|(_, p)| p.budget.is_some() && p.close.is_none());
            let spawn = wanted && !st.watchdog_running && st.origin.is_some();
            if spawn {
                st.watchdog_running = true;
            }
            spawn
        };
        if needed {
            spawn(self);
        } else {
            self.wake_watchdog();
        }
    }
}

fn spawn(shared: &Arc<Timeline>) {
    let weak = Arc::downgrade(shared);
    let spawned = thread::Builder::new()
        .name("shutdown-watchdog".to_owned())
        .spawn(move || run(&weak));
    match spawned {
        Ok(handle) => {
            *shared
                .watchdog
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(handle.thread().clone());
        }
        // No thread, no mid-phase warnings; phase close still warns. Retry on the next phase.
        Err(_) => shared.lock().watchdog_running = false,
    }
}

/// One over-budget warning found by a check.
struct Overrun {
    index: Option<usize>,
    label: String,
    at: Duration,
    budget: Duration,
}

fn run(weak: &Weak<Timeline>) {
    let mut next_progress: Option<Instant> = None;
    let mut next_heartbeat: Option<Instant> = None;
    // The first CPU sample of the next budget snapshot, taken ahead of the budget's end so
    // that the snapshot is logged when the budget runs out, not a sample gap later.
    let mut early: Option<FirstSample> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let gap = shared.config.cpu_sample_gap;
        early = early.filter(|e| e.age() <= gap + MAX_SLEEP);
        // Held from claiming a warning to recording it (and taking its turn in the log), so
        // a phase closing meanwhile has its `done` after this warning, not before.
        let order = shared.record_lock.lock();
        let checked = check(
            &shared,
            &mut next_progress,
            &mut next_heartbeat,
            early.is_some(),
        );
        let Some((due, sleep)) = checked else {
            return;
        };
        for o in &due.overruns {
            shared.write_over_budget(o.index, &o.label, o.at, o.budget);
        }
        let stuck_on_budget = shared.config.stuck_on_budget;
        let snapshot = due.snapshot(stuck_on_budget);
        // Reserved under the record lock, so a completion arriving meanwhile waits for it.
        // Phases that closed over budget reserved theirs already; this one snapshot covers them.
        let reserved_now = usize::from(due.kill_snapshot || due.budget_snapshot(stuck_on_budget));
        shared.reserve_snapshots(reserved_now);
        if due.overruns.is_empty() {
            drop(order);
        } else {
            let turn = shared.log_order.take();
            drop(order);
            warn_later(&shared, turn, &due.overruns);
        }
        // Before the snapshot: the record shows the watchdog alive while it is taken.
        if let Some(at) = due.heartbeat {
            shared.heartbeat(at);
        }
        // The snapshot samples CPU over a gap fitted to the time left: taken with no lock held.
        // A budget's uses the first sample taken ahead of the budget's end; a kill's fits its
        // own gap to the time left.
        if let Some((reason, phase)) = snapshot {
            let first = if reason == StuckReason::Budget {
                early.take()
            } else {
                None
            };
            shared.take_reserved_snapshot(reason, phase, first, Delivery::LogThread);
            shared.release_snapshots((reserved_now + due.pending.len()).saturating_sub(1));
        }
        if due.first_sample && early.is_none() {
            early = Some(FirstSample::take());
        }
        if let Some(change) = due.progress {
            shared.notify(|| change);
        }
        let clock = shared.clock.clone();
        drop(shared);
        // Wake just past the next deadline: "over" means strictly longer than the budget.
        clock.sleep(sleep + Duration::from_millis(1));
    }
}

/// The over-budget lines of one check, in `turn`, on the log thread: a blocked sink must not
/// stop the heartbeats and snapshots.
fn warn_later(shared: &Arc<Timeline>, turn: Turn<'_>, overruns: &[Overrun]) {
    let lines: Vec<(String, Duration, Duration)> = (overruns.iter())
        .map(|o| (o.label.clone(), o.at, o.budget))
        .collect();
    shared.emit_later(turn, move |t| {
        for (label, at, budget) in &lines {
            crate::timeline::events::over_budget(t, label, *at, *budget);
        }
    });
}

/// Finds overruns (marking them warned) under the lock; `None` when the watchdog should exit.
fn check(
    shared: &Timeline,
    next_progress: &mut Option<Instant>,
    next_heartbeat: &mut Option<Instant>,
    first_sample_held: bool,
) -> Option<(Due, Duration)> {
    let now = shared.clock.now();
    let mut st = shared.lock();
    let all_closed = st.live_phases().all(|(_, p)| p.close.is_some());
    if st.finished.is_some() && all_closed && st.pending_snapshots.is_empty() {
        st.watchdog_running = false;
        return None;
    }
    let at = st.offset(now);
    let mut sleep = MAX_SLEEP;
    let mut overruns = Vec::new();
    // Snapshots at a budget's end sample CPU twice, `gap` apart: the first is due `gap` early.
    let gap = shared.config.cpu_sample_gap;
    let ahead = shared.config.stuck_on_budget && !gap.is_zero() && !first_sample_held;
    let mut first_sample = false;
    let voided = st.voided;
    for (i, p) in st.phases.iter_mut().enumerate().skip(voided) {
        let (None, false, Some(budget)) = (p.close, p.warned, p.budget) else {
            continue;
        };
        let ran = now.saturating_duration_since(p.open);
        if ahead && ran > budget.saturating_sub(gap) {
            first_sample = true;
        } else if ahead {
            sleep = sleep.min(budget.saturating_sub(gap) - ran);
        }
        if ran > budget {
            p.warned = true;
            overruns.push(Overrun {
                index: Some(i),
                label: p.label.clone(),
                at,
                budget,
            });
        } else {
            sleep = sleep.min(budget - ran);
        }
    }
    if let (Some(budget), false, None) = (shared.config.total_budget, st.total_warned, st.finished)
    {
        if at > budget {
            st.total_warned = true;
            overruns.push(Overrun {
                index: None,
                label: "shutdown".to_owned(),
                at,
                budget,
            });
        } else {
            sleep = sleep.min(budget - at);
        }
    }
    let mut due = Due {
        pending: std::mem::take(&mut st.pending_snapshots),
        first_sample,
        ..Due::default()
    };
    if let (Some(deadline), false, None, Some(_)) = (
        st.kill_deadline,
        st.kill_snapshot_taken,
        st.finished,
        st.origin,
    ) {
        let when = kill_snapshot_at(deadline, st.kill_lead_cap);
        // A snapshot for a budget now would still be under way when the kill's is due: take
        // the kill's now instead (it shows the same process), so that it is never late.
        let budget_snapshot = (shared.config.stuck_on_budget
            && overruns.iter().any(|o| o.index.is_some()))
            || !due.pending.is_empty();
        let gap = fit_cpu_gap(
            shared.config.cpu_sample_gap,
            Some(deadline.saturating_sub(at)),
        );
        let early = budget_snapshot && when.saturating_sub(at) < gap + SNAPSHOT_MARGIN;
        if at >= when || early {
            st.kill_snapshot_taken = true;
            due.kill_snapshot = true;
        } else {
            sleep = sleep.min(when - at);
        }
    }
    if shared.record.is_some() && st.origin.is_some() && st.finished.is_none() {
        if next_heartbeat.is_none_or(|t| now >= t) {
            *next_heartbeat = now.checked_add(HEARTBEAT_EVERY);
            due.heartbeat = Some(at);
        }
        sleep =
            sleep.min(next_heartbeat.map_or(HEARTBEAT_EVERY, |t| t.saturating_duration_since(now)));
    }
    let mut progress = None;
    if shared.has_hook() && !all_closed {
        let interval = shared.config.progress_interval;
        if next_progress.is_none_or(|t| now >= t) {
            // At the end of a manual clock's time there is no next tick: tick on every check.
            *next_progress = now.checked_add(interval);
            let remaining = st.remaining(shared.config.total_budget, now);
            progress = Some(PhaseChange::new(
                PhaseEvent::Progress,
                at,
                st.open_phases(now),
                remaining,
            ));
        }
        sleep = sleep.min(next_progress.map_or(interval, |t| t.saturating_duration_since(now)));
    }
    due.overruns = overruns;
    due.progress = progress;
    Some((due, sleep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn the_snapshot_before_a_kill_comes_a_second_early_or_at_half_time_or_within_the_cap() {
        assert_eq!(kill_snapshot_at(s(30.0), None), s(29.0));
        assert_eq!(kill_snapshot_at(s(0.8), None), s(0.4));
        assert_eq!(kill_snapshot_at(Duration::ZERO, None), Duration::ZERO);
        // Extensions of 2 s every second: a quarter step, after the next one is due.
        assert_eq!(kill_snapshot_at(s(12.0), Some(s(0.5))), s(11.5));
        assert_eq!(kill_snapshot_at(s(12.0), Some(s(5.0))), s(11.0));
    }

    #[test]
    fn the_cpu_gap_fits_the_time_left_before_a_kill() {
        let gap = s(0.15);
        assert_eq!(fit_cpu_gap(gap, None), gap);
        assert_eq!(fit_cpu_gap(gap, Some(s(30.0))), gap);
        // 250 ms deadline, snapshot at half time: 125 ms left, a quarter of it.
        assert_eq!(fit_cpu_gap(gap, Some(s(0.125))), s(0.125) / 4);
        assert_eq!(fit_cpu_gap(gap, Some(Duration::ZERO)), Duration::ZERO);
    }

    fn overrun(index: Option<usize>, label: &str) -> Overrun {
        Overrun {
            index,
            label: label.to_owned(),
            at: s(1.0),
            budget: s(0.5),
        }
    }

    #[test]
    fn one_check_takes_one_snapshot_the_kills_first() {
        let mut due = Due {
            overruns: (0..20)
                .map(|i| overrun(Some(i), &format!("p{i}")))
                .collect(),
            ..Due::default()
        };
        due.overruns.push(overrun(None, "shutdown"));
        // Twenty phases over budget: one snapshot, of the one opened last.
        let (reason, phase) = due.snapshot(true).unwrap();
        assert_eq!(reason, StuckReason::Budget);
        assert_eq!(phase.unwrap().0, "p19");
        assert!(due.snapshot(false).is_none(), "snapshots on budget off");
        // The kill's is due too: it is the one taken.
        due.kill_snapshot = true;
        assert_eq!(due.snapshot(true), Some((StuckReason::KillDeadline, None)));
        // Only phases that closed over budget (already reserved): one for them all.
        let due = Due {
            pending: vec![("a".into(), s(1.0)), ("b".into(), s(2.0))],
            ..Due::default()
        };
        let (reason, phase) = due.snapshot(true).unwrap();
        assert_eq!(
            (reason, phase.unwrap().0),
            (StuckReason::Budget, "a".to_owned())
        );
    }
}

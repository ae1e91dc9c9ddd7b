//! The budget watchdog: a plain thread (no async runtime needed) that warns while a phase is
//! still running past its budget, and ticks the progress hook.

use std::sync::{Arc, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::timeline::hook::{PhaseChange, PhaseEvent};
use crate::timeline::state::Shared;

/// Longest sleep between checks, so a dropped layer or a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);

impl Shared {
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
            spawn(self);
        } else {
            self.wake_watchdog();
        }
    }
}

fn spawn(shared: &Arc<Shared>) {
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

fn run(weak: &Weak<Shared>) {
    let mut next_progress: Option<Instant> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        // Held from claiming a warning to logging it, so a phase closing meanwhile logs its
        // `done` after this warning, not before.
        let order = shared.record_lock.lock();
        let Some((overruns, progress, sleep)) = check(&shared, &mut next_progress) else {
            return;
        };
        for o in overruns {
            shared.write_over_budget(o.index, &o.label, o.at, o.budget);
            crate::timeline::events::over_budget(&shared, &o.label, o.at, o.budget);
        }
        drop(order);
        if let Some(change) = progress {
            shared.notify(|| change);
        }
        let clock = shared.clock.clone();
        drop(shared);
        // Wake just past the next deadline: "over" means strictly longer than the budget.
        clock.sleep(sleep + Duration::from_millis(1));
    }
}

/// Finds overruns (marking them warned) under the lock; `None` when the watchdog should exit.
fn check(
    shared: &Shared,
    next_progress: &mut Option<Instant>,
) -> Option<(Vec<Overrun>, Option<PhaseChange>, Duration)> {
    let now = shared.clock.now();
    let mut st = shared.lock();
    let all_closed = st.phases.iter().all(|p| p.close.is_some());
    if st.finished.is_some() && all_closed {
        st.watchdog_running = false;
        return None;
    }
    let at = st.offset(now);
    let mut sleep = MAX_SLEEP;
    let mut overruns = Vec::new();
    for (i, p) in st.phases.iter_mut().enumerate() {
        let (None, false, Some(budget)) = (p.close, p.warned, p.budget) else {
            continue;
        };
        let ran = now.saturating_duration_since(p.open);
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
    Some((overruns, progress, sleep))
}

//! The handle the app (and the signal helper) use to drive and inspect a shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::context::trigger::ShutdownTrigger;
use crate::error::Error;
use crate::stuck::snapshot::{StuckReason, StuckSnapshot};
use crate::sys::clock::secs;
use crate::timeline::report::ShutdownReport;
use crate::timeline::state::Timeline;
use crate::verdict::PreviousShutdown;

/// A cheap, cloneable handle to a [`ShutdownLayer`](crate::ShutdownLayer)'s shutdown.
///
/// ```
/// use shutdown_forensics::{ShutdownLayer, phase};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let layer = ShutdownLayer::new();
/// let handle = layer.handle();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     assert!(handle.begin());
///     phase!("drain", active_at_start = 3).in_scope(|| { /* drain */ });
///     handle.finish();
/// });
/// let report = handle.report();
/// assert!(report.complete);
/// assert_eq!(report.phases[0].name, "drain");
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) shared: Arc<Timeline>,
}

/// A [`ShutdownHandle`] that does not keep the layer alive.
#[derive(Debug, Clone)]
pub(crate) struct WeakHandle(std::sync::Weak<Timeline>);

impl WeakHandle {
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))]
    pub(crate) fn upgrade(&self) -> Option<ShutdownHandle> {
        self.0.upgrade().map(|shared| ShutdownHandle { shared })
    }
}

impl ShutdownHandle {
    /// Starts the shutdown now: offsets count from this instant. Returns false (and changes
    /// nothing) when the shutdown had already begun, explicitly or by a first phase.
    pub fn begin(&self) -> bool {
        self.shared.begin(self.shared.clock.now(), None)
    }

    /// Starts the shutdown at `trigger.at` (the signal's receipt), recording the trigger in
    /// the report and flight record. Returns false when it had already begun.
    pub fn begin_with(&self, trigger: ShutdownTrigger) -> bool {
        self.shared.begin(trigger.at, Some(trigger.info()))
    }

    /// Time since the shutdown's origin, or `None` before it began.
    #[must_use]
    pub fn elapsed(&self) -> Option<Duration> {
        let now = self.shared.clock.now();
        let origin = self.shared.lock().origin?;
        Some(now.saturating_duration_since(origin))
    }

    /// Appends `{"kind":"note","note":<kind>,"t":<offset>,"value":<value>}` to the flight
    /// record (e.g. the full context JSON, a repeated signal). No-op without a record.
    pub fn record(&self, kind: &str, value: Value) {
        if let (Some(record), "context") = (&self.shared.record, kind) {
            // Who stopped us, for the history's line at `finish` (timeline/history.rs).
            record.keep_stop_context(&value);
        }
        let t = self.elapsed().map(secs);
        self.shared.write(
            &json!({"kind": "note", "note": kind, "t": t, "value": value}),
            false,
        );
    }

    /// Forces the flight record to disk (`fdatasync`), e.g. before a forced exit.
    ///
    /// # Errors
    /// When the sync fails. Without a flight record this does nothing and succeeds.
    pub fn flush(&self) -> Result<(), Error> {
        match &self.shared.record {
            Some(r) => r
                .sync()
                .map_err(|e| Error::io(format!("sync flight record {}", r.path().display()), e)),
            None => Ok(()),
        }
    }

    /// Logs `+3.62s shutdown complete (total teardown 3.62s)` and records completion, once.
    /// Returns the total teardown time, or `None` if the shutdown never began or had already
    /// finished. Closing a root span named `shutdown` (target `shutdown`) does the same.
    pub fn finish(&self) -> Option<Duration> {
        self.shared.finish()
    }

    /// The shutdown so far: phases done, over budget or still open (with the time they ran).
    #[must_use]
    pub fn report(&self) -> ShutdownReport {
        let now = self.shared.clock.now();
        let st = self.shared.lock();
        ShutdownReport::from_state(&st, now, self.shared.config.total_budget)
    }

    /// Where and why the shutdown is stuck, now: the open spans (including those opened
    /// before the stop), every thread and the system call it sits in, the sockets and how long
    /// their peers have been silent, joined into findings. Logged as one WARN line
    /// (`+12.00s drain stuck (on demand): ...`), written to the flight record and kept in the
    /// report, like the snapshots the watchdog takes at a budget's end and before a kill.
    ///
    /// Blocks the calling thread ~150 ms (each thread's CPU is sampled twice); from async code
    /// call it through `tokio::task::spawn_blocking`. The calling thread itself is left out of
    /// the thread list (it is busy reading `/proc`). Never panics; a read that fails is listed
    /// in [`StuckSnapshot::unknown`].
    ///
    /// ```
    /// use shutdown_forensics::{ShutdownLayer, phase};
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let layer = ShutdownLayer::new();
    /// let handle = layer.handle();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let _request = tracing::info_span!("request", path = "/upload").entered();
    ///     let _drain = phase!("drain").entered();
    ///     let snapshot = handle.stuck_snapshot();
    ///     assert_eq!(snapshot.phase.as_deref(), Some("drain"));
    ///     assert!(snapshot.spans.iter().any(|s| s.name == "request"));
    ///     assert!(!snapshot.findings.is_empty());
    /// });
    /// ```
    #[must_use]
    pub fn stuck_snapshot(&self) -> StuckSnapshot {
        self.shared.stuck_snapshot(StuckReason::OnDemand, None)
    }

    /// Says when the supervisor will kill the process, counted from the shutdown origin (the
    /// signal's receipt): Kubernetes' `terminationGracePeriodSeconds`, docker's `stop -t`.
    /// Shortly before it (1 s, or half the time left if less) the watchdog takes a stuck
    /// snapshot, so the record says where the stop was stuck when the SIGKILL came. The
    /// signal helper sets it from systemd's `TimeoutStopUSec` or
    /// [`ForensicsBuilder::with_kill_deadline`](crate::ForensicsBuilder::with_kill_deadline).
    pub fn set_kill_deadline(&self, deadline: Duration) {
        {
            let mut st = self.shared.lock();
            st.kill_deadline = Some(deadline);
            st.kill_snapshot_taken = false;
            st.kill_lead_cap = None;
        }
        self.shared.wake_watchdog_if_needed();
    }

    /// Moves the kill deadline later (never earlier): systemd's after an
    /// `EXTEND_TIMEOUT_USEC` of `step`, the next one due within half a step while the shutdown
    /// progresses. The snapshot before the kill then comes at most a quarter step before the
    /// deadline, so that it is taken only once the extensions have stopped; one already taken
    /// for the earlier deadline is taken again before the new one.
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))] // only the notify hook extends
    pub(crate) fn extend_kill_deadline(&self, deadline: Duration, step: Duration) {
        let mut st = self.shared.lock();
        if st.kill_deadline.is_none_or(|d| deadline > d) {
            st.kill_deadline = Some(deadline);
            st.kill_snapshot_taken = false;
            st.kill_lead_cap = Some(step / 4);
        }
    }

    /// A handle that does not keep the layer alive.
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakHandle {
        WeakHandle(Arc::downgrade(&self.shared))
    }

    /// The verdict on the previous run, when a flight record was configured.
    #[must_use]
    pub fn previous_shutdown(&self) -> Option<&PreviousShutdown> {
        self.shared.record.as_ref().map(|r| r.previous_shutdown())
    }

    /// Attaches a second phase-change hook after the layer was built (the signal helper's
    /// systemd notifications). Returns false when one was already attached.
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))] // only the notify hook uses it
    pub(crate) fn attach_hook(&self, hook: crate::timeline::state::Hook) -> bool {
        let attached = self.shared.late_hook.set(hook).is_ok();
        if attached {
            // A shutdown already under way needs the watchdog for the hook's progress ticks.
            self.shared.wake_watchdog_if_needed();
        }
        attached
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use tracing_subscriber::layer::SubscriberExt;

    use crate::report::{ManualClock, PhaseEvent};
    use crate::{phase, ShutdownLayer};

    #[test]
    fn an_attached_hook_hears_starts_and_ends_not_only_progress_and_completion() {
        let clock = ManualClock::new();
        let layer = ShutdownLayer::builder().with_clock(clock.clone()).build();
        let handle = layer.handle();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        assert!(handle.attach_hook(Box::new(move |c| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c.event.clone());
        })));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            handle.begin();
            phase!("drain").in_scope(|| clock.advance(Duration::from_secs(2)));
            handle.finish();
        });
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let ordered: Vec<_> = seen
            .into_iter()
            .filter(|e| *e != PhaseEvent::Progress)
            .collect();
        assert_eq!(
            ordered,
            [
                PhaseEvent::Started("drain".into()),
                PhaseEvent::Ended {
                    phase: "drain".into(),
                    duration: Duration::from_secs(2)
                },
                PhaseEvent::Complete
            ]
        );
    }

    #[test]
    fn a_layer_whose_clock_reached_the_end_of_time_does_not_panic() {
        let clock = ManualClock::new();
        let tick = Arc::new(AtomicBool::new(false));
        let ticked = Arc::clone(&tick);
        let layer = ShutdownLayer::builder()
            .with_clock(clock.clone())
            .with_total_budget(Duration::from_secs(1))
            .with_progress_interval(Duration::from_millis(10))
            .on_phase_change(move |c| {
                if c.event == PhaseEvent::Progress && c.elapsed > Duration::from_secs(1 << 40) {
                    ticked.store(true, Ordering::Relaxed);
                }
            })
            .build();
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            handle.begin();
            phase!("drain", budget_s = 0.5).in_scope(|| {
                clock.advance(Duration::MAX);
                // The watchdog keeps ticking (it used to die computing its next tick).
                let deadline = Instant::now() + Duration::from_secs(5);
                while !tick.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            assert!(
                tick.load(Ordering::Relaxed),
                "no progress tick at the end of time"
            );
            handle.finish();
        });
        let report = handle.report();
        assert!(report.complete && report.elapsed_s > 1e9);
        assert!(!report.to_string().is_empty());
    }
}

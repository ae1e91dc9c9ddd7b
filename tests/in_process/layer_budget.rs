//! Budgets: warnings while a phase still runs (from the watchdog thread), once; the margin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{ms, setup, Capture, CaptureWriter};
use shutdown_forensics::report::{ManualClock, PhaseEvent, PhaseOutcome};
use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
use tracing::dispatcher::with_default;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

const DRAIN_OVER: &str =
    " WARN shutdown: +33.00s drain over budget (30.00s) phase=drain offset_s=33.0 budget_s=30.0";

#[test]
fn over_budget_warning_is_emitted_while_the_phase_runs_and_only_once() {
    let (dispatch, handle, capture, clock) =
        setup(ShutdownLayer::builder().with_phase_budget("drain", Duration::from_secs(30)));
    with_default(&dispatch, || {
        handle.begin();
        let drain = phase!("drain");
        let _g = drain.enter();
        clock.advance(ms(29_000));
        std::thread::sleep(ms(100)); // let the watchdog look: not over yet
        assert!(!capture.text().contains("over budget"));
        clock.advance(ms(4_000));
        // The phase is still entered and open: the warning comes from the watchdog thread.
        assert!(capture.wait_for("over budget"), "{}", capture.text());
        assert_eq!(capture.lines().last().map(String::as_str), Some(DRAIN_OVER));
        clock.advance(ms(10_000));
        let report = handle.report();
        assert_eq!(report.phases[0].outcome, PhaseOutcome::Open);
        assert_eq!(report.phases[0].duration_s, 43.0);
    });
    // Neither later checks nor the close repeat it.
    assert_eq!(
        capture.text().matches("over budget").count(),
        1,
        "{}",
        capture.text()
    );
    assert_eq!(handle.report().phases[0].outcome, PhaseOutcome::OverBudget);
}

#[test]
fn a_budget_s_field_sets_the_budget_and_close_warns_if_the_watchdog_did_not() {
    let (dispatch, handle, capture, clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        handle.begin();
        // Closed before any watchdog check can run in between: the close itself warns.
        phase!("db_close", budget_s = 0.5).in_scope(|| clock.advance(ms(800)));
    });
    let lines = capture.lines();
    assert_eq!(
        lines[1..],
        [
            " WARN shutdown: +0.80s db_close over budget (0.50s) phase=db_close offset_s=0.8 budget_s=0.5",
            " INFO shutdown: +0.80s db_close done (0.80s) phase=db_close offset_s=0.8 duration_s=0.8",
        ]
    );
    assert_eq!(capture.text().matches("over budget").count(), 1);
    assert_eq!(handle.report().phases[0].outcome, PhaseOutcome::OverBudget);
}

#[test]
fn whole_shutdown_budget_warns_and_the_report_states_the_margin() {
    let (dispatch, handle, capture, clock) =
        setup(ShutdownLayer::builder().with_total_budget(Duration::from_secs(90)));
    with_default(&dispatch, || {
        handle.begin();
        let drain = phase!("drain");
        let _g = drain.enter();
        clock.advance(ms(60_000));
        let report = handle.report();
        assert_eq!((report.budget_s, report.margin_s), (Some(90.0), Some(30.0)));
        clock.advance(ms(35_000));
        assert!(
            capture.wait_for("shutdown over budget"),
            "{}",
            capture.text()
        );
    });
    assert!(capture.text().contains(
        " WARN shutdown: +95.00s shutdown over budget (90.00s) phase=shutdown offset_s=95.0 budget_s=90.0"
    ));
    assert_eq!(handle.report().margin_s, Some(-5.0));
}

#[test]
fn the_hook_hears_starts_ends_progress_and_completion() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let builder = ShutdownLayer::builder()
        .with_total_budget(Duration::from_secs(10))
        .on_phase_change(move |c| {
            if let Ok(mut v) = sink.lock() {
                v.push((c.event.clone(), c.open.len(), c.remaining));
            }
        });
    let (dispatch, handle, _capture, clock) = setup(builder);
    with_default(&dispatch, || {
        handle.begin();
        phase!("drain").in_scope(|| {
            clock.advance(ms(2000));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let progress = seen
                    .lock()
                    .map(|v| v.iter().any(|e| e.0 == PhaseEvent::Progress));
                if progress.unwrap_or(false) {
                    break;
                }
                std::thread::sleep(ms(5));
            }
        });
        handle.finish();
    });
    let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
    // Progress ticks come from the watchdog thread at any time; the rest is ordered.
    let ordered: Vec<_> = seen
        .iter()
        .filter(|e| e.0 != PhaseEvent::Progress)
        .collect();
    assert_eq!(
        ordered.first().copied(),
        Some(&(
            PhaseEvent::Started("drain".into()),
            1,
            Some(Duration::from_secs(10))
        ))
    );
    assert!(
        seen.iter().any(|e| e.0 == PhaseEvent::Progress && e.1 == 1),
        "{seen:?}"
    );
    assert!(seen.contains(&(
        PhaseEvent::Ended {
            phase: "drain".into(),
            duration: ms(2000)
        },
        0,
        Some(ms(8000))
    )));
    assert_eq!(seen.last().map(|e| &e.0), Some(&PhaseEvent::Complete));
}

/// A writer that stalls the watchdog's lines (as a slow disk or a full pipe would),
/// raising `stalled` while it waits.
#[derive(Clone)]
struct SlowWatchdog {
    capture: Capture,
    stalled: Arc<AtomicBool>,
}

impl<'a> MakeWriter<'a> for SlowWatchdog {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        // The watchdog's lines are written by the crate's log thread (so that a blocked sink
        // never stops the watchdog itself).
        if std::thread::current().name() == Some("shutdown-log") {
            self.stalled.store(true, Ordering::SeqCst);
            std::thread::sleep(ms(300));
        }
        self.capture.make_writer_owned()
    }
}

#[test]
fn a_watchdog_warning_is_never_logged_after_the_phase_is_done() {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    let layer = ShutdownLayer::builder()
        .with_clock(clock.clone())
        .with_flight_record(FlightRecord::open(&path).expect("open"))
        .build();
    let handle = layer.handle();
    let capture = Capture::default();
    let stalled = Arc::new(AtomicBool::new(false));
    let writer = SlowWatchdog {
        capture: capture.clone(),
        stalled: Arc::clone(&stalled),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_writer(writer);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(fmt).with(layer));
    with_default(&dispatch, || {
        handle.begin();
        let drain = phase!("drain", budget_s = 0.5);
        let guard = drain.enter();
        clock.advance(ms(800));
        // The watchdog has claimed the warning and is busy writing it when the phase closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stalled.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(ms(1));
        }
        drop(guard);
        drop(drain);
    });
    assert!(capture.wait_for("done"), "{}", capture.text());
    assert!(capture.wait_for("over budget"), "{}", capture.text());
    assert_eq!(
        capture.lines()[1..],
        [
            " WARN shutdown: +0.80s drain over budget (0.50s) phase=drain offset_s=0.8 budget_s=0.5",
            " INFO shutdown: +0.80s drain done (0.80s) phase=drain offset_s=0.8 duration_s=0.8",
        ]
    );
    // The flight record tells the same story in the same order.
    let text = std::fs::read_to_string(&path).expect("read record");
    let kinds: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        // Heartbeats and the snapshot of the overrun come at the watchdog's own pace (no
        // longer held up by the stalled writer): not part of the story told here.
        .filter(|k| k != "heartbeat" && k != "stuck")
        .collect();
    assert_eq!(
        kinds,
        ["run", "begin", "phase_start", "over_budget", "phase_end"]
    );
}

#[test]
fn a_budget_no_phase_used_is_said_at_finish_with_the_closest_name() {
    let (dispatch, handle, capture, _clock) = setup(
        ShutdownLayer::builder()
            .with_phase_budget("drain", Duration::from_secs(30))
            .with_phase_budget("db_close", Duration::from_secs(5)),
    );
    with_default(&dispatch, || {
        handle.begin();
        phase!("Drain").in_scope(|| {});
        phase!("db_close").in_scope(|| {});
        handle.finish();
    });
    let text = capture.text();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("never applied"))
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(
        said[0].contains("phase budget drain (30.00s) never applied: no phase named drain ran")
            && said[0].contains("closest: Drain"),
        "{text}"
    );
    // After the completion line: it is about the whole shutdown.
    assert!(
        text.find("shutdown complete") < text.find("never applied"),
        "{text}"
    );
}

#[test]
fn a_span_named_like_a_budgeted_phase_outside_the_shutdown_target_is_named_with_the_fix() {
    let (dispatch, handle, capture, _clock) =
        setup(ShutdownLayer::builder().with_phase_budget("drain_misnamed", Duration::from_secs(3)));
    with_default(&dispatch, || {
        handle.begin();
        // `info_span!` instead of `phase!`: target is this module, not `shutdown`.
        tracing::info_span!("drain_misnamed").in_scope(|| {});
        handle.finish();
    });
    let text = capture.text();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("never applied"))
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(
        said[0].contains(
            "a span named drain_misnamed with target in_process::layer_budget is not a phase"
        ) && said[0].contains("phase!(\"drain_misnamed\")"),
        "{text}"
    );
}

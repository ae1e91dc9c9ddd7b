//! The layer next to what apps really install: fmt + EnvFilter + tracing-appender's
//! non-blocking writer; other crates' events untouched; no re-entrancy deadlock.

use std::sync::mpsc;
use std::time::Duration;

use crate::support::Capture;
use shutdown_forensics::{phase, ShutdownHandle, ShutdownLayer};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

fn run_app(filter: &str) -> (Vec<String>, ShutdownHandle) {
    let capture = Capture::default();
    let (writer, guard) = tracing_appender::non_blocking(capture.make_writer_owned());
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_writer(writer),
        )
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "app", "serving");
        tracing::debug!(target: "noisy", "hidden");
        let request = tracing::info_span!(target: "app", "request", id = 7);
        request.in_scope(|| tracing::info!(target: "app", "handled"));
        handle.begin();
        phase!("drain", active_at_start = 1).in_scope(|| {
            tracing::info!(target: "app", "draining");
        });
        handle.finish();
    });
    drop(guard); // flushes the non-blocking worker
    (capture.lines(), handle)
}

#[test]
fn works_with_fmt_env_filter_and_non_blocking_writer() {
    let (lines, handle) = run_app("info");
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert_eq!(lines[0], " INFO app: serving");
    assert_eq!(lines[1], " INFO request{id=7}: app: handled");
    // Real time here: offsets vary, the shape does not.
    let shutdown_line =
        |l: &str, what: &str| l.starts_with(" INFO shutdown: +") && l.contains(what);
    assert!(
        shutdown_line(&lines[2], "s drain started phase=drain offset_s="),
        "{}",
        lines[2]
    );
    // The app's own event inside a phase keeps its span context.
    assert_eq!(lines[3], " INFO drain{active_at_start=1}: app: draining");
    assert!(
        shutdown_line(&lines[4], "s) active_at_start=1 phase=drain "),
        "{}",
        lines[4]
    );
    assert!(
        // The request span opened before the stop is still open when the shutdown ends (no
        // phase ran out of budget waiting for it: the completion line says it, once).
        shutdown_line(&lines[5], "s shutdown complete (total teardown ")
            && lines[5].contains(" abandoned_spans=1 oldest_abandoned=\"request{id=7} age "),
        "{}",
        lines[5]
    );
    assert_eq!(handle.report().phases.len(), 1);
}

#[test]
fn a_restrictive_filter_needs_only_shutdown_info() {
    let (lines, handle) = run_app("warn,shutdown=info");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.starts_with(" INFO shutdown: +")),
        "{lines:#?}"
    );
    assert!(handle.report().complete);
}

/// A layer that, on each shutdown event, reads the shutdown state: deadlocks if the event was
/// emitted while the shutdown layer held its lock.
struct Reentrant(ShutdownHandle);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Reentrant {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "shutdown" {
            let _ = self.0.report();
            let _ = self.0.elapsed();
            self.0
                .record("seen", serde_json::json!(event.metadata().level().as_str()));
        }
    }
}

#[test]
fn layers_that_react_to_shutdown_events_do_not_deadlock() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let layer = ShutdownLayer::builder()
            .with_phase_budget("drain", Duration::from_millis(1))
            .build();
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry()
            .with(Reentrant(handle.clone()))
            .with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let drain = phase!("drain", n = tracing::field::Empty);
            drain.in_scope(|| std::thread::sleep(Duration::from_millis(20)));
            drain.record("n", 1);
            drop(drain);
            handle.finish();
        });
        let _ = done_tx.send(handle.report());
    });
    let report = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("deadlock: the shutdown finished within 20 s");
    assert!(report.complete);
}

//! A planned stop: a marker naming this process turns the SIGTERM into a planned one.
//!
//! One install per process (signal handlers are process-global): ONE test in this file. The
//! subscriber is the thread's default only (`with_default`), not the global one: the listener
//! thread must still reach the subscriber its `ShutdownLayer` lives in.

mod support;

use std::time::Duration;

use shutdown_forensics::context::markers::write_marker;
use shutdown_forensics::context::ContextOptions;
use shutdown_forensics::{Forensics, ShutdownLayer};
use support::{dispatch, kill_us, lines_with, Capture, LOOSE};

#[test]
fn a_marker_naming_us_makes_the_stop_planned() {
    let dir = tempfile::tempdir().unwrap();
    write_marker(&dir.path().join(".planned-stop.json"), std::process::id()).unwrap();
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let cap = Capture::default();
    let dispatch = dispatch(layer, &cap);
    tracing::dispatcher::with_default(&dispatch, || {
        let forensics = Forensics::builder()
            .with_handle(handle.clone())
            .with_context_options(ContextOptions::default().with_marker_dir(dir.path()))
            .with_stop_budget(None, Duration::ZERO)
            .install()
            .unwrap();
        let mut kill = kill_us("TERM");
        let ctx = forensics.signal().wait_timeout(LOOSE).expect("context");
        kill.wait().unwrap();
        assert!(ctx.is_planned());
        let marker = ctx.planned_stop_marker.as_ref().expect("marker read");
        assert!(marker.for_self);
        assert!(ctx.takeover_marker.is_none());
        assert!(handle.report().trigger.is_some_and(|t| t.planned));

        assert!(cap.wait_for("Shutdown context"), "{}", cap.text());
        let text = cap.text();
        let lines = lines_with(&text, "Shutdown context");
        assert_eq!(lines.len(), 1, "{text}");
        assert!(
            lines[0].contains("planned_stop_marker_present=yes"),
            "{text}"
        );
        assert!(lines[0].contains("stop=planned"), "{text}");
        // docs/operators.md: a planned stop is routine, so the line is INFO.
        assert!(lines[0].trim_start().starts_with("INFO "), "{text}");
        assert!(!lines[0].contains("takeover_marker_present"), "{text}");
    });
}

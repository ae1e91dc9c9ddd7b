//! The signal helper end to end in this process: real SIGTERMs sent by real `kill` processes.
//!
//! Signal handlers are process-global, so this file holds ONE test and installs once.

mod support;

use std::sync::Arc;
use std::time::Duration;

use shutdown_forensics::context::SignalCause;
use shutdown_forensics::{FlightRecord, Forensics, ShutdownLayer};
use support::{dispatch, kill_us, lines_with, wait_until, Capture, LOOSE};

#[test]
fn first_sigterm_is_captured_once_and_repeats_are_only_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let record_path = dir.path().join("flight.jsonl");
    let diag_path = dir.path().join("diag.log");
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&record_path).unwrap())
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    tracing::dispatcher::set_global_default(dispatch(layer, &cap)).unwrap();

    let forensics = Forensics::builder()
        .with_handle(handle.clone())
        .with_diagnostic(&diag_path)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    let signal = forensics.signal();
    assert!(signal.context().is_none());
    assert_eq!(signal.signal_count(), 0);
    // The listener walks the signal path once when it starts (warm-up), on the thread that
    // later handles the signal, so strictly before it: the exact counts below (one context
    // line, one context note, one diagnostic header, the trigger naming the kill) would
    // catch any trace the warm-up left.

    // First SIGTERM, from a `kill` we do not reap until its signal was handled.
    let mut kill1 = kill_us("TERM");
    let ctx = signal.wait_timeout(LOOSE).expect("context captured");
    let pid1 = kill1.id();
    kill1.wait().unwrap();
    let sender = ctx.sender.as_ref().expect("sender from siginfo");
    assert_eq!(sender.pid, pid1);
    assert_eq!(sender.name.as_deref(), Some("kill"));
    assert_eq!(sender.cause, SignalCause::Kill);
    assert_eq!(ctx.signal, "SIGTERM");
    assert_eq!(ctx.signal_num, Some(libc::SIGTERM));
    assert!(!ctx.is_planned());
    assert!(cap.wait_for("Shutdown context"));
    let text = cap.text();
    let context_lines = lines_with(&text, "Shutdown context");
    assert_eq!(context_lines.len(), 1, "{text}");
    assert!(
        context_lines[0].contains(&format!(
            "signal=SIGTERM sender_pid={pid1} sender_name=kill"
        )),
        "{text}"
    );
    assert!(context_lines[0].contains("cause=kill"), "{text}");
    assert!(context_lines[0].contains("stop=unexpected"), "{text}");

    // The layer's timeline starts at the signal, with the trigger and its sender.
    let trigger = handle.report().trigger.expect("trigger in the report");
    assert_eq!(trigger.signal_name.as_deref(), Some("SIGTERM"));
    assert_eq!(trigger.sender.as_ref().map(|s| s.pid), Some(pid1));
    assert!(handle.elapsed().is_some());

    // The async trigger hands out the very same context.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let async_ctx = rt
        .block_on(async { tokio::time::timeout(LOOSE, signal.recv()).await })
        .expect("recv resolves once triggered");
    assert!(Arc::ptr_eq(&ctx, &async_ctx));
    assert!(Arc::ptr_eq(&ctx, &signal.wait()));

    // The diagnostic ran once; wait for its header before the repeat.
    let header = "=== shutdown diagnostic @ SIGTERM";
    assert!(wait_until(LOOSE, || std::fs::read_to_string(&diag_path)
        .is_ok_and(|t| t.contains(header))));

    // A second SIGTERM from another `kill`: logged and recorded, nothing re-run.
    let mut kill2 = kill_us("TERM");
    let pid2 = kill2.id();
    let repeat = format!("repeated signal SIGTERM #2 from pid {pid2} (kill) at +");
    assert!(cap.wait_for(&repeat), "{}", cap.text());
    kill2.wait().unwrap();
    assert_eq!(signal.signal_count(), 2);
    assert!(Arc::ptr_eq(&ctx, &signal.context().unwrap()));

    // Give a (wrongly) re-run capture or diagnostic time to show up before counting.
    std::thread::sleep(Duration::from_millis(300));
    let text = cap.text();
    assert_eq!(lines_with(&text, "Shutdown context").len(), 1, "{text}");
    assert_eq!(lines_with(&text, "repeated signal").len(), 1, "{text}");
    let diag = std::fs::read_to_string(&diag_path).unwrap();
    assert_eq!(diag.matches(header).count(), 1, "{diag}");

    // The flight record holds the context note and the repeated-signal note.
    let record = std::fs::read_to_string(&record_path).unwrap();
    let notes: Vec<serde_json::Value> = record
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "note")
        .collect();
    let context_notes: Vec<_> = notes.iter().filter(|v| v["note"] == "context").collect();
    assert_eq!(context_notes.len(), 1, "{record}");
    let context_note = context_notes[0];
    assert_eq!(context_note["value"]["sender"]["pid"], pid1);
    assert_eq!(context_note["value"]["signal"], "SIGTERM");
    let repeat_note = notes
        .iter()
        .find(|v| v["note"] == "repeated_signal")
        .unwrap_or_else(|| panic!("no repeated_signal note in {record}"));
    assert_eq!(repeat_note["value"]["count"], 2);
    assert_eq!(repeat_note["value"]["sender"]["pid"], pid2);
    assert_eq!(repeat_note["value"]["sender"]["name"], "kill");

    assert!(forensics.finish().is_some());
    assert!(cap.text().contains("shutdown complete"));
}

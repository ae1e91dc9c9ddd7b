//! A panic is recorded and judged as one (issue 12, defect 4): it used to be recorded as a
//! normal exit (`Drop for Forensics` wrote the `exit` note while unwinding) and the next start
//! said nothing. The hook is chained: the app's own hook still runs.
//!
//! Each run is a child process (the hook and the signal helper are process-wide).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

const PATH_ENV: &str = "SF_PANIC_RECORD";

/// The app's setup: its own panic hook first (it prints a marker), then the helper.
fn setup() -> Option<Forensics> {
    let path = std::env::var_os(PATH_ENV)?;
    std::panic::set_hook(Box::new(|_| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "app hook ran");
        let _ = out.flush();
    }));
    let record = FlightRecord::open(path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    Some(
        Forensics::builder()
            .with_handle(handle)
            .with_stop_budget(None, Duration::ZERO)
            .install()
            .unwrap(),
    )
}

#[test]
#[ignore = "run by a_panic_in_main_is_judged_a_panic"]
fn role_main_panics() {
    let Some(_forensics) = setup() else { return };
    let v: Vec<u32> = Vec::new();
    panic!("boom at index {}", v.len() + 42);
}

#[test]
#[ignore = "run by a_panic_during_the_shutdown_names_the_phase"]
fn role_panics_in_drain() {
    let Some(forensics) = setup() else { return };
    forensics.signal().trigger();
    let _g = phase!("drain").entered();
    panic!("drain exploded");
}

#[test]
#[ignore = "run by a_caught_panic_then_a_normal_exit_is_an_exit"]
fn role_caught_panic() {
    let Some(_forensics) = setup() else { return };
    let worker = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("worker failed"))
        .unwrap();
    assert!(worker.join().is_err());
}

fn run(role: &str, path: &Path) -> Output {
    rerun_as(role).env(PATH_ENV, path).output().unwrap()
}

#[test]
fn a_panic_in_main_is_judged_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let out = run("role_main_panics", &path);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("app hook ran"));
    let verdict = FlightRecord::previous(&path).unwrap();
    let PreviousShutdown::Panicked {
        message,
        location,
        thread,
        shutdown_begun,
        ..
    } = &verdict
    else {
        panic!("{verdict:?}");
    };
    assert_eq!(message, "boom at index 42");
    assert!(
        location
            .as_deref()
            .is_some_and(|l| l.starts_with("tests/panic_verdict.rs:")),
        "{location:?}"
    );
    assert_eq!(thread.as_deref(), Some("role_main_panics"));
    assert!(!shutdown_begun);
    let message = verdict.message().unwrap();
    assert!(
        message.starts_with("Previous run ended in a panic: pid ")
            && message.ends_with(": \"boom at index 42\""),
        "{message}"
    );
}

#[test]
fn a_panic_during_the_shutdown_names_the_phase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let out = run("role_panics_in_drain", &path);
    assert!(!out.status.success());
    let verdict = FlightRecord::previous(&path).unwrap();
    assert!(
        matches!(
            &verdict,
            PreviousShutdown::Panicked { shutdown_begun: true, phase: Some(p), message, .. }
                if p == "drain" && message == "drain exploded"
        ),
        "{verdict:?}"
    );
    assert!(verdict
        .message()
        .unwrap()
        .starts_with("Previous shutdown did not complete: pid "));
}

#[test]
fn a_caught_panic_then_a_normal_exit_is_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let out = run("role_caught_panic", &path);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("app hook ran"));
    // The panic is in the record, but the run went on and ended normally.
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("\"worker failed\""));
    let verdict = FlightRecord::previous(&path).unwrap();
    assert!(
        matches!(verdict, PreviousShutdown::Exited { .. }),
        "{verdict:?}"
    );
}

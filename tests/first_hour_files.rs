//! A new user's first run: the files the crate writes go into directories that need not exist
//! yet, and an error that stops the start says which path failed and why, readably, also
//! through `Debug` (what `main` returning `Result<_, Box<dyn Error>>` prints).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shutdown_forensics::diagnostic::{spawn_diagnostic_with, DiagnosticOptions};
use shutdown_forensics::{ErrorKind, FlightRecord, Forensics};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_flight_record_creates_its_missing_directories_privately() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/nested/flight.jsonl");
    let record = FlightRecord::open(&path).expect("missing directories are created");
    assert_eq!(record.path(), path);
    assert_eq!(mode(&dir.path().join("state")) & 0o077, 0);
    assert_eq!(mode(&dir.path().join("state/nested")) & 0o077, 0);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn the_diagnostic_creates_its_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/shutdown-diag.log");
    let diagnostic = spawn_diagnostic_with(
        &DiagnosticOptions::new(&log)
            .with_signal_name("SIGTERM")
            .with_timeout(Duration::from_secs(5)),
    )
    .expect("missing directory is created");
    assert!(diagnostic.wait_timeout(Duration::from_secs(20)).is_some());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains(diagnostic.correlation_id()));
    assert_eq!(mode(&dir.path().join("logs")) & 0o077, 0);
}

#[test]
fn a_directory_that_cannot_be_created_is_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "a file where a directory should be").unwrap();
    let path = blocker.join("flight.jsonl");

    // Strict: the error. Lenient (the README's pattern): a record that writes nothing and says
    // why, so that a forensics crate is never why a service does not start.
    let err = FlightRecord::open_strict(&path).unwrap_err();
    let lenient = FlightRecord::open(&path).expect("the lenient open never fails");
    assert_eq!(
        lenient.error().map(ToString::to_string),
        Some(err.to_string())
    );
    assert_eq!(err.kind(), ErrorKind::Io);
    let display = err.to_string();
    assert!(
        display.starts_with(&format!("open flight record {}", path.display())),
        "{display}"
    );
    assert!(
        display.contains(&format!("create directory {}", blocker.display())),
        "{display}"
    );
    assert!(
        display.ends_with("it exists and is not a directory"),
        "{display}"
    );
    // Debug reads like Display (no `Error { kind: Io, ... }`); `{:#?}` keeps the structure.
    let debug = format!("{err:?}");
    assert!(debug.starts_with(&display), "{debug}");
    assert!(!debug.contains("kind:"), "{debug}");
    assert!(format!("{err:#?}").contains("kind: Io"));
    // Boxed, as `main` returns it.
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(format!("{boxed:?}").starts_with(&display));
}

#[test]
fn install_fails_at_start_when_the_diagnostic_directory_cannot_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("logs");
    std::fs::write(&blocker, "").unwrap();
    let err = Forensics::builder()
        .with_signals(&[libc::SIGUSR2])
        .with_stop_budget(None, Duration::ZERO)
        .with_diagnostic(blocker.join("diag.log"))
        .install()
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("prepare shutdown diagnostic"), "{text}");
    assert!(
        text.contains(&format!("create directory {}", blocker.display())),
        "{text}"
    );
}

//! The detached diagnostic, with real processes and real files: the seed's behaviour first,
//! then the file-handling guarantees (mode, symlink, rotation, size cap).
#![cfg(unix)]

use shutdown_forensics::ErrorKind;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use shutdown_forensics::diagnostic::{
    spawn_diagnostic, spawn_diagnostic_with, Diagnostic, DiagnosticOptions, DiagnosticOutcome,
};

/// Generous: the machine is shared; a normal run takes tens of milliseconds.
const FINISH_WITHIN: Duration = Duration::from_secs(20);

fn finish(diagnostic: &Diagnostic) -> DiagnosticOutcome {
    match diagnostic.wait_timeout(FINISH_WITHIN) {
        Some(outcome) => outcome,
        None => panic!("diagnostic {} still running", diagnostic.pid()),
    }
}

fn run(options: &DiagnosticOptions) -> (Diagnostic, String) {
    let diagnostic = spawn_diagnostic_with(options).expect("spawn");
    let outcome = finish(&diagnostic);
    assert!(
        matches!(outcome, DiagnosticOutcome::Exited(status) if status.success()),
        "{outcome:?}"
    );
    let log = fs::read_to_string(options.log_path()).expect("read log");
    (diagnostic, log)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

// --- seed parity (spawn_async_diagnostic) ---------------------------------------------

#[test]
fn spawns_subprocess_and_writes_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let pid = spawn_diagnostic(&log, "SIGTERM", Duration::from_secs(3)).expect("spawn");
    assert!(pid > 0);
    let deadline = Instant::now() + FINISH_WITHIN;
    let mut contents = String::new();
    while Instant::now() < deadline {
        contents = fs::read_to_string(&log).unwrap_or_default();
        if contents.contains("=== end of shutdown diagnostic") {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(contents.contains("shutdown diagnostic"), "{contents}");
    assert!(
        contents.contains("=== shutdown diagnostic @ SIGTERM ==="),
        "{contents}"
    );
    assert!(contents.contains(&format!("pid={} ", std::process::id())));
    assert!(
        contents.contains("=== end of shutdown diagnostic"),
        "{contents}"
    );
}

#[test]
fn unwritable_log_path_is_an_error_at_once() {
    let started = Instant::now();
    let result = spawn_diagnostic(
        Path::new("/proc/cant-write-here/diag.log"),
        "SIGTERM",
        Duration::from_secs(1),
    );
    assert!(result.is_err(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn does_not_block_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let started = Instant::now();
    let diagnostic = spawn_diagnostic_with(
        &DiagnosticOptions::new(&log)
            .with_signal_name("SIGTERM")
            .with_timeout(Duration::from_secs(10)),
    )
    .expect("spawn");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "spawn blocked {elapsed:?}"
    );
    finish(&diagnostic);
}

// --- the header and the sections -----------------------------------------------------

#[test]
fn header_names_signal_pid_correlation_id_and_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DiagnosticOptions::new(dir.path().join("diag.log"))
        .with_signal_name("SIGUSR2")
        .with_correlation_id("corr-4711")
        .with_target_pid(1);
    let (diagnostic, log) = run(&options);
    assert_eq!(diagnostic.correlation_id(), "corr-4711");
    assert!(
        log.contains("=== shutdown diagnostic @ SIGUSR2 ==="),
        "{log}"
    );
    assert!(
        log.contains("pid=1 correlation_id=corr-4711 date=20"),
        "{log}"
    );
    assert!(log.contains("--- processes (top 60 by CPU) ---"), "{log}");
    assert!(log.contains("--- process tree of pid 1 ---"), "{log}");
    assert!(log.contains("--- load average ---"), "{log}");
    assert!(log.contains("--- kernel messages (last 40) ---"), "{log}");
}

#[test]
fn generated_correlation_ids_are_in_the_header_and_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DiagnosticOptions::new(dir.path().join("diag.log"));
    let (first, _) = run(&options);
    let (second, log) = run(&options);
    assert_ne!(first.correlation_id(), second.correlation_id());
    for id in [first.correlation_id(), second.correlation_id()] {
        assert!(log.contains(&format!("correlation_id={id} ")), "{log}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn process_table_is_capped_at_60_rows_plus_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, log) = run(&DiagnosticOptions::new(dir.path().join("diag.log")));
    let section = log
        .split("--- processes (top 60 by CPU) ---\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n---").next())
        .expect("process section");
    let rows: Vec<&str> = section.lines().collect();
    assert!(rows.first().is_some_and(|h| h.contains("PID")), "{section}");
    assert!(rows.len() <= 61, "{} rows", rows.len());
}

// --- the log file ---------------------------------------------------------------------

#[test]
fn new_log_is_created_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let diagnostic = spawn_diagnostic_with(&DiagnosticOptions::new(&log)).expect("spawn");
    assert_eq!(mode(&log), 0o600);
    finish(&diagnostic);
}

#[test]
fn existing_wider_log_is_narrowed_to_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    fs::write(&log, "earlier run\n").expect("write");
    fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (_, contents) = run(&DiagnosticOptions::new(&log));
    assert_eq!(mode(&log), 0o600);
    assert!(
        contents.starts_with("earlier run\n"),
        "appends, never truncates"
    );
}

#[test]
fn symlink_at_log_path_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("victim");
    fs::write(&target, "").expect("write");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("diag.log");
    symlink(&target, &log).expect("symlink");
    let err = spawn_diagnostic(&log, "SIGTERM", Duration::from_secs(1)).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("spawn shutdown diagnostic {}: ", log.display())),
        "{err}"
    );
    assert_eq!(fs::metadata(&target).expect("victim").len(), 0);
    assert_eq!(mode(&target), 0o644, "the symlink's target is left alone");
}

#[test]
fn directory_at_log_path_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = spawn_diagnostic(dir.path(), "SIGTERM", Duration::from_secs(1));
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn log_past_4_mib_is_rotated_keeping_one_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let rotated = dir.path().join("diag.log.1");
    fs::write(&rotated, "oldest\n").expect("write .1");
    let big = 4 * 1024 * 1024 + 1;
    fs::write(&log, vec![b'x'; big]).expect("write big log");

    let (_, contents) = run(&DiagnosticOptions::new(&log));
    assert_eq!(fs::metadata(&rotated).expect(".1").len(), big as u64);
    assert!(
        contents.starts_with("\n=== shutdown diagnostic @"),
        "fresh file"
    );
    assert_eq!(mode(&log), 0o600);

    // Under the threshold: appended, not rotated again.
    let (_, contents) = run(&DiagnosticOptions::new(&log));
    assert_eq!(contents.matches("=== shutdown diagnostic @").count(), 2);
    assert_eq!(fs::metadata(&rotated).expect(".1").len(), big as u64);
    assert!(!dir.path().join("diag.log.2").exists());
    assert!(!dir.path().join("diag.log.1.1").exists());
}

#[test]
fn rotation_threshold_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    fs::write(&log, "0123456789").expect("write");
    run(&DiagnosticOptions::new(&log).with_rotate_at(9));
    let rotated = fs::read_to_string(dir.path().join("diag.log.1")).expect(".1");
    assert_eq!(rotated, "0123456789");
}

#[test]
fn one_run_is_bounded_by_the_size_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let before = 1000_u64;
    fs::write(&log, vec![b'.'; before as usize]).expect("write");
    let cap = 2048_u64;
    let diagnostic =
        spawn_diagnostic_with(&DiagnosticOptions::new(&log).with_size_cap(cap)).expect("spawn");
    finish(&diagnostic);
    let contents = fs::read_to_string(&log).expect("read");
    let added = contents.len() as u64 - before;
    // The cap binds the child; the crate may add one trailer line of its own.
    assert!(added <= cap + 200, "run added {added} bytes");
    assert!(contents.contains("=== shutdown diagnostic @"), "{contents}");
    assert!(
        contents.contains("output reached the size cap"),
        "{contents}"
    );
    // Without the cap the same run writes more than the cap (so the test above can fail).
    let other = dir.path().join("uncapped.log");
    let (_, uncapped) = run(&DiagnosticOptions::new(&other));
    assert!(uncapped.len() as u64 > cap + 200, "{}", uncapped.len());
}

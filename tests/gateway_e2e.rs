//! End to end: the gateway example, built by `cargo test`, run as a child and stopped by real
//! signals from real other processes.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

mod gateway_support;
use gateway_support::{kill_from_other_process, next_start_verdict, zombie_children, Gateway};

#[test]
fn sigterm_from_another_process_is_explained_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &[
            "--wait",
            "--drain-secs",
            "2",
            "--adapters",
            "slack,telegram",
        ],
    );
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    let sender = kill.id();
    gw.wait_for("Shutdown context", Duration::from_secs(20));
    kill.wait().unwrap();
    gw.wait_for("drain started", Duration::from_secs(20));
    // The diagnostic finishes within its bound while the gateway still drains: no zombie.
    let diag = dir.path().join("logs/shutdown-diag.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&diag).is_ok_and(|t| t.contains("end of diagnostic"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        zombie_children(gw.pid()),
        Vec::<u32>::new(),
        "zombie children of the gateway"
    );
    let status = gw.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", gw.seen.join("\n"));

    let log = gw.log_file_text();
    let ctx_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Shutdown context"))
        .collect();
    assert_eq!(ctx_lines.len(), 1, "{log}");
    assert!(
        ctx_lines[0].contains(&format!("sender_pid={sender} sender_name=kill ")),
        "{}",
        ctx_lines[0]
    );
    assert!(ctx_lines[0].contains("signal=SIGTERM"), "{}", ctx_lines[0]);
    for needle in [
        "notify started",
        "notify done",
        "drain started",
        "drain done",
        "active_at_start=3",
        "timed_out=false",
        "disconnect<slack> done",
        "disconnect<telegram> done",
        "db_close done",
        "shutdown complete (total teardown",
    ] {
        assert!(log.contains(needle), "{needle:?} missing:\n{log}");
    }
    // Who stopped it comes first: the context line precedes every phase line (the listener
    // holds the record lock from before it wakes the app until the line is out).
    let line_of = |needle: &str| log.lines().position(|l| l.contains(needle)).unwrap();
    assert!(
        line_of("Shutdown context") < line_of("notify started"),
        "the context line after a phase line:\n{log}"
    );
    let mode = std::fs::metadata(&diag).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/last-shutdown.json")).unwrap(),
    )
    .unwrap();
    assert!(
        report["report"]["phases"].as_array().unwrap().len() >= 5,
        "{report}"
    );
    assert_eq!(report["context"]["sender"]["pid"], sender, "{report}");
    let mode = std::fs::metadata(dir.path().join("state/last-shutdown.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let trace: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("logs/shutdown-trace.json")).unwrap(),
    )
    .unwrap();
    assert!(trace.is_object() || trace.is_array());
}

#[test]
fn sigkill_during_a_slow_drain_is_reported_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &["--wait", "--drain-secs", "60", "--adapters", "slack"],
    );
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    gw.wait_for("drain started", Duration::from_secs(20));
    kill.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = gw.child.kill(); // SIGKILL, as systemd does after TimeoutStopSec
    let _ = gw.child.wait();
    drop(gw);

    let line = next_start_verdict(dir.path());
    assert!(line.contains("during phase drain"), "{line}");
}

#[test]
fn a_storm_of_signals_is_latched() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &["--wait", "--drain-secs", "1", "--adapters", "slack"],
    );
    // 200 SIGTERMs in ~100 ms from this (other) process. Signals of one kind that arrive
    // while the first is still pending coalesce in the kernel, so the gateway sees fewer.
    let pid = gw.pid() as libc::pid_t;
    for _ in 0..200 {
        // SAFETY: kill(2) with a valid pid and signal number has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        std::thread::sleep(Duration::from_micros(500));
    }
    let status = gw.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    let log = gw.log_file_text();
    assert_eq!(log.matches("Shutdown context").count(), 1, "{log}");
    let me = std::process::id();
    assert!(
        log.contains(&format!("repeated signal SIGTERM #2 from pid {me} (")),
        "{log}"
    );
    // Repeats are logged individually up to #11, then only every 100th.
    let repeats = log.matches("repeated signal SIGTERM").count();
    assert!(
        (1..=12).contains(&repeats),
        "{repeats} repeat lines:\n{log}"
    );
    let diag = std::fs::read_to_string(dir.path().join("logs/shutdown-diag.log")).unwrap();
    assert_eq!(
        diag.matches("=== shutdown diagnostic @").count(),
        1,
        "{diag}"
    );
    assert!(log.contains("shutdown complete"));
}

#[test]
fn second_sigint_escalates_to_the_configured_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &[
            "--wait",
            "--drain-secs",
            "60",
            "--escalate-after",
            "2",
            "--adapters",
            "slack",
        ],
    );
    let mut first = kill_from_other_process("-INT", gw.pid());
    gw.wait_for("drain started", Duration::from_secs(20));
    first.wait().unwrap();
    let mut second = kill_from_other_process("-INT", gw.pid());
    let status = gw.wait_exit(Duration::from_secs(30));
    second.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    // The adopted file guard was flushed before exit: the escalation line is in the file.
    let log = gw.log_file_text();
    assert!(log.contains("escalating, exiting with code 130"), "{log}");
    assert!(log.contains("drain started"), "{log}");
    drop(gw);

    // The next start tells an escalated exit from a kill.
    let line = next_start_verdict(dir.path());
    assert!(
        line.contains("exited with code 130 on signal #2 (escalation) during phase drain"),
        "{line}"
    );
}

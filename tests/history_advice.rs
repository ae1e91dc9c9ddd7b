//! Issue 22: what the history of the last stops advises at a start. Real processes (this test
//! binary re-run as a small service), real SIGTERMs from a `kill` process, real phases that
//! take real time: five stops with a short drain, then one whose drain takes over a second.
//! The start after it says once which phase regressed and by how much; a start whose kill
//! deadline is below the slowest recent stop says so with the numbers and the fix; neither is
//! said again by a later start that follows no new stop (the timeout advice is, as long as the
//! timeout stays too short).

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

const RECORD_ENV: &str = "SF_HISTORY_RECORD";
const DRAIN_ENV: &str = "SF_HISTORY_DRAIN_MS";
const DEADLINE_ENV: &str = "SF_HISTORY_KILL_DEADLINE_S";

/// The service: logs to stderr, stops on a real SIGTERM (sent by `kill`) and drains for
/// `SF_HISTORY_DRAIN_MS`; without it, exits right after the start (no stop).
#[test]
#[ignore = "a role of the tests below"]
fn role_service() {
    let Some(path) = std::env::var_os(RECORD_ENV) else {
        return;
    };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(layer))
        .unwrap();
    let mut builder = Forensics::builder()
        .with_handle(handle)
        .with_stop_budget(None, Duration::ZERO);
    if let Some(s) = std::env::var(DEADLINE_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
    {
        builder = builder.with_kill_deadline(Duration::from_secs_f64(s));
    }
    let forensics = builder.install().unwrap();
    let Some(drain_ms) = std::env::var(DRAIN_ENV).ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    forensics.signal().wait();
    phase!("notify").in_scope(|| std::thread::sleep(Duration::from_millis(5)));
    phase!("drain").in_scope(|| std::thread::sleep(Duration::from_millis(drain_ms)));
    forensics.finish();
}

/// Runs the service to its end; returns its stderr.
fn run(path: &Path, drain_ms: Option<u64>, kill_deadline_s: Option<f64>) -> String {
    let mut cmd = rerun_as("role_service");
    cmd.env(RECORD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(ms) = drain_ms {
        cmd.env(DRAIN_ENV, ms.to_string());
    }
    if let Some(s) = kill_deadline_s {
        cmd.env(DEADLINE_ENV, s.to_string());
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_regressed_phase_and_a_timeout_too_short_are_each_said_once_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let regressed = "Shutdown phase drain regressed";
    let too_short = "Supervisor stop timeout below recent stops";
    for _ in 0..5 {
        let log = run(&path, Some(20), None);
        assert!(lines_with(&log, regressed).is_empty(), "{log}");
    }
    // The sixth stop's drain takes 1.3 s (it took 0.02 s five times).
    let log = run(&path, Some(1300), None);
    assert!(lines_with(&log, regressed).is_empty(), "{log}");
    let stops = shutdown_forensics::verdict::history(dir.path()).unwrap();
    assert_eq!(stops.len(), 6, "{stops:#?}");
    let slowest = stops.last().unwrap();
    let drain = slowest.phase_duration("drain").unwrap();
    assert!(drain >= 1.3, "{stops:#?}");

    // The next start (kill deadline 1 s, no stop of its own): both, once each, as WARN.
    let log = run(&path, None, Some(1.0));
    let found = lines_with(&log, regressed);
    assert_eq!(found.len(), 1, "{log}");
    let line = found[0];
    let pid = slowest.pid.unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("{drain:.2}s in the last stop (pid {pid})")),
        "{line}"
    );
    assert!(line.contains("over the 5 stops before"), "{line}");
    assert!(line.contains("shutdown-forensics last "), "{line}");
    assert!(
        line.contains("median_s=") && line.contains("duration_s="),
        "{line}"
    );
    let found = lines_with(&log, too_short);
    assert_eq!(found.len(), 1, "{log}");
    let line = found[0];
    let total = slowest.total_s.unwrap();
    let needed = (total + (total / 2.0).max(5.0)).ceil();
    assert!(
        line.contains(&format!(
            "the slowest of the last 6 stops took {total:.2}s (pid {pid})"
        )),
        "{line}"
    );
    assert!(line.contains("the supervisor kills after 1.00s"), "{line}");
    assert!(line.contains(&format!("it needs >= {needed}s")), "{line}");
    assert!(line.contains("with_kill_deadline"), "{line}");

    // A later start that follows no new stop: the regression is not said again; the timeout,
    // still too short, is; with a long enough one, it is not.
    let log = run(&path, None, Some(1.0));
    assert!(lines_with(&log, regressed).is_empty(), "{log}");
    assert_eq!(lines_with(&log, too_short).len(), 1, "{log}");
    let log = run(&path, None, Some(needed));
    assert!(lines_with(&log, too_short).is_empty(), "{log}");
}

//! SIGKILL a real child process at random instants during `drain`; the next start's verdict
//! must name `drain` every time.
//!
//! The child is this test binary re-run with `--exact child_process --ignored` and
//! `SF_FLIGHT_CHILD=<record path>`; the parent reads its stdout to know `drain` has begun.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use serde_json::json;
use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

mod support;

const CHILD_ENV: &str = "SF_FLIGHT_CHILD";
const RUNS: u32 = 15;

/// The child: a shutdown whose `drain` writes records nonstop until killed.
#[test]
#[ignore = "run by the parent test as a child process"]
fn child_process() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let record = FlightRecord::open(&path).expect("open record");
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    handle.begin();
    phase!("notify").in_scope(|| {});
    let drain = phase!("drain", active_at_start = 3);
    let _g = drain.enter();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "in drain");
    let _ = out.flush();
    for i in 0u64.. {
        // Lines of varying length, up to 3 KiB, so a kill can land anywhere in the write
        // pattern, and most lines would cross a page of the file (where the kernel gives up
        // on a killed process's write, between two pages, unless the line starts on a page).
        handle.record(
            "tick",
            json!({"i": i, "pad": "x".repeat((i % 97 * 31) as usize)}),
        );
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// xorshift, seeded from the clock: random kill instants without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn sigkill_at_random_instants_during_drain_is_reported_as_killed_during_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for run in 0..RUNS {
        let mut child = rerun_as("child_process")
            .arg("--test-threads=1")
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let in_drain = lines.any(|l| l.is_ok_and(|l| l.contains("in drain")));
        assert!(in_drain, "run {run}: child never reached drain");
        let delay = Duration::from_micros(next(&mut seed) % 30_000);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
        let status = child.wait().expect("wait");
        assert!(!status.success(), "run {run}: child was not killed");

        let verdict = FlightRecord::previous(&path).expect("read record");
        let PreviousShutdown::Killed {
            pid,
            phase,
            open_phases,
            ..
        } = &verdict
        else {
            panic!("run {run} (kill after {delay:?}): expected Killed, got {verdict:?}");
        };
        assert_eq!(*pid, Some(child.id()), "run {run}");
        assert_eq!(
            phase.as_deref(),
            Some("drain"),
            "run {run} (kill after {delay:?})"
        );
        assert_eq!(open_phases, &["drain"], "run {run}");
        let message = verdict.message().unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "Previous shutdown did not complete: pid {} was killed during phase drain (entered +",
                child.id()
            )),
            "{message}"
        );
    }
}

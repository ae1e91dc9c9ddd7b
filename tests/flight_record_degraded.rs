//! A forensics crate is never why a service does not start (issue 12, risk "full or read-only
//! state disk"): the documented pattern, `FlightRecord::open(path)?`, runs without a record
//! and says so in ONE warning; `FlightRecord::open_strict` is the opt-in refusal.
//!
//! Real conditions, in child processes: a directory where nobody (root included) can create a
//! file, and a full disk (the file size limit, `RLIMIT_FSIZE` = 0, refuses every byte).

mod support;

use std::process::Output;
use std::time::Duration;

use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

const PATH_ENV: &str = "SF_DEGRADED_RECORD";
const FULL_ENV: &str = "SF_DEGRADED_FULL";

/// The README's quick start, nearly verbatim, on a record path that cannot be written.
#[test]
#[ignore = "run by the tests below"]
fn role_readme_pattern() {
    let Some(path) = std::env::var_os(PATH_ENV) else {
        return;
    };
    if std::env::var_os(FULL_ENV).is_some() {
        // SAFETY: SIG_IGN for SIGXFSZ (writes fail with EFBIG instead of killing us);
        // setrlimit with a valid struct.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let layer = ShutdownLayer::builder()
            .with_flight_record(FlightRecord::open(&path)?)
            .build();
        let handle = layer.handle();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(std::io::stdout);
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(fmt).with(layer),
        )?;
        let forensics = Forensics::builder()
            .with_handle(handle)
            .with_stop_budget(None, Duration::ZERO)
            .install()?;
        forensics.signal().trigger();
        phase!("drain").in_scope(|| {});
        forensics.finish();
        Ok(())
    };
    run().expect("the service starts and stops");
    println!("service ran");
}

fn run(path: &std::path::Path, full: bool) -> Output {
    let mut cmd = rerun_as("role_readme_pattern");
    cmd.env(PATH_ENV, path);
    if full {
        cmd.env(FULL_ENV, "1");
    }
    cmd.output().unwrap()
}

fn assert_ran_with_one_warning(out: &Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("service ran"), "{text}");
    assert!(text.contains("shutdown complete"), "{text}");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("flight record disabled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("running without one"), "{text}");
}

#[test]
fn a_read_only_state_dir_runs_without_a_record_and_warns_once() {
    // /proc refuses file creation to everyone, root included (as a read-only mount would).
    let path = std::path::Path::new("/proc/self/fdinfo/flight.jsonl");
    assert!(FlightRecord::open_strict(path).is_err());
    let record = FlightRecord::open(path).expect("disabled, not refused");
    assert!(record.error().is_some());
    assert_ran_with_one_warning(&run(path, false));
}

#[test]
fn a_full_disk_runs_without_a_record_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let out = run(&path, true);
    assert_ran_with_one_warning(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("File too large"), "{text}");
}

#[test]
fn a_full_disk_still_reports_the_previous_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(
        &path,
        "{\"kind\":\"run\",\"pid\":77}\n{\"kind\":\"begin\",\"t\":0}\n",
    )
    .unwrap();
    let out = run(&path, true);
    assert_ran_with_one_warning(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Previous shutdown did not complete: pid 77 was killed"),
        "{text}"
    );
}

//! Under systemd the signal helper handles `SIGABRT` (for `TimeoutStopFailureMode=abort`: the
//! manager's `SIGABRT` gets a stuck snapshot first; proven in `tests/systemd_stop_kinds.rs`).
//! Every other `SIGABRT` must still end the process at once with the default action, also in
//! the middle of a shutdown: `abort()` (what `panic = "abort"` and failed C assertions call),
//! `raise(SIGABRT)`, and a `kill -ABRT` from another process.
//!
//! Real processes: this test binary re-run as a service (`INVOCATION_ID` set, so the handler
//! is installed; the child says so), stopped by a real SIGTERM from here, which then aborts in
//! its `drain` phase (or is sent SIGABRT from here). Each must end by SIGABRT, with nothing of
//! the manager's path in its flight record (no `supervisor_abort` note, no snapshot).

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

const RECORD_ENV: &str = "SF_ABORT_RECORD";
const HOW_ENV: &str = "SF_ABORT_HOW";

/// Whether `SIGABRT` has a handler now (not `SIG_DFL`).
fn abort_handler_installed() -> bool {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries; `old` is valid and writable.
    let rc = unsafe { libc::sigaction(libc::SIGABRT, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction != libc::SIG_DFL
}

/// The service: a flight record, the helper installed as under systemd, a real SIGTERM, then
/// `drain`, in which it ends as `SF_ABORT_HOW` says.
#[test]
#[ignore = "a role of the tests below"]
fn role_service() {
    let (Some(path), Ok(how)) = (std::env::var_os(RECORD_ENV), std::env::var(HOW_ENV)) else {
        return;
    };
    // No core file from these deliberate aborts (the kernel's core_pattern may write one to
    // the working directory).
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid rlimit value.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let handle = layer.handle();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(layer))
        .unwrap();
    let forensics = Forensics::builder()
        .with_handle(handle)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    println!("handler installed: {}", abort_handler_installed());
    println!("ready");
    forensics.signal().wait();
    let _drain = phase!("drain").entered();
    println!("in drain");
    match how.as_str() {
        "abort" => std::process::abort(),
        // SAFETY: raise(3) with a valid signal number.
        "raise" => unsafe {
            libc::raise(libc::SIGABRT);
        },
        _ => {}
    }
    std::thread::sleep(Duration::from_secs(600));
}

/// Starts the service ending `how`; returns it, its stdout lines, and whether it said the
/// handler is installed.
fn start(
    how: &str,
    record: &std::path::Path,
) -> (Child, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut child = rerun_as("role_service")
        .env(RECORD_ENV, record)
        .env(HOW_ENV, how)
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    // (The test harness's own lines come first.)
    let said = (out.by_ref().map_while(Result::ok))
        .find(|l| l.starts_with("handler installed: "))
        .unwrap_or_default();
    assert_eq!(
        said, "handler installed: true",
        "the test needs the handler"
    );
    assert!(out.any(|l| l.is_ok_and(|l| l == "ready")));
    (child, out)
}

fn kill(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a valid pid and signal number.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Waits (generously) for the child's end.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + support::LOOSE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service did not end within {:?}", support::LOOSE);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs one service to its SIGABRT: `how` ends it from inside, or `None` has it sent from
/// here. Returns how long after `drain` began it died, and its record.
fn abort_in_drain(how: &str) -> (Duration, String) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("flight.jsonl");
    let (mut child, mut out) = start(how, &record);
    kill(&child, libc::SIGTERM);
    assert!(out.any(|l| l.is_ok_and(|l| l == "in drain")));
    let in_drain = Instant::now();
    if how == "wait" {
        kill(&child, libc::SIGABRT);
    }
    let status = wait_exit(&mut child);
    let took = in_drain.elapsed();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{how}: {status:?}");
    (took, std::fs::read_to_string(&record).unwrap())
}

/// Nothing of the manager's path ran: no note, no snapshot taken for it.
fn assert_not_snapshotted(how: &str, record: &str) {
    assert!(
        record.contains("\"kind\":\"begin\""),
        "{how}: the stop began\n{record}"
    );
    assert!(
        !record.contains("supervisor_abort"),
        "{how}: a SIGABRT not from the manager was snapshotted\n{record}"
    );
}

#[test]
fn abort_in_a_shutdown_still_dies_at_once_of_sigabrt() {
    let (took, record) = abort_in_drain("abort");
    assert_not_snapshotted("abort()", &record);
    eprintln!(
        "abort() in drain: dead of SIGABRT {:.1} ms after drain began",
        took.as_secs_f64() * 1e3
    );
    // Loose: the manager's path would hold it up to 1.5 s.
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn raise_in_a_shutdown_still_dies_at_once_of_sigabrt() {
    let (took, record) = abort_in_drain("raise");
    assert_not_snapshotted("raise(SIGABRT)", &record);
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn a_sigabrt_from_another_process_is_not_the_managers_and_kills_at_once() {
    let (took, record) = abort_in_drain("wait");
    assert_not_snapshotted("kill -ABRT from the test", &record);
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

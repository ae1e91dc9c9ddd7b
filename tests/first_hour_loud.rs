//! A new user's mistakes are loud, not silent: a filter that hides the `shutdown` target, an
//! `install()` before the subscriber exists, a `Forensics` without a handle, a phase helper
//! reused before any shutdown, and the default signals that leave SIGHUP/SIGQUIT alone.
//!
//! Cases that need a process-wide subscriber or stderr run as a child (`rerun_as`), one role
//! each; the others use `with_default` and a trigger, and never a real signal, so they can
//! share this process.

mod support;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use shutdown_forensics::context::DEFAULT_SIGNALS;
use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::{dispatch, lines_with, rerun_as, Capture, LOOSE};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const ROLE: &str = "SF_FIRST_HOUR_ROLE";
const FILTERED: &str = "the `shutdown` target is filtered out at INFO";

/// The previous run: SIGKILLed while draining.
const KILLED_RUN: &str = concat!(
    r#"{"kind":"run","pid":4242}"#,
    "\n",
    r#"{"kind":"begin","t":0.0,"pid":4242}"#,
    "\n",
    r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#,
    "\n"
);

fn run_role(role: &str, arg: &str) -> (Output, String) {
    let out = rerun_as(role)
        .env(ROLE, arg)
        .stdin(Stdio::null())
        .output()
        .expect("rerun");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{role}({arg}): {:?}\n{stderr}",
        out.status
    );
    (out, stderr)
}

fn quiet_install(handle: Option<shutdown_forensics::ShutdownHandle>, sig: i32) -> Forensics {
    let mut b = Forensics::builder()
        .with_signals(&[sig])
        .with_stop_budget(None, Duration::ZERO);
    if let Some(h) = handle {
        b = b.with_handle(h);
    }
    b.install().expect("install")
}

// ---------------------------------------------------------------- filtered `shutdown` target

#[test]
fn a_filter_hiding_the_shutdown_target_is_said_once_with_the_fix() {
    // RUST_LOG=warn: WARN events still reach the log, so the log carries the message.
    let (_, err) = run_role("role_filtered", "warn");
    assert_eq!(lines_with(&err, FILTERED).len(), 1, "{err}");
    assert!(err.contains("WARN"), "logged, not printed: {err}");
    assert!(
        err.contains("shutdown=info") && err.contains("per-layer filter"),
        "{err}"
    );
    // RUST_LOG=error: the log cannot carry a WARN, so stderr does.
    let (_, err) = run_role("role_filtered", "error");
    let lines = lines_with(&err, FILTERED);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("shutdown-forensics: "), "{err}");
    // A per-layer filter on the fmt layer only: the layer still sees phases; nothing to say.
    let (_, err) = run_role("role_filtered", "per-layer");
    assert!(lines_with(&err, FILTERED).is_empty(), "{err}");
}

#[test]
#[ignore = "run by a_filter_hiding_the_shutdown_target_is_said_once_with_the_fix"]
fn role_filtered() {
    let how = std::env::var(ROLE).unwrap();
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    macro_rules! fmt {
        () => {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(std::io::stderr)
        };
    }
    match how.as_str() {
        "per-layer" => tracing_subscriber::registry()
            .with(fmt!().with_filter(EnvFilter::new("warn")))
            .with(layer)
            .init(),
        level => tracing_subscriber::registry()
            .with(EnvFilter::new(level))
            .with(fmt!())
            .with(layer)
            .init(),
    }
    let forensics = quiet_install(Some(handle.clone()), libc::SIGUSR1);
    let second = quiet_install(Some(handle), libc::SIGUSR2);
    drop((forensics, second));
}

// ---------------------------------------------------------- install before the subscriber

#[test]
fn install_before_the_subscriber_still_delivers_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_RUN).unwrap();
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let handle = layer.handle();
    // Installed first: no subscriber holds the layer yet.
    let forensics = quiet_install(Some(handle), libc::SIGWINCH);
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    assert!(
        cap.wait_for("Previous shutdown did not complete: pid 4242 was killed during phase drain"),
        "{}",
        cap.text()
    );
    drop(d);
    drop(forensics);
    assert_eq!(lines_with(&cap.text(), "Previous shutdown").len(), 1);
}

#[test]
fn a_verdict_whose_subscriber_never_came_goes_to_stderr() {
    let (_, err) = run_role("role_never_subscribed", "");
    let lines = lines_with(&err, "Previous shutdown did not complete");
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("shutdown-forensics: Previous shutdown did not complete: pid 4242"),
        "{err}"
    );
}

#[test]
#[ignore = "run by a_verdict_whose_subscriber_never_came_goes_to_stderr"]
fn role_never_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_RUN).unwrap();
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let forensics = quiet_install(Some(layer.handle()), libc::SIGUSR1);
    drop(forensics); // the app returned early, before any subscriber
}

#[test]
fn install_before_init_gives_no_false_filter_warning() {
    // The check used to race tracing's own registration of the subscriber (its level filter
    // is OFF until the registration ends): sometimes it saw nothing enabled.
    for round in 0..6 {
        let (_, err) = run_role("role_install_then_init", "");
        assert!(
            lines_with(&err, FILTERED).is_empty(),
            "round {round}: {err}"
        );
        assert_eq!(
            lines_with(&err, " drain done (").len(),
            1,
            "round {round}: {err}"
        );
    }
}

#[test]
#[ignore = "run by install_before_init_gives_no_false_filter_warning"]
fn role_install_then_init() {
    let layer = ShutdownLayer::new();
    let forensics = quiet_install(Some(layer.handle()), libc::SIGUSR1);
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(std::io::stderr),
        )
        .init();
    forensics.signal().trigger();
    phase!("drain").in_scope(|| {});
    forensics.finish();
    drop(forensics);
}

// ------------------------------------------- a handle whose layer is not in the subscriber

const NOT_IN_SUBSCRIBER: &str = "is not part of any subscriber";

/// Runs `role` (which ends by SIGKILLing itself, as a supervisor would) and returns stderr.
fn run_killed_role(role: &str, arg: &str) -> String {
    let out = rerun_as(role)
        .env(ROLE, arg)
        .stdin(Stdio::null())
        .output()
        .expect("rerun");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{role}({arg}): {stderr}"
    );
    stderr
}

#[test]
fn a_handle_whose_layer_is_not_in_the_subscriber_is_said_once_before_a_kill() {
    // fmt().init() first, then install: said at install, and the verdict is logged then.
    // install first, fmt().init() later: said at the signal, and the verdict with it.
    for when in ["init-first", "install-first"] {
        let err = run_killed_role("role_layer_not_subscribed", when);
        let said = lines_with(&err, NOT_IN_SUBSCRIBER);
        assert_eq!(said.len(), 1, "{when}: {err}");
        assert!(
            said[0].contains("Forensics::with_handle")
                && said[0].contains("registry().with(layer)"),
            "{when}: {err}"
        );
        assert_eq!(
            lines_with(&err, "Previous shutdown did not complete: pid 4242").len(),
            1,
            "{when}: {err}"
        );
    }
}

#[test]
#[ignore = "run by a_handle_whose_layer_is_not_in_the_subscriber_is_said_once_before_a_kill"]
fn role_layer_not_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_RUN).unwrap();
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let init = || {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(std::io::stderr)
            .init();
    };
    let first = std::env::var(ROLE).unwrap() == "init-first";
    if first {
        init();
    }
    let forensics = quiet_install(Some(layer.handle()), libc::SIGUSR1);
    if !first {
        init();
    }
    forensics.signal().trigger();
    phase!("drain").in_scope(|| {});
    forensics.finish();
    // The supervisor's SIGKILL: no drop, no flush at exit.
    // SAFETY: kill(2) on our own pid with SIGKILL; nothing runs after it.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

// ------------------------------------------------------------------- no `with_handle`

#[test]
fn finish_without_a_handle_still_logs_the_completion() {
    let cap = Capture::default();
    tracing::subscriber::with_default(support::subscriber(&cap), || {
        let forensics = quiet_install(None, libc::SIGPWR);
        assert_eq!(forensics.finish(), None, "nothing began yet");
        forensics.signal().trigger();
        let total = forensics.finish().expect("a shutdown began");
        assert!(total < LOOSE);
        assert_eq!(forensics.finish(), None, "once");
    });
    let text = cap.text();
    let lines = lines_with(&text, "shutdown complete (total teardown ");
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains(" +0."), "{text}");
}

const NO_HANDLE: &str = "installed without its handle";

#[test]
fn a_layer_in_the_subscriber_but_no_handle_given_is_said_once_with_the_fix() {
    for when in ["init-first", "install-first"] {
        let (_, err) = run_role("role_no_handle_given", when);
        let said = lines_with(&err, NO_HANDLE);
        assert_eq!(said.len(), 1, "{when}: {err}");
        assert!(
            said[0].contains(".with_handle(layer.handle())") && said[0].contains("flight record"),
            "{when}: {err}"
        );
        if when == "init-first" {
            // Before anything of the shutdown.
            assert!(
                err.find(NO_HANDLE) < err.find("Shutdown context"),
                "{when}: {err}"
            );
        }
    }
}

#[test]
#[ignore = "run by a_layer_in_the_subscriber_but_no_handle_given_is_said_once_with_the_fix"]
fn role_no_handle_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_RUN).unwrap();
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let init = move || {
        tracing_subscriber::registry()
            .with(layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .with_writer(std::io::stderr),
            )
            .init();
    };
    let first = std::env::var(ROLE).unwrap() == "init-first";
    let forensics = if first {
        init();
        quiet_install(None, libc::SIGUSR1)
    } else {
        let f = quiet_install(None, libc::SIGUSR1);
        init();
        f
    };
    forensics.signal().trigger();
    phase!("drain").in_scope(|| {});
    forensics.finish();
    drop(forensics);
}

// ---------------------------------------------------- a phase before the shutdown began

#[test]
fn a_phase_before_the_shutdown_does_not_start_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    let early = Duration::from_secs(2);
    tracing::dispatcher::with_default(&d, || {
        let forensics = quiet_install(Some(handle.clone()), libc::SIGURG);
        // A `drain` helper reused at startup, twice.
        phase!("drain", active_at_start = 0).in_scope(|| std::thread::sleep(early));
        phase!("drain").in_scope(|| {});
        assert_eq!(handle.elapsed(), None, "the clock has not started");
        // A SIGKILL now is a run that never began a shutdown, not one "killed before any phase".
        assert!(matches!(
            FlightRecord::previous(&path).unwrap(),
            PreviousShutdown::NoShutdown { .. }
        ));

        let started = Instant::now();
        forensics.signal().trigger();
        phase!("drain", active_at_start = 2).in_scope(|| {});
        let total = forensics.finish().expect("complete");
        // Counted from the trigger, not from the helper's first run two seconds earlier.
        assert!(total <= started.elapsed(), "{total:?}");
    });
    let text = cap.text();
    let outside = lines_with(&text, "seen outside a shutdown");
    assert_eq!(outside.len(), 1, "said once: {text}");
    assert!(
        outside[0].contains("phase drain seen outside a shutdown: not timed"),
        "{text}"
    );
    let report = handle.report();
    assert_eq!(report.phases.len(), 1, "{text}");
    assert_eq!(lines_with(&text, "drain started").len(), 1, "{text}");
    assert!(matches!(
        FlightRecord::previous(&path).unwrap(),
        PreviousShutdown::Clean { .. }
    ));
}

#[test]
fn a_phase_before_install_does_not_start_the_clock_and_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(&path).unwrap())
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    let early = Duration::from_millis(800);
    tracing::dispatcher::with_default(&d, || {
        // A `drain` helper run at startup, before the signal helper is installed.
        phase!("drain").in_scope(|| std::thread::sleep(early));
        let forensics = quiet_install(Some(handle.clone()), libc::SIGXCPU);
        assert_eq!(
            handle.elapsed(),
            None,
            "install stopped the clock it started"
        );
        // A SIGKILL now: a run that never began a shutdown.
        assert!(
            matches!(
                FlightRecord::previous(&path).unwrap(),
                PreviousShutdown::NoShutdown { .. }
            ),
            "{:?}",
            FlightRecord::previous(&path).unwrap()
        );
        let started = Instant::now();
        forensics.signal().trigger();
        phase!("drain").in_scope(|| {});
        let total = forensics.finish().expect("complete");
        assert!(total <= started.elapsed(), "{total:?}");
    });
    let text = cap.text();
    let said = lines_with(&text, "ran before Forensics::install");
    assert_eq!(said.len(), 1, "{text}");
    assert!(said[0].contains("phase drain ran before"), "{text}");
    let report = handle.report();
    assert_eq!(report.phases.len(), 1, "{report:#?}");
    assert!(report.elapsed_s < early.as_secs_f64(), "{report:#?}");
    assert!(matches!(
        FlightRecord::previous(&path).unwrap(),
        PreviousShutdown::Clean { .. }
    ));
}

// ------------------------------------------------------------------- default signals

#[test]
fn default_signals_are_sigterm_and_sigint_only() {
    assert_eq!(DEFAULT_SIGNALS, [libc::SIGTERM, libc::SIGINT]);
    let (_, err) = run_role("role_default_signals", "");
    assert!(err.is_empty() || !err.contains("panicked"), "{err}");
}

/// The current handler of `sig`, as `sigaction(2)` reports it.
fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries; `old` is a valid, writable `sigaction`.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "sigaction query of {sig}");
    old.sa_sigaction
}

#[test]
#[ignore = "run by default_signals_are_sigterm_and_sigint_only"]
fn role_default_signals() {
    let forensics = Forensics::builder()
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    assert_ne!(handler_of(libc::SIGTERM), libc::SIG_DFL);
    assert_ne!(handler_of(libc::SIGINT), libc::SIG_DFL);
    // Left to the app (reload, dump): still the default action.
    assert_eq!(handler_of(libc::SIGHUP), libc::SIG_DFL);
    assert_eq!(handler_of(libc::SIGQUIT), libc::SIG_DFL);
    drop(forensics);
}

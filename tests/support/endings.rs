//! A small service that ends its run in a chosen way, for tests that judge endings: run as a
//! child process (`rerun_as`) by the truth table (`tests/verdict_truth_table.rs`) and the kill
//! loop (`tests/kill_loop.rs`). It logs like a service (fmt to stderr), installs the signal
//! helper with a flight record, stops on a real SIGTERM sent by a `kill` process, runs the
//! phases `notify` and `drain`, and then ends as asked.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use shutdown_forensics::context::Escalation;
use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use tracing_subscriber::layer::SubscriberExt;

/// The environment variables a role reads.
pub const RECORD_ENV: &str = "SF_ENDING_RECORD";
pub const ENDING_ENV: &str = "SF_ENDING";

/// Said on stderr once the previous run's verdict was logged (as the gateway's `gateway
/// started`).
pub const STARTED: &str = "app started";
/// Said on stderr when the run waits to be killed (in `drain`, or before any shutdown).
pub const WAITING: &str = "app waiting";

/// Every ending the app can be asked for.
pub const ENDINGS: &[&str] = &[
    "clean",
    "kill_in_drain",
    "early_return",
    "exit_in_drain",
    "panic_main",
    "panic_in_drain",
    "hook_replaced_main",
    "hook_replaced_drain",
    "panic_after_finish",
    "escalate",
    "no_shutdown",
    "caught_panic",
    "worker_panic_uncaught",
    "disk_full",
    "exited",
    "stay_alive",
    "huge_name",
];

/// Whether a verdict is the one an ending must get.
pub type VerdictCheck = fn(&PreviousShutdown) -> bool;

/// What the verdict on an ending's record must be, and the first words of the line the next
/// start logs about it (`{pid}` stands for the run's pid; `None`: it logs nothing). For the
/// endings the app reaches on its own, or with a SIGKILL once it says [`WAITING`]
/// (`kill_in_drain`, `no_shutdown`, `caught_panic`); `stay_alive` is left out (nothing ends).
pub fn expected(ending: &str) -> Option<(VerdictCheck, Option<&'static str>)> {
    use PreviousShutdown as P;
    Some(match ending {
        "clean" | "huge_name" => (|v| matches!(v, P::Clean { .. }), None),
        "exited" => (|v| matches!(v, P::Exited { .. }), None),
        "kill_in_drain" => (
            |v| matches!(v, P::Killed { phase, .. } if phase.as_deref() == Some("drain")),
            Some("Previous shutdown did not complete: pid {pid} was killed during phase drain"),
        ),
        "early_return" => (
            |v| matches!(v, P::ExitedEarly { phase: None, last_ended, .. } if last_ended.as_deref() == Some("drain")),
            Some("Previous shutdown did not complete: pid {pid} exited after phase drain ended without finishing"),
        ),
        "exit_in_drain" => (
            |v| matches!(v, P::ExitedEarly { phase, .. } if phase.as_deref() == Some("drain")),
            Some("Previous shutdown did not complete: pid {pid} exited during phase drain without finishing"),
        ),
        "panic_main" => (
            |v| matches!(v, P::Panicked { recorded: true, shutdown_begun: false, message, .. } if message == "boom in main"),
            Some("Previous run ended in a panic: pid {pid} panicked at "),
        ),
        "panic_in_drain" => (
            |v| matches!(v, P::Panicked { recorded: true, phase, message, .. } if phase.as_deref() == Some("drain") && message == "drain exploded"),
            Some("Previous shutdown did not complete: pid {pid} panicked during phase drain at "),
        ),
        "hook_replaced_main" => (
            |v| matches!(v, P::Panicked { recorded: false, hook_replaced: true, shutdown_begun: false, .. }),
            Some("Previous run ended in a panic: pid {pid} panicked: message unknown: the panic hook was replaced after install"),
        ),
        "hook_replaced_drain" => (
            |v| matches!(v, P::Panicked { recorded: false, hook_replaced: true, phase, .. } if phase.as_deref() == Some("drain")),
            Some("Previous shutdown did not complete: pid {pid} panicked during phase drain: message unknown: the panic hook was replaced after install"),
        ),
        "panic_after_finish" => (
            |v| matches!(v, P::Panicked { completed: Some(_), message, .. } if message == "after finish"),
            Some("Previous run ended in a panic: the shutdown completed (total teardown "),
        ),
        "escalate" => (
            |v| matches!(v, P::Escalated { signal_count: 2, exit_code: 130, phase, .. } if phase.as_deref() == Some("drain")),
            Some("Previous shutdown did not complete: pid {pid} exited with code 130 on signal #2 (escalation) during phase drain"),
        ),
        "no_shutdown" => (
            |v| matches!(v, P::NoShutdown { outlived_panic: None, .. }),
            Some("Previous run (pid {pid}) ended without starting a shutdown (crash, OOM kill or power loss)"),
        ),
        "caught_panic" => (
            |v| matches!(v, P::NoShutdown { outlived_panic: Some(p), .. } if p.message == "worker failed"),
            Some("Previous run (pid {pid}) ended without starting a shutdown (crash, OOM kill or power loss); it had outlived a panic at "),
        ),
        "worker_panic_uncaught" => (
            |v| matches!(v, P::Panicked { recorded: true, inferred: true, thread, .. } if thread.as_deref() == Some("worker")),
            Some("Previous run ended in a panic: pid {pid} panicked at "),
        ),
        "disk_full" => (
            |v| matches!(v, P::Unknown { shutdown_begun: true, phase, .. } if phase.as_deref() == Some("drain")),
            Some("Previous shutdown may not have completed: pid {pid} had begun a shutdown during phase drain"),
        ),
        _ => return None,
    })
}

/// Whether the app waits to be SIGKILLed in this ending.
pub fn waits_for_kill(ending: &str) -> bool {
    matches!(
        ending,
        "kill_in_drain" | "no_shutdown" | "caught_panic" | "stay_alive"
    )
}

/// A line on stderr that never panics.
pub fn say(line: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// The role's body: reads the environment, runs the app, reports an error as a service would.
pub fn role() {
    let (Some(path), Ok(ending)) = (std::env::var_os(RECORD_ENV), std::env::var(ENDING_ENV)) else {
        return;
    };
    if let Err(e) = app(Path::new(&path), &ending) {
        say(&format!("app: shutdown failed: {e}"));
    }
}

/// A real SIGTERM from another process (`kill`), as a supervisor sends it.
fn sigterm_self() {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn close_database() -> Result<(), String> {
    Err("database is locked".into())
}

fn wait_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn app(path: &Path, ending: &str) -> Result<(), String> {
    let record = FlightRecord::open(path).map_err(|e| e.to_string())?;
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(layer))
        .map_err(|e| e.to_string())?;
    let escalation = if ending == "escalate" {
        Escalation::Exit {
            after: 2,
            code: 130,
        }
    } else {
        Escalation::LogOnly
    };
    let forensics = Forensics::builder()
        .with_handle(handle.clone())
        .with_stop_budget(None, Duration::ZERO)
        .with_escalation(escalation)
        .install()
        .map_err(|e| e.to_string())?;
    if ending.starts_with("hook_replaced") {
        // Any crate that sets its own hook after `install` (a crash reporter, a pretty printer).
        std::panic::set_hook(Box::new(|_| say("the app's own panic hook ran")));
    }
    say(STARTED);
    match ending {
        "panic_main" | "hook_replaced_main" => panic!("boom in main"),
        "no_shutdown" | "stay_alive" => {
            say(WAITING);
            wait_forever();
        }
        "caught_panic" => {
            // As tokio does for a task: the panic is caught, the service goes on.
            let worker = std::thread::Builder::new()
                .name("worker".into())
                .spawn(|| std::panic::catch_unwind(|| panic!("worker failed")).is_err())
                .expect("spawn");
            assert!(worker.join().expect("the worker returns"));
            // The witness notes that the process outlived it (within a second, loosely).
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && !std::fs::read_to_string(path).is_ok_and(|t| t.contains("panic_outlived"))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            say(WAITING);
            wait_forever();
        }
        "worker_panic_uncaught" => {
            let worker = std::thread::Builder::new()
                .name("worker".into())
                .spawn(|| panic!("worker failed"))
                .expect("spawn");
            // The app gives the worker's panic to main, which ends with it.
            if let Err(payload) = worker.join() {
                std::panic::resume_unwind(payload);
            }
        }
        "exited" => return Ok(()),
        _ => {}
    }
    sigterm_self();
    forensics.signal().wait();
    phase!("notify").in_scope(|| std::thread::sleep(Duration::from_millis(5)));
    if ending == "huge_name" {
        // An adapter named by a flag or a config file: untrusted, any length.
        let name = "x".repeat(100_000);
        phase!("disconnect", adapter = name.as_str()).in_scope(|| {});
    }
    {
        let _drain = phase!("drain").entered();
        match ending {
            "kill_in_drain" => {
                say(WAITING);
                wait_forever();
            }
            "escalate" => {
                // The operator's second signal, while the drain runs.
                sigterm_self();
                wait_forever();
            }
            "early_return" => close_database()?,
            "exit_in_drain" => std::process::exit(3),
            "panic_in_drain" | "hook_replaced_drain" => panic!("drain exploded"),
            "disk_full" => fill_the_disk(path),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    forensics.finish();
    if ending == "huge_name" {
        // What the gateway example prints at exit: the waterfall.
        say(&format!("{}", handle.report()));
    }
    if ending == "panic_after_finish" {
        panic!("after finish");
    }
    Ok(())
}

/// The file size limit (`RLIMIT_FSIZE`), as a full disk would: the next record line is cut
/// short and every later one refused.
fn fill_the_disk(path: &Path) {
    let size = std::fs::metadata(path).expect("the record").len();
    // SAFETY: SIG_IGN for SIGXFSZ (writes past the limit fail with EFBIG instead of killing
    // the process); setrlimit with a valid struct.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: size + 20,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

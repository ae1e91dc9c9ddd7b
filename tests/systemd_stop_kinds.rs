//! How a stop came, told under a REAL systemd (252 here; `support::systemd::SystemdNs`), with
//! the gateway example as `gw.service` (`systemd_gateway`):
//!
//! * a stop job (`systemctl stop`, `systemctl restart`) is routine: the `Shutdown context`
//!   line is INFO with `stop=supervisor stop_job=stop|restart`;
//! * `systemctl kill` (the same SIGTERM from pid 1, no job) is not: WARN with
//!   `stop=unexpected stop_job=none`;
//! * `TimeoutStopFailureMode=abort`: systemd's SIGABRT at the stop timeout gets a stuck
//!   snapshot, recorded before the process dies of that SIGABRT, and the next start names
//!   where the stop was stuck.
//!
//! Where systemd cannot boot each test prints `SKIPPED: <why>` and passes, unless
//! `SHUTDOWN_FORENSICS_REQUIRE_SYSTEMD=1` makes that a failure.

mod gateway_support;
mod support;
mod systemd_gateway;

use std::time::Duration;

use support::systemd::SystemdNs;
use systemd_gateway::{
    boot, gateway_log, gateway_unit, start, stop_and_watch, wait_log_line, LONG, STATE_DIR, UNIT,
};

/// The `Shutdown context` lines of the gateway's log, oldest first.
fn context_lines(ns: &SystemdNs) -> Vec<String> {
    gateway_log(ns)
        .lines()
        .filter(|l| l.contains("Shutdown context"))
        .map(str::to_owned)
        .collect()
}

/// Waits until the gateway's log holds `n` context lines; returns the last.
fn nth_context_line(ns: &SystemdNs, n: usize) -> String {
    let mut lines = Vec::new();
    let found = ns.wait_until(LONG, || {
        lines = context_lines(ns);
        lines.len() >= n
    });
    assert!(
        found && lines.len() == n,
        "{n} context lines expected, got {lines:#?}\n{}",
        ns.status(UNIT)
    );
    lines[n - 1].clone()
}

/// The `manager_job` note of the last run's flight record.
fn manager_job_note(ns: &SystemdNs) -> serde_json::Value {
    let record = std::fs::read_to_string(ns.path(STATE_DIR).join("flight.jsonl"))
        .expect("the flight record");
    (record.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["kind"] == "note" && r["note"] == "manager_job")
        .unwrap_or_else(|| panic!("no manager_job note:\n{record}"))
}

#[test]
fn a_stop_job_is_routine_and_systemctl_kill_is_unexpected() {
    let Some(mut ns) =
        boot(|| gateway_unit("72s", "30", &["--drain-secs", "0.5", "--adapters", "slack"]))
    else {
        return;
    };

    // `systemctl stop`: a stop job.
    start(&ns);
    let stop = ns.systemctl(&["stop", UNIT]);
    assert!(stop.success(), "{stop:?}\n{}", ns.status(UNIT));
    let line = nth_context_line(&ns, 1);
    assert!(line.contains(" INFO "), "a stop job is routine: {line}");
    assert!(
        line.contains(" sender_pid=1 sender_name=systemd ")
            && line.contains(" stop=supervisor stop_job=stop "),
        "{line}"
    );
    // The answer is in the flight record too, stamped when it came (from the signal's receipt).
    let asked = manager_job_note(&ns);
    assert_eq!(asked["value"]["kind"], "stop", "{asked}");
    let took = asked["t"].as_f64().unwrap_or(f64::MAX);
    // The query's own bound, 0.75 s after the signal (loose: it is the crate's deadline).
    assert!(took < 1.0, "{asked}");
    eprintln!("the manager answered {:.1} ms after the signal", took * 1e3);

    // `systemctl restart`: a restart job, also routine.
    start(&ns);
    let restart = ns.systemctl(&["restart", UNIT]);
    assert!(restart.success(), "{restart:?}\n{}", ns.status(UNIT));
    let line = nth_context_line(&ns, 2);
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains(" stop=supervisor stop_job=restart "),
        "{line}"
    );

    // `systemctl kill`: the same SIGTERM from pid 1, but no job: unexpected, WARN.
    ns.wait_state(UNIT, "active", LONG);
    let kill = ns.systemctl(&["kill", "--kill-whom=main", "--signal=SIGTERM", UNIT]);
    assert!(kill.success(), "{kill:?}");
    ns.wait_state(UNIT, "inactive", LONG);
    let line = nth_context_line(&ns, 3);
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(" sender_pid=1 sender_name=systemd ")
            && line.contains(" stop=unexpected stop_job=none "),
        "{line}"
    );
    eprintln!(
        "--- the three context lines:\n{}",
        context_lines(&ns).join("\n")
    );
    ns.teardown().expect("clean teardown");
}

/// `unit` with `lines` added at the top of its `[Service]` section.
fn with_service_lines(unit: &str, lines: &str) -> String {
    assert!(unit.contains("\n[Service]\n"), "{unit}");
    unit.replacen("\n[Service]\n", &format!("\n[Service]\n{lines}"), 1)
}

#[test]
fn at_an_abort_timeout_the_snapshot_is_recorded_before_the_sigabrt_ends_the_process() {
    // A drain that never ends, TimeoutStopSec=2s, and at its end SIGABRT instead of SIGKILL.
    // No core file: the namespace shares the host's file system and core_pattern.
    let Some(mut ns) = boot(|| {
        let unit = gateway_unit(
            "2s",
            "1000",
            &["--drain-secs", "1000", "--adapters", "slack"],
        );
        with_service_lines(&unit, "TimeoutStopFailureMode=abort\nLimitCORE=0\n")
    }) else {
        return;
    };
    start(&ns);
    let main_pid = ns.show(UNIT, "MainPID");
    let (took, _, _) = stop_and_watch(&ns, "failed");
    let journal = ns.journalctl(&["-u", UNIT]);
    // What systemd 252 reports for it: the stop timed out, the main process died of SIGABRT.
    assert_eq!(ns.show(UNIT, "Result"), "timeout", "{}", ns.status(UNIT));
    assert!(
        journal.contains("State 'stop-sigterm' timed out. Aborting."),
        "{journal}"
    );
    assert!(
        journal.contains("Main process exited, code=killed, status=6/ABRT"),
        "died of the SIGABRT, not of a later SIGKILL:\n{journal}"
    );
    assert_eq!(ns.show(UNIT, "ExecMainStatus"), "6", "{journal}");
    // (TimeoutAbortSec defaults to TimeoutStopSec: a process still alive 2 s after the SIGABRT
    // would have died of systemd's SIGKILL instead, status=9/KILL.)
    let stamps = ns.journalctl(&["-u", UNIT, "-o", "short-monotonic"]);
    let at = |needle: &str| -> Option<f64> {
        let line = stamps.lines().find(|l| l.contains(needle))?;
        line.trim_start_matches('[')
            .split(']')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    if let (Some(sent), Some(died)) = (at("with signal SIGABRT"), at("Main process exited")) {
        eprintln!(
            "SIGABRT sent to main process exit (journal stamps): {:.1} ms",
            (died - sent) * 1e3
        );
    }

    // Before it died: the snapshot, in the log and (first) in the flight record.
    let log = gateway_log(&ns);
    let stuck = (log.lines())
        .find(|l| l.contains(" drain stuck (SIGABRT from the service manager)"))
        .unwrap_or_else(|| panic!("no snapshot at the SIGABRT in the log:\n{log}"));
    assert!(stuck.contains(" WARN "), "{stuck}");
    let record = std::fs::read_to_string(ns.path(STATE_DIR).join("flight.jsonl"))
        .expect("the flight record");
    let lines: Vec<serde_json::Value> = (record.lines())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let note = (lines.iter())
        .position(|r| r["kind"] == "note" && r["note"] == "supervisor_abort")
        .unwrap_or_else(|| panic!("no supervisor_abort note:\n{record}"));
    assert_eq!(lines[note]["value"]["sender_pid"], 1, "{record}");
    let last_stuck = (lines.iter().rposition(|r| r["kind"] == "stuck"))
        .unwrap_or_else(|| panic!("no stuck record:\n{record}"));
    assert!(last_stuck > note, "{record}");
    let snapshot = &lines[last_stuck];
    assert_eq!(snapshot["reason"], "supervisor_abort", "{record}");
    assert_eq!(snapshot["phase"], "drain", "{record}");
    assert!(snapshot["t"].as_f64().unwrap_or(0.0) >= 1.5, "{snapshot}");
    eprintln!(
        "SIGABRT at TimeoutStopSec=2s: dead {:.2}s after `systemctl stop`; snapshot: {stuck}",
        took.as_secs_f64()
    );
    eprintln!("--- journalctl -u {UNIT}:\n{journal}");

    // The next start names where the stop was stuck.
    start(&ns);
    let verdict = wait_log_line(
        &ns,
        "Previous shutdown did not complete",
        Duration::from_secs(30),
    );
    assert!(
        verdict.contains(&format!(
            "pid {main_pid} was killed during phase drain (entered +"
        )) && verdict.contains("; stuck in GET /session/"),
        "{verdict}"
    );
    eprintln!("--- the next start says:\n{verdict}");
    ns.teardown().expect("clean teardown");
}

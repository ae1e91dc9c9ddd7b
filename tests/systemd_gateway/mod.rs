//! The gateway example as `gw.service` under a real systemd (`support::systemd::SystemdNs`),
//! shared by the tests that run it there (`tests/systemd_real.rs`,
//! `tests/systemd_stop_kinds.rs`): the shipped unit with the test's binary and flags, start,
//! stop, and reading the gateway's own log files inside the namespace.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::gateway_support::gateway_bin;
use crate::support::systemd::SystemdNs;

pub const UNIT: &str = "gw.service";
/// The shipped unit: what these tests run, so what they prove is what users install.
pub const SHIPPED: &str = include_str!("../../examples/gateway.service");
/// Paths the shipped unit gives the gateway (`StateDirectory=` / `LogsDirectory=`).
pub const LOG_DIR: &str = "/var/log/gateway";
pub const STATE_DIR: &str = "/var/lib/gateway";

pub const LONG: Duration = Duration::from_secs(120);

/// The shipped unit with the test's binary, `--drain-timeout`, `TimeoutStopSec=` and flags.
pub fn gateway_unit(timeout_stop: &str, drain_timeout: &str, flags: &[&str]) -> String {
    let bin = gateway_bin();
    let bin = bin.to_str().expect("a UTF-8 path to the gateway");
    assert!(
        !bin.contains(|c: char| c.is_whitespace() || "\"'\\$%;".contains(c)),
        "the gateway's path {bin:?} would need quoting in ExecStart="
    );
    let (mut exec, mut timeout) = (0, 0);
    let mut out = String::new();
    for line in SHIPPED.lines() {
        if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec += 1;
            let mut words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
            assert_eq!(words[0], "/opt/gateway/gateway", "{line}");
            assert!(words.iter().any(|w| w == "--wait"), "{line}");
            assert!(cmd.contains(&format!("--log-dir {LOG_DIR} --state-dir {STATE_DIR}")));
            words[0] = bin.to_owned();
            let i = words
                .iter()
                .position(|w| w == "--drain-timeout")
                .expect("--drain-timeout in ExecStart=");
            words[i + 1] = drain_timeout.to_owned();
            words.extend(flags.iter().map(|f| (*f).to_owned()));
            out.push_str(&format!("ExecStart={}\n", words.join(" ")));
        } else if line.starts_with("TimeoutStopSec=") {
            timeout += 1;
            out.push_str(&format!("TimeoutStopSec={timeout_stop}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
            if line == "[Unit]" {
                out.push_str("# Test systemd: no sysinit.target to depend on.\n");
                out.push_str("DefaultDependencies=no\n");
            }
        }
    }
    assert_eq!(
        (exec, timeout),
        (1, 1),
        "shipped unit changed shape:\n{SHIPPED}"
    );
    out
}

/// Boots with `gw.service` = `unit()`, or skips (before building the gateway for it).
pub fn boot(unit: impl FnOnce() -> String) -> Option<SystemdNs> {
    if !crate::support::systemd::available_or_skip() {
        return None;
    }
    SystemdNs::builder().unit(UNIT, &unit()).boot_or_skip()
}

/// `systemctl start` (returns once READY=1 arrived: Type=notify) and checks it is active.
pub fn start(ns: &SystemdNs) {
    if let Err(e) = ns.systemctl(&["start", UNIT]).ok() {
        panic!("systemctl start {UNIT}: {e}\n{}", ns.status(UNIT));
    }
    assert_eq!(
        ns.show(UNIT, "ActiveState"),
        "active",
        "{}",
        ns.status(UNIT)
    );
}

/// Everything in the gateway's rolling log files inside the namespace.
pub fn gateway_log(ns: &SystemdNs) -> String {
    let mut out = String::new();
    let dir = ns.path(LOG_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for p in files {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("gateway.log"))
        {
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    out
}

/// Waits until the gateway's log has a line with `needle`; panics with the unit's state.
pub fn wait_log_line(ns: &SystemdNs, needle: &str, limit: Duration) -> String {
    let mut line = None;
    ns.wait_until(limit, || {
        line = gateway_log(ns)
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned);
        line.is_some()
    });
    line.unwrap_or_else(|| {
        panic!(
            "no {needle:?} in the gateway's log after {limit:?}:\n{}\n{}",
            gateway_log(ns),
            ns.status(UNIT)
        )
    })
}

/// `systemctl stop --no-block`, then waits until the unit is no longer deactivating; returns
/// how long the stop took and the `StatusText` values seen meanwhile.
pub fn stop_and_watch(
    ns: &SystemdNs,
    final_state: &str,
) -> (Duration, Vec<String>, Option<String>) {
    let t0 = Instant::now();
    ns.systemctl(&["stop", "--no-block", UNIT])
        .ok()
        .unwrap_or_else(|e| panic!("systemctl stop: {e}\n{}", ns.status(UNIT)));
    let mut texts: Vec<String> = Vec::new();
    let mut status_during_drain = None;
    let done = ns.wait_until(LONG, || {
        let state = ns.show(UNIT, "ActiveState");
        if state == "deactivating" {
            let text = ns.show(UNIT, "StatusText");
            if text.contains("drain") && status_during_drain.is_none() {
                status_during_drain = Some(
                    ns.systemctl(&["status", "--no-pager", "--lines=0", UNIT])
                        .stdout,
                );
            }
            if texts.last() != Some(&text) {
                texts.push(text);
            }
        }
        state == final_state
    });
    assert!(
        done,
        "{UNIT} not {final_state} {LONG:?} after the stop\n{}",
        ns.status(UNIT)
    );
    (t0.elapsed(), texts, status_during_drain)
}

pub fn only_context_line(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Shutdown context"))
        .collect();
    assert_eq!(lines.len(), 1, "ONE context line expected:\n{log}");
    lines[0].to_owned()
}

//! `TimingAlignment`: the comparison, the `Stale systemd unit detected` line, its tracing event.
//!
//! The probe itself (cgroup → manager → bounded `systemctl show`) is tested with a fake
//! `systemctl` in `src/systemd/unit/tests.rs`; the public entry points end to end, with the
//! environment they read, in `tests/systemd_env.rs`.
//!
//! Real or fake: neither; pure values. The real `systemctl show` behind the check is exercised in
//! `tests/systemd_real.rs` (stale and healthy units under a real systemd); the fake `systemctl`
//! (garbage output, a hanging or missing `systemctl`, user managers) in `src/systemd/unit/tests.rs`.

use crate::support::Capture;

use std::time::Duration;

use shutdown_forensics::systemd::{SystemdManager, TimingAlignment, DEFAULT_STOP_HEADROOM};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn alignment(timeout_stop: Duration, budget: Duration, manager: SystemdManager) -> TimingAlignment {
    TimingAlignment::new(
        "x.service",
        manager,
        timeout_stop,
        budget,
        DEFAULT_STOP_HEADROOM,
    )
}

#[test]
fn mismatch_only_strictly_below_budget_plus_headroom() {
    let system = SystemdManager::System;
    assert!(alignment(s(90), s(180), system).mismatch);
    assert!(alignment(s(209), s(180), system).mismatch);
    assert!(!alignment(s(210), s(180), system).mismatch);
    assert!(!alignment(s(600), s(180), system).mismatch);
    assert!(!alignment(Duration::MAX, Duration::MAX, system).mismatch);
    assert_eq!(alignment(s(90), s(180), system).expected_min, s(210));
    assert_eq!(
        alignment(s(90), Duration::MAX, system).expected_min,
        Duration::MAX
    );
}

#[test]
fn the_warning_names_the_unit_the_numbers_and_the_fix() {
    let line = alignment(s(90), s(180), SystemdManager::System)
        .stale_unit_warning()
        .expect("mismatch");
    assert_eq!(
        line,
        "Stale systemd unit detected: x.service has TimeoutStopSec=90s but the shutdown budget \
         needs >=210s (180s budget + 30s headroom), so systemd would SIGKILL it mid-shutdown; \
         fix: run `systemctl edit x.service`, add the lines \"[Service]\" and \
         \"TimeoutStopSec=210s\", save, then run `systemctl daemon-reload`"
    );
}

#[test]
fn user_units_get_the_user_managers_fix() {
    let line = alignment(s(90), s(180), SystemdManager::User)
        .stale_unit_warning()
        .expect("mismatch");
    assert!(
        line.contains("run `systemctl --user edit x.service`"),
        "{line}"
    );
    assert!(
        line.ends_with("run `systemctl --user daemon-reload`"),
        "{line}"
    );
}

#[test]
fn no_warning_without_mismatch() {
    assert_eq!(
        alignment(s(300), s(180), SystemdManager::System).stale_unit_warning(),
        None
    );
}

fn captured_events(f: impl FnOnce()) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    capture
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn warn_if_stale_emits_one_warn_event_with_fields() {
    let a = alignment(s(90), s(180), SystemdManager::User);
    let mut emitted = false;
    let events = captured_events(|| emitted = a.warn_if_stale());
    assert!(emitted);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["level"], "WARN");
    let fields = &event["fields"];
    assert_eq!(
        fields["message"].as_str(),
        a.stale_unit_warning().as_deref()
    );
    assert_eq!(
        event["target"], "shutdown",
        "a `shutdown=info` filter must let it through"
    );
    assert_eq!(fields["unit"], "x.service");
    assert_eq!(fields["timeout_stop_s"], 90.0);
    assert_eq!(fields["needed_s"], 210);
    assert_eq!(fields["manager"], "user");
}

#[test]
fn warn_if_stale_is_silent_when_aligned() {
    let a = alignment(Duration::MAX, s(180), SystemdManager::System);
    let mut emitted = true;
    let events = captured_events(|| emitted = a.warn_if_stale());
    assert!(!emitted);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn serializes_durations_as_seconds() {
    let json = serde_json::to_value(alignment(s(90), s(180), SystemdManager::System)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "unit": "x.service",
            "manager": "system",
            "timeout_stop_s": 90.0,
            "expected_min_s": 210.0,
            "budget_s": 180.0,
            "headroom_s": 30.0,
            "mismatch": true,
        })
    );
    let infinite = alignment(Duration::MAX, s(180), SystemdManager::System);
    let json = serde_json::to_value(infinite).unwrap();
    assert_eq!(json["timeout_stop_s"], serde_json::Value::Null);
    assert_eq!(json["mismatch"], false);
}

//! The report: JSON round-trip, Chrome trace events, the waterfall, open phases, the trigger.

use std::time::Duration;

use crate::support::{ms, setup};
use serde_json::Value;
use shutdown_forensics::context::{ShutdownTrigger, SignalSender};
use shutdown_forensics::report::{PhaseOutcome, ShutdownReport};
use shutdown_forensics::{phase, ShutdownHandle, ShutdownLayer};
use tracing::dispatcher::with_default;

/// notify 0.02s; drain 3.36s with late fields; two adapters in parallel under one phase;
/// db_close still open when the report is taken.
fn sample() -> ShutdownHandle {
    let (dispatch, handle, _capture, clock) =
        setup(ShutdownLayer::builder().with_total_budget(Duration::from_secs(90)));
    with_default(&dispatch, || {
        let mut sender = SignalSender::from_raw(1, 0, 0);
        sender.name = Some("systemd".into());
        let trigger = ShutdownTrigger::new(clock.now())
            .with_signal(15)
            .with_sender(sender);
        assert!(handle.begin_with(trigger));
        phase!("notify").in_scope(|| clock.advance(ms(20)));
        clock.advance(ms(30));
        let drain = phase!(
            "drain",
            active_at_start = 5,
            active_now = tracing::field::Empty
        );
        drain.in_scope(|| clock.advance(ms(3360)));
        drain.record("active_now", 0);
        drop(drain);
        phase!("disconnect_all").in_scope(|| {
            let slack = phase!("disconnect", adapter = "slack");
            let irc = phase!("disconnect", adapter = "irc", budget_s = 0.1);
            slack.in_scope(|| {});
            irc.in_scope(|| {});
            clock.advance(ms(150));
            drop(irc);
            clock.advance(ms(50));
        });
        let db = phase!("db_close");
        db.in_scope(|| clock.advance(ms(400)));
        std::mem::forget(db); // still open when the report is taken
    });
    handle
}

#[test]
fn report_lists_every_phase_with_outcome_and_open_time_so_far() {
    let report = sample().report();
    let summary: Vec<_> = report
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.start_s, p.duration_s, p.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            ("notify", 0.0, 0.02, PhaseOutcome::Done),
            ("drain", 0.05, 3.36, PhaseOutcome::Done),
            ("disconnect_all", 3.41, 0.2, PhaseOutcome::Done),
            ("disconnect<slack>", 3.41, 0.2, PhaseOutcome::Done),
            ("disconnect<irc>", 3.41, 0.15, PhaseOutcome::OverBudget),
            ("db_close", 3.61, 0.4, PhaseOutcome::Open),
        ]
    );
    assert_eq!(
        report.phases[1].fields.get("active_now"),
        Some(&Value::from(0))
    );
    assert!(!report.complete);
    assert_eq!((report.elapsed_s, report.margin_s), (4.01, Some(85.99)));
    let trigger = report.trigger.as_ref().expect("trigger");
    assert_eq!(trigger.describe(), "SIGTERM from pid 1 (systemd)");
}

#[test]
fn report_json_round_trips() {
    let report = sample().report();
    let json = report.to_json();
    let mut back: ShutdownReport = serde_json::from_str(&json).expect("parse");
    // serde_json (without `float_roundtrip`) may parse a 17-digit float one ulp off: the
    // wall-clock fields (~1.8e9 s) round-trip to well within a microsecond, not bit for bit.
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (a, b) => a.is_none() && b.is_none(),
    };
    assert!(close(back.origin_unix_s, report.origin_unix_s));
    back.origin_unix_s = report.origin_unix_s;
    if let (Some(b), Some(r)) = (back.trigger.as_mut(), report.trigger.as_ref()) {
        assert!(close(Some(b.wall_unix_s), Some(r.wall_unix_s)));
        b.wall_unix_s = r.wall_unix_s;
    }
    assert_eq!(back, report);
    let v: Value = serde_json::from_str(&json).expect("parse");
    assert_eq!(
        v["phases"][1]["fields"],
        serde_json::json!({"active_at_start": 5, "active_now": 0})
    );
    assert_eq!(v["phases"][5]["outcome"], "open");
}

#[test]
fn chrome_trace_has_one_complete_event_per_phase_and_separate_tracks_for_concurrency() {
    let report = sample().report();
    let trace: Value = serde_json::from_str(&report.to_chrome_trace()).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), report.phases.len());
    let by_name = |n: &str| complete.iter().find(|e| e["name"] == n).copied().expect(n);
    let drain = by_name("drain");
    assert_eq!(
        (drain["ts"].as_f64(), drain["dur"].as_f64()),
        (Some(50_000.0), Some(3_360_000.0))
    );
    assert_eq!(drain["args"]["active_at_start"], 5);
    assert_eq!(by_name("db_close")["args"]["outcome"], "open");
    // Parent and first child nest on one track; the concurrent sibling gets its own.
    let tid = |n: &str| by_name(n)["tid"].as_u64();
    assert_eq!(tid("disconnect_all"), tid("disconnect<slack>"));
    assert_ne!(tid("disconnect<slack>"), tid("disconnect<irc>"));
    assert_eq!(tid("notify"), tid("drain"));
}

const WATERFALL: &str = "\
shutdown: 4.01s, in progress, SIGTERM from pid 1 (systemd), budget 90.00s, margin 85.99s
 +0.00s  notify               █                                           0.02s
 +0.05s  drain                ██████████████████████████████████          3.36s
 +3.41s  disconnect_all                                         ██        0.20s
 +3.41s    disconnect<slack>                                    ██        0.20s
 +3.41s    disconnect<irc>                                      █         0.15s  over budget (0.10s)
 +3.61s  db_close                                                 ████    0.40s  open
";

#[test]
fn waterfall_snapshot() {
    let report = sample().report();
    assert_eq!(report.to_string(), WATERFALL);
    assert_eq!(format!("{report:#}"), WATERFALL.replace('█', "#"));
}

/// Issue 18, item 5: a phase label is untrusted (an adapter name from a flag, a config file):
/// a 100 000-character one made the waterfall panic ("Formatting argument out of range": a
/// format width past `u16::MAX`) right after `shutdown complete`. Display never panics, and a
/// label past the cap is shortened with `...` (its full text stays in the JSON report).
#[test]
fn the_waterfall_never_panics_on_huge_or_odd_labels() {
    let names = [
        "x".repeat(100_000),
        "x".repeat(65_536),
        "é".repeat(40_000),
        "\u{200b}".repeat(70_000),
        "a\nb\u{1b}[31mc\"d".repeat(10_000),
        String::new(),
        "\t".repeat(80_000),
    ];
    for name in &names {
        let (dispatch, handle, _capture, clock) = setup(ShutdownLayer::builder());
        with_default(&dispatch, || {
            assert!(handle.begin());
            phase!("notify").in_scope(|| clock.advance(ms(20)));
            phase!("disconnect", adapter = name.as_str()).in_scope(|| clock.advance(ms(30)));
            let nested = phase!("drain");
            nested.in_scope(|| {
                phase!("disconnect", adapter = name.as_str()).in_scope(|| clock.advance(ms(5)));
            });
            handle.finish();
        });
        let report = handle.report();
        let text = std::panic::catch_unwind(|| (report.to_string(), format!("{report:#}")));
        let (plain, ascii) = text.unwrap_or_else(|_| {
            panic!("Display panicked on a {}-char label", name.chars().count())
        });
        for out in [&plain, &ascii] {
            // Every row is there, none wider than a terminal could still show.
            assert_eq!(out.lines().count(), 1 + report.phases.len(), "{out}");
            for line in out.lines() {
                assert!(
                    line.chars().count() < 400,
                    "a row of {} chars",
                    line.chars().count()
                );
                assert!(!line.contains('\u{1b}') && !line.contains('\n'));
            }
        }
        // The JSON keeps the label whole.
        assert!(report
            .phases
            .iter()
            .any(|p| p.name == format!("disconnect<{name}>")));
    }
}

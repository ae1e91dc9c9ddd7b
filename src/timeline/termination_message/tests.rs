//! The message's text from fixture reports and snapshots.

use super::*;
use crate::context::trigger::TriggerInfo;
use crate::stuck::snapshot::StuckFinding;
use crate::timeline::phase_fields::PhaseFields;

fn phase(
    name: &str,
    start: f64,
    took: f64,
    outcome: PhaseOutcome,
    budget: Option<f64>,
) -> PhaseRecord {
    PhaseRecord {
        name: name.to_owned(),
        span_name: name.to_owned(),
        parent: None,
        start_s: start,
        duration_s: took,
        outcome,
        budget_s: budget,
        fields: PhaseFields::default(),
    }
}

fn report(complete: bool, elapsed: f64, phases: Vec<PhaseRecord>) -> ShutdownReport {
    let trigger: TriggerInfo = serde_json::from_str(
        r#"{"wall_unix_s":1.0,"signal":15,"signal_name":"SIGTERM",
            "sender":{"pid":0,"uid":0,"cause":"kill","name":null},
            "planned":false,"correlation_id":null}"#,
    )
    .unwrap();
    ShutdownReport {
        pid: 1,
        origin_unix_s: Some(1.0),
        trigger: Some(trigger),
        complete,
        elapsed_s: elapsed,
        budget_s: Some(55.0),
        margin_s: Some(55.0 - elapsed),
        phases,
        stuck: Vec::new(),
    }
}

fn snapshot(reason: StuckReason, at: f64, findings: Vec<String>) -> StuckSnapshot {
    let first = StuckFinding {
        text: findings.first().cloned().unwrap_or_default(),
        span: Some("request{method=POST path=/upload}".into()),
        peer: Some("10.0.0.7:5432".into()),
        no_data_s: Some(29.8),
        ..StuckFinding::default()
    };
    StuckSnapshot {
        phase: Some("drain".into()),
        at_s: at,
        reason,
        budget_s: Some(30.0),
        findings,
        blocked_threads: 0,
        idle_peers: 1,
        first_finding: Some(first),
        spans: Vec::new(),
        threads: Vec::new(),
        sockets: Vec::new(),
        connections: Vec::new(),
        unknown: Vec::new(),
        truncated: false,
        took_ms: 150.0,
    }
}

#[test]
fn before_a_kill_it_names_the_phase_how_long_where_stuck_and_the_expected_kill() {
    let r = report(
        false,
        54.0,
        vec![
            phase("notify", 0.0, 0.02, PhaseOutcome::Done, Some(2.0)),
            // The report is taken after the snapshot: the phase has run on meanwhile.
            phase("drain", 0.02, 54.13, PhaseOutcome::Open, Some(30.0)),
        ],
    );
    let s = snapshot(
        StuckReason::KillDeadline,
        54.0,
        vec!["request{method=POST path=/upload} idle 29.8s; 10.0.0.7:5432 ESTABLISHED no data for 29.8s".into()],
    );
    let text = before_kill(&r, &s, Some(Duration::from_secs(55)));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "shutdown not finished at +54.00s: in phase drain for 53.98s (budget 30.00s); a SIGKILL \
         is expected at +55.00s (kill deadline); stuck in request{method=POST path=/upload}: \
         10.0.0.7:5432 no data for 29.8s"
    );
    assert!(
        lines[1].contains("it was killed during phase drain"),
        "{text}"
    );
    assert_eq!(lines[2], "stop: SIGTERM from outside-pidns");
    assert_eq!(
        lines[3],
        "phases: notify 0.02s, drain running since +0.02s (budget 30.00s)"
    );
    assert!(
        lines[4].starts_with("findings: request{method=POST"),
        "{text}"
    );
}

#[test]
fn at_the_managers_sigabrt_it_says_the_process_dies_of_it_not_a_sigkill() {
    let r = report(
        false,
        2.0,
        vec![phase("drain", 0.0, 2.0, PhaseOutcome::Open, None)],
    );
    let s = snapshot(StuckReason::SupervisorAbort, 2.0, Vec::new());
    let text = before_kill(&r, &s, Some(Duration::from_secs(2)));
    assert!(
        text.starts_with(
            "shutdown not finished at +2.00s: in phase drain for 2.00s; the service manager \
             sent SIGABRT"
        ),
        "{text}"
    );
    assert!(!text.contains("SIGKILL is expected"), "{text}");
}

#[test]
fn at_finish_it_says_complete_the_total_and_the_slowest_top_level_phase() {
    let mut nested = phase("flush", 0.1, 5.0, PhaseOutcome::Done, None);
    nested.parent = Some(1);
    let mut r = report(
        true,
        3.62,
        vec![
            phase("notify", 0.0, 0.02, PhaseOutcome::Done, Some(2.0)),
            phase("drain", 0.02, 3.41, PhaseOutcome::Done, Some(30.0)),
            nested,
            phase("db_close", 3.43, 0.05, PhaseOutcome::Done, Some(5.0)),
        ],
    );
    r.stuck
        .push(snapshot(StuckReason::Budget, 30.0, vec!["x".into()]));
    let text = complete(&r);
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "shutdown complete in 3.62s; slowest phase drain 3.41s; budget 55.00s, margin 51.38s"
    );
    assert!(
        text.contains("\nstop: SIGTERM from outside-pidns\n"),
        "{text}"
    );
    assert!(
        text.contains("\nstuck at +30.00s in drain (budget): request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s\n"),
        "{text}"
    );
    let over = report(
        true,
        60.0,
        vec![phase(
            "drain",
            0.0,
            60.0,
            PhaseOutcome::OverBudget,
            Some(30.0),
        )],
    );
    assert!(complete(&over).starts_with(
        "shutdown complete in 60.00s; slowest phase drain 60.00s (over budget 30.00s); over its \
         budget 55.00s by 5.00s"
    ));
    let none = report(true, 0.5, Vec::new());
    assert!(complete(&none).starts_with("shutdown complete in 0.50s; no phase was timed"));
}

#[test]
fn untrusted_text_is_escaped_and_the_message_never_exceeds_4_kib() {
    let r = report(
        false,
        5.0,
        vec![phase(
            "disconnect<a\nERROR forged>",
            0.0,
            5.0,
            PhaseOutcome::Open,
            None,
        )],
    );
    let mut s = snapshot(StuckReason::KillDeadline, 5.0, vec!["é".repeat(3000); 3]);
    s.phase = Some("disconnect<a\nERROR forged>".into());
    let text = before_kill(&r, &s, Some(Duration::from_secs(6)));
    assert!(text.len() <= MAX_BYTES, "{}", text.len());
    assert!(text.ends_with("..."), "cut where it is too long");
    assert!(!text.contains("\nERROR forged"), "{text}");
    assert!(
        text.starts_with(
            r#"shutdown not finished at +5.00s: in phase "disconnect<a\nERROR forged>""#
        ),
        "{text}"
    );
    let short = cap("ok".to_owned());
    assert_eq!(short, "ok");
}

#[test]
fn a_message_before_a_kill_taken_after_finish_never_replaces_the_final_one() {
    use crate::context::trigger::ShutdownTrigger;
    let layer = crate::ShutdownLayer::new();
    let handle = layer.handle();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("termination-log");
    let _ = handle.shared.startup.termination_message.set(path.clone());
    assert!(handle.begin_with(ShutdownTrigger::now().with_signal(libc::SIGTERM)));
    // The watchdog's snapshot comes first: its message is written.
    let s = snapshot(StuckReason::KillDeadline, 1.0, vec!["x".into()]);
    handle.shared.termination_message_before_kill(&s);
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(
        first.starts_with("shutdown not finished at +1.00s"),
        "{first}"
    );
    assert!(handle.finish().is_some());
    handle.shared.termination_message_at_finish();
    // A snapshot that was still being delivered as the shutdown finished comes too late.
    handle.shared.termination_message_before_kill(&s);
    let last = std::fs::read_to_string(&path).unwrap();
    assert!(last.starts_with("shutdown complete in "), "{last}");
    assert!(last.contains("\nstop: SIGTERM\n"), "{last}");
}

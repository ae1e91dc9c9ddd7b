//! The gateway example with a client that uploads slowly and stalls (`--slow-upload`), and
//! one that stays on its server-sent events (`--sse-client`): the drain is stuck on that
//! connection, and the crate names it in the log, the done line, the waterfall, the report,
//! and (after a SIGKILL) the next start's verdict. With `--sse-fix` (streams end on the
//! shutdown signal, the fix docs/http.md shows) the same client no longer holds the drain.

mod gateway_support;

use std::time::Duration;

use gateway_support::{kill_from_other_process, next_start_verdict, Gateway};

#[test]
fn a_drain_stuck_on_a_stalled_upload_is_named_in_the_log_the_waterfall_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &[
            "--slow-upload",
            "--self-signal-after",
            "1",
            "--adapters",
            "slack",
            "--drain-secs",
            "0.2",
        ],
    );
    let stuck = gw.wait_for("drain stuck (budget 3.00s)", Duration::from_secs(60));
    assert!(stuck.contains("WARN"), "{stuck}");
    // The connection (shutdown_forensics::http), what it does, and its silent client.
    assert!(
        stuck.contains("POST /upload receiving from 127.0.0.1:"),
        "{stuck}"
    );
    assert!(stuck.contains(", client silent for "), "{stuck}");
    let done = gw.wait_for(" drain done (", Duration::from_secs(30));
    assert!(done.contains("timed_out=true"), "{done}");
    assert!(done.contains("abandoned_spans=1"), "{done}");
    assert!(
        done.contains("oldest_abandoned=\"request{method=POST path=/upload"),
        "{done}"
    );
    assert!(gw.wait_exit(Duration::from_secs(60)).success());
    let waterfall = gw.seen.join("\n");
    assert!(waterfall.contains("↳ stuck at +"), "{waterfall}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/last-shutdown.json")).unwrap(),
    )
    .unwrap();
    let snap = &report["report"]["stuck"][0];
    assert_eq!(snap["phase"], "drain");
    assert_eq!(snap["reason"], "budget");
    assert!(snap["findings"][0]
        .as_str()
        .unwrap()
        .starts_with("POST /upload receiving from 127.0.0.1:"));
    assert_eq!(snap["connections"][0]["state"], "receiving");
    assert_eq!(snap["connections"][0]["path"], "/upload");
    let trace = std::fs::read_to_string(dir.path().join("logs/shutdown-trace.json")).unwrap();
    assert!(trace.contains("\"drain stuck\""));
    // The diagnostic file has the whole snapshot as text.
    let diag = std::fs::read_to_string(dir.path().join("logs/shutdown-diag.log")).unwrap();
    assert!(diag.contains("=== stuck snapshot: drain at +"), "{diag}");
    assert!(
        diag.contains("span: request{method=POST path=/upload"),
        "{diag}"
    );
    assert!(
        diag.contains("thread: ") && diag.contains("socket: fd="),
        "{diag}"
    );
}

#[test]
fn killed_while_stuck_the_next_start_says_where_it_was_stuck_and_how_long_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &[
            "--wait",
            "--slow-upload",
            "--drain-timeout",
            "60",
            "--kill-after",
            "3",
            "--adapters",
            "slack",
            "--drain-secs",
            "0.2",
        ],
    );
    gw.wait_for("slow upload: stalled", Duration::from_secs(30));
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    gw.wait_for("Shutdown context", Duration::from_secs(30));
    let _ = kill.wait();
    // The kill deadline is 3 s after the signal: the snapshot comes 1 s before it.
    let stuck = gw.wait_for("drain stuck (kill deadline near)", Duration::from_secs(30));
    assert!(stuck.contains("POST /upload receiving from "), "{stuck}");
    std::thread::sleep(Duration::from_millis(1500)); // a heartbeat or two more
    gw.child.kill().unwrap(); // SIGKILL, as the supervisor would
    gw.child.wait().unwrap();

    let verdict = next_start_verdict(dir.path());
    assert!(
        verdict.contains("was killed during phase drain (entered +"),
        "{verdict}"
    );
    assert!(verdict.contains("s into drain)"), "{verdict}");
    assert!(
        verdict.contains("; stuck in POST /upload receiving from 127.0.0.1:"),
        "{verdict}"
    );
    assert!(verdict.contains(", client silent for "), "{verdict}");
}

#[test]
fn a_drain_stuck_on_an_sse_client_names_the_stream_and_the_fix_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--sse-client",
        "--self-signal-after",
        "1",
        "--adapters",
        "slack",
        "--drain-secs",
        "0.2",
    ];
    let mut gw = Gateway::start(dir.path(), &args);
    let stuck = gw.wait_for("drain stuck (budget 3.00s)", Duration::from_secs(60));
    assert!(stuck.contains(": GET /events streaming "), "{stuck}");
    assert!(stuck.contains("s to 127.0.0.1:"), "{stuck}");
    let done = gw.wait_for(" drain done (", Duration::from_secs(30));
    // Counted by the crate: 3 sessions and the stream at the start, the stream at the end.
    assert!(done.contains("active_at_start=4 "), "{done}");
    assert!(done.contains("timed_out=true active_now=1"), "{done}");
    assert!(gw.wait_exit(Duration::from_secs(60)).success());

    let fixed = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(fixed.path(), &[&args[..], &["--sse-fix"]].concat());
    let done = gw.wait_for(" drain done (", Duration::from_secs(30));
    assert!(done.contains("timed_out=false active_now=0"), "{done}");
    assert!(gw.wait_exit(Duration::from_secs(60)).success());
    assert!(
        !gw.seen.iter().any(|l| l.contains("drain stuck")),
        "{:#?}",
        gw.seen
    );
}

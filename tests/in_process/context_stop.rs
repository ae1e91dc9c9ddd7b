//! How the stop came, on the `Shutdown context` line: `stop=planned|supervisor|unexpected`,
//! `stop_job`, and the line's level (INFO for a routine stop: the service manager's stop job
//! here, a planned-stop marker that names us in `tests/signal_planned.rs`). What a
//! real systemd answers is in `tests/systemd_stop_kinds.rs`; here the answer is given.

use shutdown_forensics::context::{ManagerJob, ShutdownContext};

fn with_job(job: Option<ManagerJob>) -> ShutdownContext {
    let mut ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    ctx.manager_job = job;
    ctx
}

/// Whether `line` holds the space-separated `pairs` as whole words.
fn has(line: &str, pairs: &str) -> bool {
    line.split(&format!(" {pairs}"))
        .skip(1)
        .any(|rest| rest.is_empty() || rest.starts_with([' ', '\n']))
}

/// The event as a plain fmt subscriber prints it.
fn logged(ctx: &ShutdownContext) -> String {
    let cap = crate::support::Capture::default();
    tracing::subscriber::with_default(crate::support::subscriber(&cap), || ctx.log());
    cap.text()
}

#[test]
fn a_stop_job_is_a_routine_stop_logged_at_info() {
    let ctx = with_job(Some(ManagerJob::Stop {
        job_type: "restart".into(),
        job_id: 15,
    }));
    assert_eq!(ctx.stop_kind(), "supervisor");
    let line = ctx.to_log_line();
    assert!(has(&line, "stop=supervisor stop_job=restart"), "{line}");
    let out = logged(&ctx);
    assert!(out.starts_with(" INFO Shutdown context "), "{out}");
    assert!(has(&out, "stop=supervisor stop_job=restart"), "{out}");
}

#[test]
fn no_job_an_unanswered_manager_or_no_question_stays_an_unexpected_warn() {
    for (job, word) in [
        (Some(ManagerJob::None), Some("none")),
        (
            Some(ManagerJob::Unknown {
                why: "timed out".into(),
            }),
            Some("unknown"),
        ),
        (None, None),
    ] {
        let ctx = with_job(job);
        assert_eq!(ctx.stop_kind(), "unexpected");
        let out = logged(&ctx);
        assert!(out.starts_with(" WARN Shutdown context "), "{out}");
        match word {
            Some(w) => assert!(has(&out, &format!("stop=unexpected stop_job={w}")), "{out}"),
            None => {
                assert!(has(&out, "stop=unexpected"), "{out}");
                assert!(!out.contains("stop_job="), "not asked, not said: {out}");
            }
        }
    }
}

#[test]
fn the_answer_round_trips_through_json() {
    let ctx = with_job(Some(ManagerJob::Stop {
        job_type: "stop".into(),
        job_id: 11,
    }));
    let v: serde_json::Value = serde_json::from_str(&ctx.to_json()).unwrap();
    assert_eq!(
        v["manager_job"],
        serde_json::json!({"kind": "stop", "job_type": "stop", "job_id": 11})
    );
    let back: ShutdownContext = serde_json::from_str(&ctx.to_json()).unwrap();
    assert_eq!(back.manager_job, ctx.manager_job);
    // A context written before the field existed still reads.
    let mut old = v.clone();
    old.as_object_mut().unwrap().remove("manager_job");
    let back: ShutdownContext = serde_json::from_value(old).unwrap();
    assert_eq!(back.manager_job, None);
}

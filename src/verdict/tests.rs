use super::*;

#[test]
fn empty_is_none_and_garbage_is_unknown_never_clean() {
    assert_eq!(parse_records(""), PreviousShutdown::None);
    assert_eq!(parse_records("\n\n"), PreviousShutdown::None);
    let v = parse_records("not json\n{\"kind\":");
    assert!(
        matches!(
            v,
            PreviousShutdown::Unknown {
                reason: UnknownReason::Unreadable,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(!v.is_clean());
}

#[test]
fn a_torn_last_line_is_unknown_and_keeps_what_is_known() {
    // ENOSPC cut the phase_end short: the process may well have completed its shutdown.
    let text = "{\"kind\":\"run\",\"pid\":9}\n{\"kind\":\"begin\",\"t\":0}\n\
        {\"kind\":\"phase_start\",\"t\":2.1,\"id\":0,\"phase\":\"drain\"}\n\
        {\"kind\":\"phase_end\",\"t\":3,\"id\":0,\"ph";
    let v = parse_records(text);
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous shutdown may not have completed: pid 9 had begun a shutdown during phase \
             drain (last record +2.10s), then its flight record ends in a torn line (a write \
             cut short: full disk, I/O error, or a kill during a write); whether it completed \
             is unknown"
        )
    );
    // A whole `complete` line is clean whatever follows it.
    let text = "{\"kind\":\"begin\",\"t\":0}\n{\"kind\":\"complete\",\"t\":1}\n{\"kin";
    assert!(parse_records(text).is_clean());
    // Power loss can leave zeros where a line should be.
    let text = "{\"kind\":\"run\",\"pid\":9}\n\0\0\0\0";
    assert!(matches!(
        parse_records(text),
        PreviousShutdown::Unknown {
            shutdown_begun: false,
            ..
        }
    ));
}

#[test]
fn an_oversized_last_line_is_unknown() {
    let v = parse_tail("", true);
    assert!(
        matches!(
            v,
            PreviousShutdown::Unknown {
                reason: UnknownReason::OversizedLine,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(v
        .message()
        .unwrap()
        .contains("larger than the 64 KiB read window"));
}

#[test]
fn a_recorded_panic_that_ended_the_run_is_a_panic() {
    let panic = "{\"kind\":\"panic\",\"message\":\"index out of bounds\",\
        \"location\":\"src/main.rs:10:5\",\"thread\":\"main\"}\n";
    let run = "{\"kind\":\"run\",\"pid\":9}\n";
    let unwound =
        "{\"kind\":\"note\",\"note\":\"exit\",\"value\":{\"shutdown\":false,\"panicking\":true}}\n";
    let v = parse_records(&format!("{run}{panic}{unwound}"));
    assert_eq!(
        v.message().as_deref(),
        Some("Previous run ended in a panic: pid 9 panicked at src/main.rs:10:5 on thread main: \"index out of bounds\"")
    );
    // The panic was the last line (panic = "abort"): a panic too.
    assert!(matches!(
        parse_records(&format!("{run}{panic}")),
        PreviousShutdown::Panicked { .. }
    ));
    // During a shutdown.
    let begun = "{\"kind\":\"begin\",\"t\":0}\n{\"kind\":\"phase_start\",\"t\":1,\"id\":0,\"phase\":\"drain\"}\n";
    let v = parse_records(&format!("{run}{begun}{panic}"));
    assert!(
        matches!(&v, PreviousShutdown::Panicked { shutdown_begun: true, phase: Some(p), .. } if p == "drain"),
        "{v:?}"
    );
    assert!(v.message().unwrap().starts_with(
        "Previous shutdown did not complete: pid 9 panicked during phase drain at src/main.rs:10:5"
    ));
    // The watchdog's heartbeat, stamped before the exit note, can land after it: the run
    // still ended in the panic (seen in tests/panic_verdict.rs, about 1 run in 8).
    let late = "{\"kind\":\"heartbeat\",\"t\":0.9}\n";
    let v = parse_records(&format!("{run}{begun}{panic}{unwound}{late}"));
    assert!(
        matches!(
            &v,
            PreviousShutdown::Panicked {
                shutdown_begun: true,
                ..
            }
        ),
        "{v:?}"
    );
    // A panic caught and survived: the run went on and exited normally.
    let exit = "{\"kind\":\"note\",\"note\":\"exit\",\"value\":{\"shutdown\":false}}\n";
    assert_eq!(
        parse_records(&format!("{run}{panic}{exit}")),
        PreviousShutdown::Exited { pid: Some(9) }
    );
}

#[test]
fn run_without_begin_is_no_shutdown() {
    let v = parse_records("{\"kind\":\"run\",\"pid\":7}\n");
    assert_eq!(
        v,
        PreviousShutdown::NoShutdown {
            pid: Some(7),
            outlived_panic: None
        }
    );
    assert_eq!(
        v.message().as_deref(),
        Some("Previous run (pid 7) ended without starting a shutdown (crash, OOM kill or power loss)")
    );
}

#[test]
fn complete_is_clean_and_only_the_last_run_counts() {
    let text = "{\"kind\":\"run\",\"pid\":1}\n{\"kind\":\"begin\",\"t\":0}\n\
                {\"kind\":\"run\",\"pid\":2}\n{\"kind\":\"begin\",\"t\":0}\n\
                {\"kind\":\"complete\",\"t\":3.5,\"total_s\":3.5}\n";
    let v = parse_records(text);
    assert_eq!(
        v,
        PreviousShutdown::Clean {
            pid: Some(2),
            total: Duration::from_secs_f64(3.5)
        }
    );
    assert!(v.is_clean() && v.message().is_none());
}

#[test]
fn killed_names_the_innermost_open_phase() {
    let text = "{\"kind\":\"run\",\"pid\":9}\n{\"kind\":\"begin\",\"t\":0}\n\
        {\"kind\":\"phase_start\",\"t\":0.5,\"id\":0,\"phase\":\"notify\"}\n\
        {\"kind\":\"phase_end\",\"t\":1,\"id\":0}\n\
        {\"kind\":\"phase_start\",\"t\":1,\"id\":1,\"phase\":\"teardown\"}\n\
        {\"kind\":\"phase_start\",\"t\":2,\"id\":2,\"phase\":\"drain\"}\n";
    let PreviousShutdown::Killed {
        phase,
        open_phases,
        last_record,
        ..
    } = parse_records(text)
    else {
        panic!("expected Killed");
    };
    assert_eq!(phase.as_deref(), Some("drain"));
    assert_eq!(open_phases, ["teardown", "drain"]);
    assert_eq!(last_record, Duration::from_secs(2));
}

#[test]
fn a_checkpoint_restates_the_state_when_the_start_is_out_of_the_window() {
    let text = "{\"kind\":\"note\",\"t\":5}\n\
        {\"kind\":\"checkpoint\",\"t\":6,\"pid\":4,\"begun\":true,\
          \"open\":[{\"id\":3,\"phase\":\"drain\",\"t\":2.5}]}\n\
        {\"kind\":\"note\",\"t\":7}\n";
    let v = parse_records(text);
    assert_eq!(
        v.message().as_deref(),
        Some("Previous shutdown did not complete: pid 4 was killed during phase drain (entered +2.50s, last record +7.00s, killed 4.50s or later into drain)")
    );
}

#[test]
fn killed_between_phases_names_the_last_phase_that_ended() {
    let text = "{\"kind\":\"run\",\"pid\":3}\n{\"kind\":\"begin\",\"t\":0}\n\
        {\"kind\":\"phase_start\",\"t\":0.5,\"id\":0,\"phase\":\"notify\"}\n\
        {\"kind\":\"phase_end\",\"t\":1,\"id\":0,\"phase\":\"notify\"}\n\
        {\"kind\":\"phase_start\",\"t\":2,\"id\":1,\"phase\":\"drain\"}\n\
        {\"kind\":\"phase_end\",\"t\":30,\"id\":1,\"phase\":\"drain\"}\n";
    assert_eq!(
        parse_records(text).message().as_deref(),
        Some("Previous shutdown did not complete: pid 3 was killed after phase drain ended (+30.00s, last record +30.00s)")
    );
}

#[test]
fn a_checkpoint_older_than_a_phase_end_before_it_does_not_reopen_the_phase() {
    // Written by a version that took the checkpoint's snapshot before another thread's
    // phase_end landed, and wrote it after.
    let text = "{\"kind\":\"run\",\"pid\":3}\n{\"kind\":\"begin\",\"t\":0}\n\
        {\"kind\":\"phase_start\",\"t\":2,\"id\":1,\"phase\":\"drain\"}\n\
        {\"kind\":\"note\",\"t\":5}\n\
        {\"kind\":\"phase_end\",\"t\":5,\"id\":1,\"phase\":\"drain\"}\n\
        {\"kind\":\"checkpoint\",\"t\":5,\"pid\":3,\"begun\":true,\
          \"open\":[{\"id\":1,\"phase\":\"drain\",\"t\":2}]}\n";
    let v = parse_records(text);
    assert!(
        matches!(&v, PreviousShutdown::Killed { phase: None, open_phases, .. } if open_phases.is_empty()),
        "{v:?}"
    );
    assert_eq!(
        v.message().as_deref(),
        Some("Previous shutdown did not complete: pid 3 was killed after phase drain ended (+5.00s, last record +5.00s)")
    );
}

#[test]
fn a_checkpoint_restates_the_last_ended_phase_and_a_restated_start_is_not_doubled() {
    let text = "{\"kind\":\"note\",\"t\":5}\n\
        {\"kind\":\"checkpoint\",\"t\":6,\"pid\":4,\"begun\":true,\"open\":[],\
          \"last_ended\":{\"id\":2,\"phase\":\"notify\",\"t\":5.5}}\n";
    assert_eq!(
        parse_records(text).message().as_deref(),
        Some("Previous shutdown did not complete: pid 4 was killed after phase notify ended (+5.50s, last record +6.00s)")
    );
    let text = "{\"kind\":\"checkpoint\",\"t\":6,\"pid\":4,\"begun\":true,\
          \"open\":[{\"id\":3,\"phase\":\"drain\",\"t\":6}]}\n\
        {\"kind\":\"phase_start\",\"t\":6,\"id\":3,\"phase\":\"drain\"}\n";
    let PreviousShutdown::Killed { open_phases, .. } = parse_records(text) else {
        panic!("expected Killed");
    };
    assert_eq!(open_phases, ["drain"]);
}

#[test]
fn killed_before_any_phase() {
    let v = parse_records("{\"kind\":\"begin\",\"t\":0,\"pid\":3}\n");
    assert_eq!(
        v.message().as_deref(),
        Some("Previous shutdown did not complete: pid 3 was killed before any phase started (last record +0.00s)")
    );
}

#[test]
fn an_escalated_exit_is_not_called_a_kill() {
    let text = concat!(
        "{\"kind\":\"run\",\"pid\":9}\n",
        "{\"kind\":\"begin\",\"t\":0.0}\n",
        "{\"kind\":\"phase_start\",\"id\":0,\"phase\":\"drain\",\"t\":0.1}\n",
        "{\"kind\":\"note\",\"note\":\"escalated\",\"t\":1.5,\"value\":{\"count\":2,\"exit_code\":130}}\n",
    );
    let v = parse_records(text);
    assert!(
        matches!(
            &v,
            PreviousShutdown::Escalated {
                signal_count: 2,
                exit_code: 130,
                ..
            }
        ),
        "{v:?}"
    );
    assert_eq!(
        v.message().as_deref(),
        Some("Previous shutdown did not complete: pid 9 exited with code 130 on signal #2 (escalation) during phase drain (last record +1.50s)")
    );
}

#[test]
fn an_exit_without_a_shutdown_is_not_a_crash() {
    let text = "{\"kind\":\"run\",\"pid\":9}\n{\"kind\":\"note\",\"note\":\"exit\",\"t\":null,\"value\":{}}\n";
    let v = parse_records(text);
    assert_eq!(v, PreviousShutdown::Exited { pid: Some(9) });
    assert_eq!(v.message(), None);
}

/// The operators' verdict table (`docs/operators.md`) shows every verdict, each line as the
/// crate prints it: a new variant does not compile here until it has a row.
#[test]
fn the_operators_doc_lists_every_verdict() {
    let doc = include_str!("../../docs/operators.md");
    let table = &doc[doc.find("## Verdicts").expect("the section")..];
    let table = &table[..table[1..].find("\n## ").map_or(table.len(), |end| end + 1)];
    for reason in [UnknownReason::OversizedLine, UnknownReason::Unreadable] {
        assert!(table.contains(&reason.to_string()), "no {reason:?}");
    }
    let fixtures = [
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#,
            "\n",
            r#"{"kind":"heartbeat","t":89.95}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"db_close"}"#,
            "\n",
            r#"{"kind":"note","t":2.5,"note":"exit","value":{"shutdown":true,"panicking":false}}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#,
            "\n",
            r#"{"kind":"phase_end","t":2.6,"id":0,"phase":"drain","unwinding":true}"#,
            "\n",
            r#"{"kind":"note","t":2.6,"note":"exit","value":{"shutdown":true,"panicking":true,"panic_seq":null,"panic_hook":true}}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"complete","t":3.6,"total_s":3.6}"#,
            "\n",
            r#"{"kind":"panic","seq":1,"message":"report write failed","location":"src/main.rs:80:9","thread":"main"}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"panic","seq":1,"message":"worker failed","location":"src/worker.rs:3:5","thread":"tokio-runtime-worker"}"#,
            "\n",
            r#"{"kind":"note","note":"panic_outlived","value":{"through":1}}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":2.5,"id":0,"phase":"db_close"}"#,
            "\n",
            r#"{"kind":"phase_end","t":3.0,"id":0,"phase":"db_close"}"#,
            "\n",
            r#"{"kind":"note","t":3.1,"note":"x"}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"note","t":0.05,"note":"context"}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":0.1,"id":0,"phase":"drain"}"#,
            "\n",
            r#"{"kind":"note","t":1.2,"note":"escalated","value":{"count":2,"exit_code":130}}"#,
            "\n",
        ),
        concat!(r#"{"kind":"run","pid":4242}"#, "\n"),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"complete","t":3.6,"total_s":3.6}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"note","t":null,"note":"exit","value":{"shutdown":false}}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"panic","message":"index out of bounds","location":"src/main.rs:10:5","thread":"main"}"#,
            "\n",
            r#"{"kind":"note","note":"exit","value":{"shutdown":false,"panicking":true}}"#,
            "\n",
        ),
        concat!(
            r#"{"kind":"run","pid":4242}"#,
            "\n",
            r#"{"kind":"begin","t":0.0}"#,
            "\n",
            r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#,
            "\n",
            r#"{"kind":"phase_end","t":3"#,
        ),
        "",
    ];
    let mut verdicts: Vec<PreviousShutdown> = fixtures.iter().map(|t| parse_records(t)).collect();
    verdicts.push(PreviousShutdown::StillRunning { pid: 4242 });
    let mut seen = Vec::new();
    for v in &verdicts {
        let name = match v {
            PreviousShutdown::None => "None",
            PreviousShutdown::Clean { .. } => "Clean",
            PreviousShutdown::Killed { .. } => "Killed",
            PreviousShutdown::ExitedEarly { .. } => "ExitedEarly",
            PreviousShutdown::Escalated { .. } => "Escalated",
            PreviousShutdown::StillRunning { .. } => "StillRunning",
            PreviousShutdown::Exited { .. } => "Exited",
            PreviousShutdown::NoShutdown { .. } => "NoShutdown",
            PreviousShutdown::Panicked { .. } => "Panicked",
            PreviousShutdown::Unknown { .. } => "Unknown",
        };
        assert!(table.contains(&format!("| `{name}`")), "no row for {name}");
        if let Some(line) = v.message() {
            assert!(
                table.contains(&format!("`{line}`")),
                "docs/operators.md does not show: {line}"
            );
        }
        seen.push(name);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 10, "{seen:?}");
}

// ------------------------------------------------------------------ issue 18: every ending

const RUN: &str = "{\"kind\":\"run\",\"pid\":9}\n";
const BEGUN: &str = "{\"kind\":\"begin\",\"t\":0}\n\
    {\"kind\":\"phase_start\",\"t\":0.5,\"id\":0,\"phase\":\"notify\"}\n\
    {\"kind\":\"phase_end\",\"t\":1,\"id\":0,\"phase\":\"notify\"}\n\
    {\"kind\":\"phase_start\",\"t\":2.1,\"id\":1,\"phase\":\"drain\"}\n";

fn exit_note(t: f64, value: &str) -> String {
    format!("{{\"kind\":\"note\",\"note\":\"exit\",\"t\":{t},\"value\":{value}}}\n")
}

#[test]
fn an_exit_during_the_shutdown_is_exited_early_never_killed() {
    // `std::process::exit` inside drain: the atexit note, drain still open.
    let exit = exit_note(
        2.5,
        r#"{"shutdown":true,"finished":false,"panicking":false,"by":"exit"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{exit}"));
    assert!(
        matches!(&v, PreviousShutdown::ExitedEarly { phase: Some(p), .. } if p == "drain"),
        "{v:?}"
    );
    assert!(!v.is_clean());
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous shutdown did not complete: pid 9 exited during phase drain without \
             finishing (entered +2.10s, exited +2.50s; finish() was not called: an error \
             returned from the shutdown path, an early return or an exit)"
        )
    );
    // A `?` in drain: the guard closed drain, then Forensics was dropped.
    let ended = "{\"kind\":\"phase_end\",\"t\":2.4,\"id\":1,\"phase\":\"drain\"}\n";
    let exit = exit_note(
        2.41,
        r#"{"shutdown":true,"finished":false,"panicking":false,"by":"drop"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{ended}{exit}"));
    assert!(v.message().unwrap().starts_with(
        "Previous shutdown did not complete: pid 9 exited after phase drain ended without \
         finishing (ended +2.40s, exited +2.41s; "
    ));
    // Before any phase. A heartbeat racing the exit note changes nothing.
    let begin = "{\"kind\":\"begin\",\"t\":0}\n";
    let exit = exit_note(
        0.1,
        r#"{"shutdown":true,"finished":false,"panicking":false}"#,
    );
    let late = "{\"kind\":\"heartbeat\",\"t\":0.1}\n";
    let v = parse_records(&format!("{RUN}{begin}{exit}{late}"));
    assert!(v.message().unwrap().starts_with(
        "Previous shutdown did not complete: pid 9 exited before any phase started without finishing (exited +0.10s; "
    ), "{v:?}");
    // A helper dropped before the shutdown, the run going on and killed during one: killed.
    let early = exit_note(0.0, r#"{"shutdown":false,"panicking":false}"#);
    let v = parse_records(&format!("{RUN}{early}{BEGUN}"));
    assert!(matches!(v, PreviousShutdown::Killed { .. }), "{v:?}");
    // An escalation exits too (its exit note follows): still the escalation.
    let esc = "{\"kind\":\"note\",\"note\":\"escalated\",\"t\":2.2,\"value\":{\"count\":2,\"exit_code\":130}}\n";
    let exit = exit_note(
        2.3,
        r#"{"shutdown":true,"finished":false,"panicking":false,"by":"exit"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{esc}{exit}"));
    assert!(matches!(v, PreviousShutdown::Escalated { .. }), "{v:?}");
    // Spans closed as the exit goes on (a runtime dropped after `Forensics`): still exited.
    let exit = exit_note(
        2.5,
        r#"{"shutdown":true,"finished":false,"panicking":false,"by":"drop"}"#,
    );
    let closed = "{\"kind\":\"phase_end\",\"t\":2.6,\"id\":1,\"phase\":\"drain\"}\n";
    let v = parse_records(&format!("{RUN}{BEGUN}{exit}{closed}"));
    assert!(matches!(v, PreviousShutdown::ExitedEarly { .. }), "{v:?}");
    // A helper dropped during the shutdown, which then went on (a heartbeat 5 s later) and
    // was killed: not an exit.
    let alive = "{\"kind\":\"heartbeat\",\"t\":7.5}\n";
    let v = parse_records(&format!("{RUN}{BEGUN}{exit}{alive}"));
    assert!(matches!(v, PreviousShutdown::Killed { .. }), "{v:?}");
    // An exit(3) note is an exit whatever comes after it.
    let at_exit = exit_note(
        2.5,
        r#"{"shutdown":true,"finished":false,"panicking":false,"by":"exit"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{at_exit}{alive}"));
    assert!(matches!(v, PreviousShutdown::ExitedEarly { .. }), "{v:?}");
    // It said it had finished, but the `complete` line is not there (its write failed): not
    // "finish() was not called", and never clean without that line.
    let said = exit_note(
        3.0,
        r#"{"shutdown":true,"finished":true,"panicking":false,"by":"drop"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{said}"));
    assert!(
        matches!(
            v,
            PreviousShutdown::Unknown {
                reason: UnknownReason::CompletionLost,
                ..
            }
        ),
        "{v:?}"
    );
    assert!(v.message().unwrap().contains("no line of that completion"));
    // After `finish`: clean.
    let done = "{\"kind\":\"complete\",\"t\":3,\"total_s\":3}\n";
    let exit = exit_note(
        3.0,
        r#"{"shutdown":true,"finished":true,"panicking":false,"by":"drop"}"#,
    );
    assert!(parse_records(&format!("{RUN}{BEGUN}{done}{exit}")).is_clean());
}

#[test]
fn a_panic_the_hook_did_not_record_is_still_a_panic() {
    // Another hook replaced ours after install; main panicked in drain; the unwinding closed
    // drain (the phase_end says so), then dropped Forensics.
    let unwound =
        "{\"kind\":\"phase_end\",\"t\":2.6,\"id\":1,\"phase\":\"drain\",\"unwinding\":true}\n";
    let exit = exit_note(
        2.6,
        r#"{"shutdown":true,"finished":false,"panicking":true,"panic_seq":null,"panic_hook":true,"by":"drop"}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{unwound}{exit}"));
    assert!(
        matches!(&v, PreviousShutdown::Panicked { recorded: false, hook_replaced: true, phase: Some(p), .. } if p == "drain"),
        "{v:?}"
    );
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous shutdown did not complete: pid 9 panicked during phase drain: message \
             unknown: the panic hook was replaced after install"
        )
    );
    // Not "killed after phase drain ended".
    assert!(!v.message().unwrap().contains("killed"));
    // No shutdown: a panic of the run.
    let exit = exit_note(
        0.0,
        r#"{"shutdown":false,"panicking":true,"panic_seq":null,"panic_hook":true}"#,
    );
    let v = parse_records(&format!("{RUN}{exit}"));
    assert_eq!(
        v.message().as_deref(),
        Some("Previous run ended in a panic: pid 9 panicked: message unknown: the panic hook was replaced after install")
    );
    // The hook off: said as such, not "replaced".
    let exit = exit_note(
        0.0,
        r#"{"shutdown":false,"panicking":true,"panic_seq":null,"panic_hook":false}"#,
    );
    let v = parse_records(&format!("{RUN}{exit}"));
    assert!(
        matches!(
            v,
            PreviousShutdown::Panicked {
                recorded: false,
                hook_replaced: false,
                ..
            }
        ),
        "{v:?}"
    );
    // An earlier panic of the run, caught: the unwinding one is named by its number.
    let caught =
        "{\"kind\":\"panic\",\"seq\":1,\"message\":\"caught one\",\"thread\":\"worker\"}\n";
    let fatal = "{\"kind\":\"panic\",\"seq\":2,\"message\":\"fatal one\",\"thread\":\"main\"}\n";
    let exit = exit_note(
        0.0,
        r#"{"shutdown":false,"panicking":true,"panic_seq":2,"panic_hook":true}"#,
    );
    let v = parse_records(&format!("{RUN}{fatal}{caught}{exit}"));
    assert!(
        matches!(&v, PreviousShutdown::Panicked { message, .. } if message == "fatal one"),
        "{v:?}"
    );
    // A worker's panic passed on to main (`resume_unwind`: no hook runs there): the last
    // panic recorded, and the line says it is inferred.
    let worker =
        "{\"kind\":\"panic\",\"seq\":1,\"message\":\"worker failed\",\"thread\":\"worker\"}\n";
    let exit = exit_note(
        0.0,
        r#"{"shutdown":false,"panicking":true,"panic_seq":null,"panic_hook":true}"#,
    );
    let v = parse_records(&format!("{RUN}{worker}{exit}"));
    assert!(
        matches!(&v, PreviousShutdown::Panicked { recorded: true, inferred: true, hook_replaced: false, message, .. } if message == "worker failed"),
        "{v:?}"
    );
    assert!(v.message().unwrap().starts_with(
        "Previous run ended in a panic: pid 9 panicked on thread worker: \"worker failed\" (the last panic recorded"
    ));
}

#[test]
fn a_panic_the_process_outlived_is_mentioned_not_blamed() {
    let caught = "{\"kind\":\"panic\",\"seq\":1,\"message\":\"worker failed\",\
        \"location\":\"src/worker.rs:3:5\",\"thread\":\"worker\"}\n";
    let outlived =
        "{\"kind\":\"note\",\"note\":\"panic_outlived\",\"t\":null,\"value\":{\"through\":1}}\n";
    // Hours later, SIGKILL without SIGTERM.
    let v = parse_records(&format!("{RUN}{caught}{outlived}"));
    assert!(
        matches!(&v, PreviousShutdown::NoShutdown { outlived_panic: Some(p), .. } if p.message == "worker failed"),
        "{v:?}"
    );
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous run (pid 9) ended without starting a shutdown (crash, OOM kill or power \
             loss); it had outlived a panic at src/worker.rs:3:5 on thread worker: \"worker \
             failed\" (caught, or confined to its thread; not what ended it)"
        )
    );
    // The witness spoke only for an earlier one: this one is the record's last word (an abort).
    let second = "{\"kind\":\"panic\",\"seq\":2,\"message\":\"abort\"}\n";
    let v = parse_records(&format!("{RUN}{caught}{outlived}{second}"));
    assert!(
        matches!(&v, PreviousShutdown::Panicked { message, .. } if message == "abort"),
        "{v:?}"
    );
    // Outlived, then the shutdown ran and was killed: killed.
    let v = parse_records(&format!("{RUN}{caught}{outlived}{BEGUN}"));
    assert!(matches!(v, PreviousShutdown::Killed { .. }), "{v:?}");
}

#[test]
fn a_panic_after_finish_is_reported_not_hidden_behind_clean() {
    let done = "{\"kind\":\"complete\",\"t\":3.62,\"total_s\":3.62}\n";
    let panic = "{\"kind\":\"panic\",\"seq\":1,\"message\":\"report write failed\",\
        \"location\":\"src/main.rs:80:9\",\"thread\":\"main\"}\n";
    let exit = exit_note(
        3.7,
        r#"{"shutdown":true,"finished":true,"panicking":true,"panic_seq":1,"panic_hook":true}"#,
    );
    let v = parse_records(&format!("{RUN}{BEGUN}{done}{panic}{exit}"));
    assert!(!v.is_clean());
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous run ended in a panic: the shutdown completed (total teardown 3.62s), then \
             pid 9 panicked at src/main.rs:80:9 on thread main: \"report write failed\""
        )
    );
    // A panic after `finish` that the process outlived: clean.
    let outlived = "{\"kind\":\"note\",\"note\":\"panic_outlived\",\"value\":{\"through\":1}}\n";
    let exit = exit_note(
        3.9,
        r#"{"shutdown":true,"finished":true,"panicking":false}"#,
    );
    assert!(parse_records(&format!("{RUN}{BEGUN}{done}{panic}{outlived}{exit}")).is_clean());
}

#[test]
fn the_kill_is_bounded_by_the_heartbeat_that_never_came() {
    // Killed 0.6 s into drain: the last heartbeat at drain's start, the next one due a
    // second later never came. Not "0.00s into drain", a figure that reads as measured.
    let hb = "{\"kind\":\"heartbeat\",\"t\":2.1}\n";
    let v = parse_records(&format!("{RUN}{BEGUN}{hb}"));
    assert!(
        matches!(v, PreviousShutdown::Killed { killed_by: Some(by), .. } if by == Duration::from_secs_f64(3.1)),
        "{v:?}"
    );
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous shutdown did not complete: pid 9 was killed during phase drain (entered \
             +2.10s, last record +2.10s, killed between 0.00s and 1.00s into drain)"
        )
    );
    // Heartbeats that stopped long before the last record (a full record drops them) bound
    // nothing.
    let hb = "{\"kind\":\"heartbeat\",\"t\":0.2}\n";
    let v = parse_records(&format!("{RUN}{hb}{BEGUN}"));
    assert!(
        v.message()
            .unwrap()
            .ends_with("killed 0.00s or later into drain)"),
        "{v:?}"
    );
}

#[test]
fn phases_before_a_reset_are_not_a_shutdown() {
    // A phase helper ran before the signal helper was installed; install reset the clock.
    let before = concat!(
        r#"{"kind":"run","pid":7}"#,
        "\n",
        r#"{"kind":"begin","t":0.0,"pid":7}"#,
        "\n",
        r#"{"kind":"phase_start","t":0.0,"id":0,"phase":"drain"}"#,
        "\n",
        r#"{"kind":"phase_end","t":0.8,"id":0,"phase":"drain"}"#,
        "\n",
        r#"{"kind":"reset","phases":["drain"]}"#,
        "\n",
    );
    assert_eq!(
        parse_records(before),
        PreviousShutdown::NoShutdown {
            pid: Some(7),
            outlived_panic: None
        }
    );
    // The shutdown that follows is judged on its own: its phase, its offsets.
    let after = format!(
        "{before}{}\n{}\n{}\n",
        r#"{"kind":"begin","t":0.0,"pid":7}"#,
        r#"{"kind":"phase_start","t":0.1,"id":1,"phase":"notify"}"#,
        r#"{"kind":"heartbeat","t":0.5}"#,
    );
    let v = parse_records(&after);
    assert_eq!(
        v.message().as_deref(),
        Some(
            "Previous shutdown did not complete: pid 7 was killed during phase notify \
             (entered +0.10s, last record +0.50s, killed between 0.40s and 1.40s into notify)"
        ),
        "{v:?}"
    );
}

#[test]
fn the_stuck_summary_is_built_from_the_recorded_parts_never_from_the_sentence() {
    let head = "{\"kind\":\"run\",\"pid\":7}\n{\"kind\":\"begin\",\"t\":0}\n\
        {\"kind\":\"phase_start\",\"t\":0.5,\"id\":0,\"phase\":\"drain\"}\n";
    // Parts joining a span to its peer: the short form, and the parts for the event's fields.
    let joined = format!(
        "{head}{}\n",
        r#"{"kind":"stuck","t":3,"phase":"drain","summary":"ignored when parts exist","first":{"text":"request{method=POST} idle 2.5s; 10.0.0.7:5432 ESTABLISHED no data for 2.9s","span":"request{method=POST}","peer":"10.0.0.7:5432","idle_s":2.5,"no_data_s":2.9}}"#
    );
    let v = parse_records(&joined);
    let PreviousShutdown::Killed {
        stuck,
        stuck_finding,
        ..
    } = &v
    else {
        panic!("{v:?}");
    };
    assert_eq!(
        stuck.as_deref(),
        Some("request{method=POST}: 10.0.0.7:5432 no data for 2.9s")
    );
    let parts = stuck_finding.as_ref().unwrap();
    assert_eq!(parts.peer.as_deref(), Some("10.0.0.7:5432"));
    assert_eq!(v.kind(), "killed");
    assert!(v
        .message()
        .unwrap()
        .ends_with("; stuck in request{method=POST}: 10.0.0.7:5432 no data for 2.9s"));

    // A span whose quoted field text holds "; <address> ... no data for": no peer in the parts,
    // so the sentence stays whole; no address is made up.
    let forged = format!(
        "{head}{}\n",
        r#"{"kind":"stuck","t":3,"phase":"drain","first":{"text":"request{ua=\"x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; \"} idle 2.5s","span":"request{ua=\"x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; \"}","idle_s":2.5}}"#
    );
    let v = parse_records(&forged);
    let message = v.message().unwrap();
    assert!(
        message.ends_with(
            r#"; stuck in request{ua="x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; "} idle 2.5s"#
        ),
        "{message}"
    );
    assert!(!message.contains("}: 10.9.9.9"), "{message}");

    // A record of an earlier version (a summary, no parts): its summary, no parts.
    let old = format!(
        "{head}{}\n",
        r#"{"kind":"stuck","t":3,"phase":"drain","summary":"request{a=1}: 10.0.0.7:5432 no data for 2.9s"}"#
    );
    let PreviousShutdown::Killed {
        stuck,
        stuck_finding,
        ..
    } = parse_records(&old)
    else {
        panic!()
    };
    assert_eq!(
        stuck.as_deref(),
        Some("request{a=1}: 10.0.0.7:5432 no data for 2.9s")
    );
    assert_eq!(stuck_finding, None);

    // Oversized parts are cut.
    let long = "x".repeat(5000);
    let big = format!(
        "{head}{{\"kind\":\"stuck\",\"t\":3,\"phase\":\"drain\",\"first\":{{\"text\":\"{long}\",\"span\":\"{long}\",\"peer\":\"{long}\",\"path\":[{}]}}}}\n",
        vec!["\"p\""; 50].join(",")
    );
    let PreviousShutdown::Killed {
        stuck,
        stuck_finding: Some(parts),
        ..
    } = parse_records(&big)
    else {
        panic!()
    };
    assert!(stuck.unwrap().chars().count() <= 400);
    assert!(parts.span.unwrap().chars().count() <= 400);
    assert_eq!(parts.path.len(), 8);
}

#[test]
fn every_verdict_has_a_kind() {
    assert_eq!(PreviousShutdown::None.kind(), "none");
    assert_eq!(
        parse_records("{\"kind\":\"run\",\"pid\":1}\n").kind(),
        "no_shutdown"
    );
    assert_eq!(
        parse_records("{\"kind\":\"begin\",\"t\":0}\n{\"kind\":\"complete\",\"t\":1}\n").kind(),
        "clean"
    );
}

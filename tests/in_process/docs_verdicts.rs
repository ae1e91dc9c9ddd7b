//! The verdict lines `docs/operators.md` shows are the lines the code writes: each example is
//! the message of a record that ends that way, word for word. A verdict whose wording changes
//! fails here until the operators' table says the new words.

use shutdown_forensics::verdict::{PreviousShutdown, UnknownReason};
use shutdown_forensics::FlightRecord;

fn operators() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operators.md")).unwrap()
}

/// The verdict on `lines` (one JSON object each, as the flight record holds them).
fn verdict(lines: &[&str]) -> PreviousShutdown {
    FlightRecord::parse(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())
}

const RUN: &str = r#"{"kind":"run","pid":4242}"#;
const BEGIN: &str = r#"{"kind":"begin","t":0.0,"pid":4242}"#;
const DRAIN: &str = r#"{"kind":"phase_start","t":2.1,"id":0,"phase":"drain"}"#;

#[test]
fn every_verdict_line_in_the_operators_table_is_what_the_code_writes() {
    let doc = operators();
    let cases: Vec<(&str, PreviousShutdown)> = vec![
        (
            "killed during a phase",
            verdict(&[RUN, BEGIN, DRAIN, r#"{"kind":"heartbeat","t":89.95}"#]),
        ),
        (
            "killed between phases",
            verdict(&[
                RUN,
                BEGIN,
                r#"{"kind":"phase_start","t":2.5,"id":0,"phase":"db_close"}"#,
                r#"{"kind":"phase_end","t":3.0,"id":0,"phase":"db_close"}"#,
                r#"{"kind":"heartbeat","t":3.1}"#,
            ]),
        ),
        (
            "killed before any phase",
            verdict(&[RUN, BEGIN, r#"{"kind":"heartbeat","t":0.05}"#]),
        ),
        (
            "escalated",
            verdict(&[
                RUN,
                BEGIN,
                r#"{"kind":"phase_start","t":0.5,"id":0,"phase":"drain"}"#,
                r#"{"kind":"note","note":"escalated","t":1.2,"value":{"count":2,"exit_code":130}}"#,
            ]),
        ),
        (
            "a panic without a shutdown",
            verdict(&[
                RUN,
                r#"{"kind":"panic","message":"index out of bounds","location":"src/main.rs:10:5","thread":"main"}"#,
            ]),
        ),
        (
            "a torn last line",
            verdict(&[RUN, BEGIN, DRAIN, r#"{"kind":"phase_e"#]),
        ),
        ("no shutdown", verdict(&[RUN])),
    ];
    for (case, v) in &cases {
        let message = v.message().unwrap_or_else(|| panic!("{case}: no line"));
        assert!(
            doc.contains(&message),
            "{case}: docs/operators.md does not show the line the code writes:\n{message}"
        );
    }

    // The table's shorter forms: a panic during a shutdown, and the other unknown reasons.
    let panicked = verdict(&[
        RUN,
        BEGIN,
        DRAIN,
        r#"{"kind":"panic","message":"boom","location":"src/main.rs:10:5","thread":"main"}"#,
    ]);
    let message = panicked.message().unwrap();
    let head = "Previous shutdown did not complete: pid 4242 panicked during phase drain at ";
    assert!(message.starts_with(head), "{message}");
    assert!(doc.contains(head), "{head}");
    for reason in [UnknownReason::OversizedLine, UnknownReason::Unreadable] {
        let words = reason.to_string();
        assert!(doc.contains(&words), "docs/operators.md lacks {words:?}");
    }

    // The verdicts that log nothing say so in the table.
    let clean = verdict(&[RUN, BEGIN, r#"{"kind":"complete","t":1.0,"total_s":1.0}"#]);
    let exited = verdict(&[RUN, r#"{"kind":"note","note":"exit","t":0.0,"value":{}}"#]);
    for (name, v) in [("Clean", clean), ("Exited", exited)] {
        assert_eq!(v.message(), None, "{name}");
        assert!(
            doc.contains(&format!("| `{name}` | (nothing) |")),
            "{name} row"
        );
    }
    for name in ["StillRunning", "None"] {
        assert!(
            doc.contains(&format!("| `{name}` | (nothing) |")),
            "{name} row"
        );
    }
}

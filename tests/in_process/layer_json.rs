//! What a JSON subscriber (`tracing_subscriber::fmt().json()`) receives: a phase's recorded
//! fields as fields of the `done` event, typed, not only inside the message; strings as
//! themselves, not logfmt-quoted.

use crate::support::{ms, Capture};
use serde_json::{json, Value};
use shutdown_forensics::report::ManualClock;
use shutdown_forensics::{phase, ShutdownLayer};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

fn json_lines(capture: &Capture) -> Vec<Value> {
    capture
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_json_subscriber_gets_the_recorded_fields_as_fields() {
    let clock = ManualClock::new();
    let layer = ShutdownLayer::builder().with_clock(clock.clone()).build();
    let handle = layer.handle();
    let capture = Capture::default();
    let json = tracing_subscriber::fmt::layer()
        .json()
        .without_time()
        .with_writer(capture.clone());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(json).with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        handle.begin();
        let drain = phase!(
            "drain",
            active_at_start = 3,
            active_now = Empty,
            timed_out = Empty,
            who = "x y",
            odd = "a\0b"
        );
        drain.in_scope(|| clock.advance(ms(1500)));
        drain.record("active_now", 2);
        drain.record("timed_out", true);
        drop(drain);
        phase!(
            "disconnect",
            adapter = "slack",
            ok = true,
            delta = -4,
            ratio = 0.5
        )
        .in_scope(|| {});
        phase!("db_close").in_scope(|| {});
        handle.finish();
    });
    let lines = json_lines(&capture);
    let done: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(" done ("))
        })
        .collect();
    assert_eq!(done.len(), 3, "{lines:#?}");

    assert_eq!(done[0]["target"], "shutdown");
    assert_eq!(done[0]["level"], "INFO");
    assert_eq!(
        done[0]["fields"],
        json!({
            "message": "+1.50s drain done (1.50s)",
            "active_at_start": 3,
            "active_now": 2,
            "timed_out": true,
            // Strings as themselves, where a text formatter shows them as logfmt does...
            "who": "x y",
            // ...and logfmt-rendered where it would not (NUL: `\0` in Debug, `\u{0}` here).
            "odd": "\"a\\u{0}b\"",
            "phase": "drain",
            "offset_s": 1.5,
            "duration_s": 1.5,
        })
    );
    // `adapter` is in the label; the others keep their JSON type.
    assert_eq!(
        done[1]["fields"],
        json!({
            "message": "+1.50s disconnect<slack> done (0.00s)",
            "ok": true,
            "delta": -4,
            "ratio": 0.5,
            "phase": "disconnect<slack>",
            "offset_s": 1.5,
            "duration_s": 0.0,
        })
    );
    assert_eq!(
        done[2]["fields"],
        json!({
            "message": "+1.50s db_close done (0.00s)",
            "phase": "db_close",
            "offset_s": 1.5,
            "duration_s": 0.0,
        })
    );
    // No span around the lines, whatever was current.
    assert!(done.iter().all(|l| l.get("span").is_none()), "{lines:#?}");
}

#[test]
fn a_field_named_like_the_events_own_stays_in_the_text() {
    let clock = ManualClock::new();
    let layer = ShutdownLayer::builder().with_clock(clock.clone()).build();
    let handle = layer.handle();
    let capture = Capture::default();
    let json = tracing_subscriber::fmt::layer()
        .json()
        .without_time()
        .with_writer(capture.clone());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(json).with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        handle.begin();
        phase!("drain", phase = "mine").in_scope(|| {});
    });
    let lines = json_lines(&capture);
    let done = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(" done ("))
        })
        .expect("a done line");
    assert_eq!(
        done["fields"]["message"],
        "+0.00s drain done (0.00s) phase=mine"
    );
    assert_eq!(done["fields"]["phase"], "drain");
}

#[test]
fn strings_reach_json_as_themselves_while_the_text_line_stays_logfmt() {
    // (value, as the text line shows it: logfmt, unchanged)
    let cases = [
        ("bare", "bare"),
        ("x y", r#""x y""#),
        (r#"say "hi""#, r#""say \"hi\"""#),
        ("back\\slash", r#""back\\slash""#),
        ("a\nERROR forged", r#""a\nERROR forged""#),
        ("\u{1b}[31mred", r#""\u{1b}[31mred""#),
        ("rtl\u{202e}txt", r#""rtl\u{202e}txt""#),
        ("it's here", r#""it's here""#),
        ("a\0b", r#""a\u{0}b""#),
        ("k=v", r#""k=v""#),
    ];
    for (value, shown) in cases {
        let run = |json: bool| {
            let clock = ManualClock::new();
            let layer = ShutdownLayer::builder().with_clock(clock.clone()).build();
            let handle = layer.handle();
            let capture = Capture::default();
            let base = tracing_subscriber::fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_target(false)
                .with_writer(capture.clone());
            let dispatch = if json {
                tracing::Dispatch::new(tracing_subscriber::registry().with(base.json()).with(layer))
            } else {
                tracing::Dispatch::new(tracing_subscriber::registry().with(base).with(layer))
            };
            tracing::dispatcher::with_default(&dispatch, || {
                handle.begin();
                phase!("drain", who = value).in_scope(|| {});
            });
            capture
                .lines()
                .into_iter()
                .find(|l| l.contains(" done ("))
                .expect("a done line")
        };
        let text = run(false);
        assert_eq!(
            text,
            format!(" INFO +0.00s drain done (0.00s) who={shown} phase=drain offset_s=0.0 duration_s=0.0"),
            "{value:?}"
        );
        let json: Value = serde_json::from_str(&run(true)).unwrap();
        // NUL is the one here a text formatter escapes otherwise: it stays logfmt-rendered.
        let expected = if value.contains('\0') { shown } else { value };
        assert_eq!(json["fields"]["who"], expected, "{value:?}");
    }
}

#[test]
fn oldest_abandoned_reaches_json_as_the_crates_own_rendering_unquoted() {
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let capture = Capture::default();
    let json = tracing_subscriber::fmt::layer()
        .json()
        .without_time()
        .with_writer(capture.clone());
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(json).with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        // A request that began before the stop and outlives the drain.
        let _request = tracing::info_span!("request", method = "POST", path = "/upload");
        handle.begin();
        phase!("drain").in_scope(|| {});
        // No phase ran out of its budget: the completion line reports it, once.
        handle.finish();
    });
    let lines = json_lines(&capture);
    let done = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(" shutdown complete ("))
        })
        .expect("a completion line");
    assert_eq!(done["fields"]["abandoned_spans"], 1, "{done}");
    // Not the JSON formatter's `{"method":"POST",...}`, not logfmt-quoted.
    let oldest = done["fields"]["oldest_abandoned"].as_str().unwrap();
    assert!(
        oldest.starts_with("request{method=POST path=/upload} age "),
        "{oldest}"
    );
}

//! Spans a shutdown leaves open are reported where that is news: on the `done` line of the
//! phase that ran out of its budget (it gave up on them), else once on the completion line;
//! never again on each later phase. And finding them costs a phase close little, however
//! deep the app's spans nest.

use std::time::{Duration, Instant};

use crate::support::{ms, setup};
use shutdown_forensics::{phase, ShutdownLayer};
use tracing::dispatcher::with_default;

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} in {lines:#?}"))
}

fn quiet() -> shutdown_forensics::ShutdownLayerBuilder {
    // The watchdog's snapshot would add a line of its own; it is not what is tested here.
    ShutdownLayer::builder().with_stuck_snapshot_on_budget(false)
}

#[test]
fn the_phase_that_ran_out_of_budget_reports_what_it_left_open_and_no_other_phase_repeats_it() {
    let (d, handle, cap, clock) = setup(quiet().with_phase_budget("drain", Duration::from_secs(3)));
    with_default(&d, || {
        // A request in flight when the stop comes, never finished.
        let request = tracing::info_span!("request", method = "POST");
        handle.begin();
        phase!("notify").in_scope(|| clock.advance(ms(10)));
        phase!("drain").in_scope(|| clock.advance(ms(3_010)));
        phase!("disconnect", adapter = "slack").in_scope(|| clock.advance(ms(50)));
        phase!("db_close").in_scope(|| clock.advance(ms(2)));
        handle.finish();
        drop(request);
    });
    let lines = cap.lines();
    let drain = line_with(&lines, " drain done (");
    assert!(drain.contains(" abandoned_spans=1 "), "{drain}");
    assert!(
        drain.contains("oldest_abandoned=\"request{method=POST} age "),
        "{drain}"
    );
    for quiet_one in [
        " notify done (",
        " disconnect<slack> done (",
        " db_close done (",
        " shutdown complete (",
    ] {
        let line = line_with(&lines, quiet_one);
        assert!(!line.contains("abandoned"), "{line}");
    }
}

#[test]
fn without_a_phase_that_gave_up_the_completion_line_reports_them_once() {
    let (d, handle, cap, clock) = setup(quiet());
    with_default(&d, || {
        let request = tracing::info_span!("request", id = 7);
        // The app's own span around its shutdown: running, not abandoned.
        let _main = tracing::info_span!("main").entered();
        handle.begin();
        phase!("notify").in_scope(|| clock.advance(ms(10)));
        phase!("drain").in_scope(|| clock.advance(ms(500)));
        handle.finish();
        drop(request);
    });
    let lines = cap.lines();
    assert_eq!(
        lines.iter().filter(|l| l.contains("abandoned")).count(),
        1,
        "{lines:#?}"
    );
    let complete = line_with(&lines, " shutdown complete (");
    assert!(complete.contains(" abandoned_spans=1 "), "{complete}");
    assert!(
        complete.contains("oldest_abandoned=\"request{id=7} age "),
        "{complete}"
    );
    assert!(!complete.contains("main"), "{complete}");
}

#[test]
fn a_phase_close_under_ten_thousand_nested_spans_stays_cheap() {
    let (d, handle, cap, clock) = setup(quiet().with_phase_budget("drain", Duration::from_secs(1)));
    let took = with_default(&d, || {
        // Ten thousand spans, each entered inside the previous one, all still open.
        let mut spans: Vec<tracing::Span> = Vec::new();
        for i in 0..10_000 {
            let s = tracing::info_span!("nested", depth = i);
            tracing::dispatcher::get_default(|d| d.enter(&s.id().unwrap()));
            spans.push(s);
        }
        handle.begin();
        let drain = phase!("drain");
        drain.in_scope(|| clock.advance(ms(1_500))); // over budget: the close looks for them
        let started = Instant::now();
        drop(drain);
        let took = started.elapsed();
        handle.finish();
        // Innermost first: the registry closes a parent from its last child's close, by
        // recursion, when the parent's own handle is gone first.
        while let Some(s) = spans.pop() {
            tracing::dispatcher::get_default(|d| d.exit(&s.id().unwrap()));
            drop(s);
        }
        took
    });
    // Loose: a shared, noisy machine and a debug build (1.04 s before; see BENCHMARKS.md for
    // the release figure).
    assert!(took < Duration::from_millis(150), "{took:?}");
    // Every one of them is an ancestor of the phase: none is abandoned, or the line says the
    // count could not cover them all.
    let done = line_with(&cap.lines(), " drain done (").to_owned();
    assert!(
        !done.contains("abandoned_spans=") || done.contains("abandoned_scan_cut=true"),
        "{done}"
    );
}

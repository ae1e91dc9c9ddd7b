//! The exact log lines of phases: started/done, late fields, adapters, nesting, origin.

use crate::support::{ms, setup};
use shutdown_forensics::{phase, ShutdownLayer};
use tracing::dispatcher::with_default;
use tracing::field::Empty;

#[test]
fn started_and_done_lines_carry_late_fields() {
    let (dispatch, handle, capture, clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        assert!(handle.begin());
        clock.advance(ms(20));
        let span = phase!(
            "drain",
            active_at_start = 5,
            active_now = Empty,
            timed_out = Empty
        );
        {
            let _g = span.enter();
            clock.advance(ms(3410));
            span.record("active_now", 0);
            span.record("timed_out", false);
        }
        drop(span);
        clock.advance(ms(190));
        assert_eq!(handle.finish(), Some(ms(3620)));
    });
    assert_eq!(
        capture.lines(),
        [
            " INFO shutdown: +0.02s drain started phase=drain offset_s=0.02",
            " INFO shutdown: +3.43s drain done (3.41s) active_at_start=5 active_now=0 timed_out=false phase=drain offset_s=3.43 duration_s=3.41",
            " INFO shutdown: +3.62s shutdown complete (total teardown 3.62s) offset_s=3.62 total_s=3.62",
        ]
    );
}

#[test]
fn adapter_field_names_the_instance_and_hostile_values_cannot_forge_lines() {
    let (dispatch, _handle, capture, clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        phase!("disconnect", adapter = "slack").in_scope(|| clock.advance(ms(250)));
        let evil = "x\nERROR forged line";
        phase!("disconnect", adapter = evil, note = evil).in_scope(|| {});
    });
    let lines = capture.lines();
    assert_eq!(
        lines,
        [
            " INFO shutdown: +0.00s disconnect<slack> started phase=disconnect<slack> offset_s=0.0",
            " INFO shutdown: +0.25s disconnect<slack> done (0.25s) phase=disconnect<slack> offset_s=0.25 duration_s=0.25",
            r#" INFO shutdown: +0.25s "disconnect<x\nERROR forged line>" started phase="disconnect<x\nERROR forged line>" offset_s=0.25"#,
            r#" INFO shutdown: +0.25s "disconnect<x\nERROR forged line>" done (0.00s) note="x\nERROR forged line" phase="disconnect<x\nERROR forged line>" offset_s=0.25 duration_s=0.0"#,
        ]
    );
}

#[test]
fn origin_is_the_first_phase_without_begin_and_begin_after_it_is_refused() {
    let (dispatch, handle, capture, clock) = setup(ShutdownLayer::builder());
    clock.advance(ms(5000)); // time before the shutdown does not count
    with_default(&dispatch, || {
        assert_eq!(handle.elapsed(), None);
        let drain = phase!("drain");
        clock.advance(ms(1000));
        assert!(
            !handle.begin(),
            "the first phase already began the shutdown"
        );
        drain.in_scope(|| clock.advance(ms(500)));
        drop(drain);
        assert_eq!(handle.elapsed(), Some(ms(1500)));
    });
    assert_eq!(
        capture.lines(),
        [
            " INFO shutdown: +0.00s drain started phase=drain offset_s=0.0",
            " INFO shutdown: +1.50s drain done (1.50s) phase=drain offset_s=1.5 duration_s=1.5",
        ]
    );
}

#[test]
fn nested_and_concurrent_phases_are_all_recorded() {
    let (dispatch, handle, capture, clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        handle.begin();
        let all = phase!("disconnect_all");
        let _g = all.enter();
        let slack = phase!("disconnect", adapter = "slack");
        let irc = phase!("disconnect", adapter = "irc");
        slack.in_scope(|| {});
        irc.in_scope(|| {});
        clock.advance(ms(100));
        drop(slack);
        clock.advance(ms(200));
        drop(irc);
    });
    assert_eq!(
        capture.lines(),
        [
            " INFO shutdown: +0.00s disconnect_all started phase=disconnect_all offset_s=0.0",
            " INFO shutdown: +0.00s disconnect<slack> started phase=disconnect<slack> offset_s=0.0",
            " INFO shutdown: +0.00s disconnect<irc> started phase=disconnect<irc> offset_s=0.0",
            " INFO shutdown: +0.10s disconnect<slack> done (0.10s) phase=disconnect<slack> offset_s=0.1 duration_s=0.1",
            " INFO shutdown: +0.30s disconnect<irc> done (0.30s) phase=disconnect<irc> offset_s=0.3 duration_s=0.3",
            " INFO shutdown: +0.30s disconnect_all done (0.30s) phase=disconnect_all offset_s=0.3 duration_s=0.3",
        ]
    );
    let report = handle.report();
    let names: Vec<_> = report
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.parent))
        .collect();
    assert_eq!(
        names,
        [
            ("disconnect_all", None),
            ("disconnect<slack>", Some(0)),
            ("disconnect<irc>", Some(0))
        ]
    );
}

#[test]
fn phases_on_other_threads_are_recorded() {
    let (dispatch, handle, capture, _clock) = setup(ShutdownLayer::builder());
    let threads: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                with_default(&dispatch, || {
                    phase!("disconnect", adapter = name).in_scope(|| {})
                });
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let mut names: Vec<_> = handle.report().phases.into_iter().map(|p| p.name).collect();
    names.sort();
    assert_eq!(names, ["disconnect<a>", "disconnect<b>", "disconnect<c>"]);
    assert_eq!(capture.text().matches(" done (").count(), 3);
}

#[test]
fn closing_a_root_shutdown_span_completes_the_shutdown() {
    let (dispatch, handle, capture, clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        phase!("shutdown").in_scope(|| {
            phase!("drain").in_scope(|| clock.advance(ms(1000)));
            clock.advance(ms(10));
        });
        assert_eq!(handle.finish(), None, "already finished, logged once");
    });
    let report = handle.report();
    assert!(report.complete);
    assert_eq!(
        report.phases.len(),
        1,
        "the root span is the shutdown, not a phase"
    );
    assert_eq!(
        capture.lines().last().map(String::as_str),
        Some(" INFO shutdown: +1.01s shutdown complete (total teardown 1.01s) offset_s=1.01 total_s=1.01")
    );
}

#[test]
fn spans_and_events_of_other_targets_are_untouched() {
    let (dispatch, handle, capture, _clock) = setup(ShutdownLayer::builder());
    with_default(&dispatch, || {
        let span = tracing::info_span!("drain", n = 1);
        span.in_scope(|| tracing::info!(target: "app", "hello"));
    });
    assert_eq!(capture.lines(), [" INFO drain{n=1}: app: hello"]);
    assert!(handle.report().phases.is_empty());
    assert_eq!(handle.elapsed(), None);
}

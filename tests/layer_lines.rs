//! The exact log lines of phases: started/done, late fields, adapters, nesting, origin.

mod layer_common;

use layer_common::{ms, setup};
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

//! What closing a phase costs the app's thread when the phase ran out of its budget and the
//! layer looks for the spans it left open (`src/stuck/abandoned.rs`), under 10 000 spans that
//! are still open: nested (each entered inside the previous one, the phase inside them all)
//! or side by side (requests in flight at the stop). A close under budget does not look.
//!
//! Each sample is the first over-budget close in a fresh subscriber (the search reports a span
//! once, so a second close finds less). Run: `cargo bench -p shutdown-forensics-benches --bench
//! phase_close`

use std::time::{Duration, Instant};

use shutdown_forensics::report::ManualClock;
use shutdown_forensics::{phase, ShutdownLayer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

const SPANS: usize = 10_000;
const SAMPLES: usize = 40;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One over-budget close under `SPANS` open spans; `nested` enters each inside the last.
fn sample(nested: bool, over_budget: bool) -> Duration {
    let clock = ManualClock::new();
    let layer = ShutdownLayer::builder()
        .with_clock(clock.clone())
        .with_phase_budget("drain", Duration::from_secs(1))
        .with_stuck_snapshot_on_budget(false)
        .build();
    let handle = layer.handle();
    let d = Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&d, || {
        let mut spans = Vec::with_capacity(SPANS);
        for i in 0..SPANS {
            let s = tracing::info_span!("request", id = i);
            if nested {
                tracing::dispatcher::get_default(|d| d.enter(&s.id().unwrap()));
            }
            spans.push(s);
        }
        handle.begin();
        let drain = phase!("drain");
        let ran = if over_budget { 1_500 } else { 500 };
        drain.in_scope(|| clock.advance(Duration::from_millis(ran)));
        let t = Instant::now();
        drop(drain);
        let took = t.elapsed();
        handle.finish();
        // Innermost first (the registry closes a parent from its last child by recursion).
        while let Some(s) = spans.pop() {
            if nested {
                tracing::dispatcher::get_default(|d| d.exit(&s.id().unwrap()));
            }
            drop(s);
        }
        took
    })
}

fn main() {
    println!("phase close with {SPANS} open spans, {SAMPLES} samples each:");
    for (label, nested, over) in [
        ("nested, over budget (searches)", true, true),
        ("side by side, over budget (searches)", false, true),
        ("nested, under budget (no search)", true, false),
    ] {
        let mut times: Vec<Duration> = (0..SAMPLES).map(|_| sample(nested, over)).collect();
        times.sort();
        println!(
            "  {label}: p50 {:?}  p90 {:?}  max {:?}",
            pct(&times, 0.5),
            pct(&times, 0.9),
            times.last().unwrap()
        );
    }
}

//! ShutdownLayer costs.
//!
//! 1. Non-phase spans (enter/exit/close + one event) through registry + fmt (to a sink), with
//!    and without the layer: the layer must add at most 3 %. Measured by criterion, and by an
//!    interleaved A/B loop (blocks alternate, so machine noise hits both sides alike).
//! 2. One phase start + done: both events through fmt, both flight-record writes (one
//!    `write(2)` each): p50 should be at most 30 µs.
//!
//! Run: `cargo bench --bench layer`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn fmt_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::sink)
}

fn baseline() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(fmt_layer()))
}

fn with_layer() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::registry()
            .with(fmt_layer())
            .with(ShutdownLayer::new()),
    )
}

/// The layer with span tracking off (no stuck-snapshot spans): what the layer costs without it.
fn with_untracked_layer() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::registry()
            .with(fmt_layer())
            .with(ShutdownLayer::builder().without_span_tracking().build()),
    )
}

/// The layer tracking only spans named `upload`: the benchmark's `request` spans are then
/// checked by the filter and not tracked.
fn with_filtered_tracking() -> Dispatch {
    Dispatch::new(
        tracing_subscriber::registry().with(fmt_layer()).with(
            ShutdownLayer::builder()
                .with_stuck_spans(|m| m.name() == "upload")
                .build(),
        ),
    )
}

/// The same layer behind a per-layer filter by target (`Filtered`): the alternative the crate
/// measured and did not take as its default (see BENCHMARKS.md).
fn with_filtered_layer() -> Dispatch {
    use tracing_subscriber::Layer as _;
    let by_target =
        tracing_subscriber::filter::filter_fn(|m| m.target() == shutdown_forensics::PHASE_TARGET);
    Dispatch::new(
        tracing_subscriber::registry()
            .with(fmt_layer())
            .with(ShutdownLayer::new().with_filter(by_target)),
    )
}

/// The work measured for non-phase spans.
fn request(i: u64) {
    let span = tracing::info_span!(target: "app", "request", id = i);
    let _g = span.enter();
    tracing::info!(target: "app", status = 200, "handled");
}

fn non_phase(c: &mut Criterion) {
    let mut g = c.benchmark_group("non_phase_span");
    for (name, dispatch) in [("baseline", baseline()), ("with_layer", with_layer())] {
        g.bench_function(name, |b| {
            tracing::dispatcher::with_default(&dispatch, || {
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    request(black_box(i));
                });
            });
        });
    }
    g.finish();
}

/// Median of per-round ratios (with / without), blocks interleaved.
fn interleaved_overhead(with: &Dispatch, rounds: usize) -> f64 {
    let base = baseline();
    let block = |d: &Dispatch| {
        tracing::dispatcher::with_default(d, || {
            let t = Instant::now();
            for i in 0..2000 {
                request(black_box(i));
            }
            t.elapsed()
        })
    };
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|_| {
            let a = block(&base);
            let b = block(with);
            let a2 = block(&base);
            b.as_secs_f64() / ((a + a2).as_secs_f64() / 2.0)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Per-phase latency samples: start+done of one phase, new layer every 1000 phases (a
/// layer tracks at most 4096).
fn phase_latency(samples: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    let mut out = Vec::with_capacity(samples);
    while out.len() < samples {
        let record = FlightRecord::open(&path).expect("flight record");
        let layer = ShutdownLayer::builder().with_flight_record(record).build();
        let handle = layer.handle();
        let d = Dispatch::new(tracing_subscriber::registry().with(fmt_layer()).with(layer));
        tracing::dispatcher::with_default(&d, || {
            handle.begin();
            for _ in 0..1000 {
                let t = Instant::now();
                phase!("drain", active_at_start = 3).in_scope(|| black_box(()));
                out.push(t.elapsed());
            }
        });
    }
    out.sort();
    out
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    non_phase(&mut c);
    c.final_summary();

    let idle = interleaved_overhead(&with_layer(), 31);
    // While a phase is open, other spans take the slower path (a span lookup per callback).
    let open_dispatch = with_layer();
    let busy = tracing::dispatcher::with_default(&open_dispatch, || {
        let open = phase!("drain");
        let r = interleaved_overhead(&open_dispatch, 31);
        drop(open);
        r
    });
    let filtered = interleaved_overhead(&with_filtered_layer(), 31);
    let untracked = interleaved_overhead(&with_untracked_layer(), 31);
    let tracking_filtered = interleaved_overhead(&with_filtered_tracking(), 31);
    println!("non-phase spans, interleaved A/B (median of 31 rounds x 2000 requests):");
    println!(
        "  layer behind a per-layer target filter (Filtered), no phase open: {:.3}x baseline ({:+.1} %)",
        filtered,
        (filtered - 1.0) * 100.0
    );
    println!(
        "  with layer, span tracking off, no phase open: {:.3}x baseline ({:+.1} %)",
        untracked,
        (untracked - 1.0) * 100.0
    );
    println!(
        "  with layer, tracking only spans named upload (these spans filtered out): {:.3}x baseline ({:+.1} %)",
        tracking_filtered,
        (tracking_filtered - 1.0) * 100.0
    );
    println!(
        "  with layer (span tracking on, the default), no phase open : {:.3}x baseline ({:+.1} %)",
        idle,
        (idle - 1.0) * 100.0
    );
    println!(
        "  with layer, a phase open  : {:.3}x baseline ({:+.1} %)",
        busy,
        (busy - 1.0) * 100.0
    );

    let lat = phase_latency(5000);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "phase start+done (2 events via fmt, 2 flight-record writes), {} samples: p50 {:?}  p90 {:?}  p99 {:?}",
        lat.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
}

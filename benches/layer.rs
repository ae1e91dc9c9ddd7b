//! ShutdownLayer costs.
//!
//! 1. Non-phase spans (enter/exit/close + one event) through registry + fmt (to a sink), with
//!    and without the layer: the layer must add at most 3 %. Measured by criterion, and by an
//!    interleaved A/B loop (blocks alternate, so machine noise hits both sides alike).
//! 2. One phase start + done: both events through fmt, both flight-record writes (one
//!    `write(2)` each): p50 should be at most 30 µs.
//!
//! 3. Per span (open, enter, exit, close, no event, no fmt) through a bare registry: the
//!    nanoseconds the layer adds, tracking on and off; and the same with every span created on
//!    one thread and entered, exited and closed on another (the cross-thread path of the span
//!    tracker, as with tasks that move between a runtime's workers).
//!
//! 4. Per span with 0, 3 and 8 fields, layer on against a bare registry: what capturing a
//!    span's fields (`stuck/fields.rs`) costs on top of tracking it.
//!
//! 5. The nested request of issue 21: `info_span!("request", id)` entered, a nested
//!    `debug_span!("db")` entered, one `info!` event; through a bare registry and through a
//!    registry + JSON fmt (to a sink, no timestamps), each without and with the layer.
//!    `LAYER_BENCH_NESTED_ONLY=1` prints the interleaved ratios (151 rounds);
//!    `LAYER_BENCH_NESTED_LOOP=bare|bare_off|bare_on|json|json_on` runs 200 000 requests
//!    (for cachegrind).
//!
//! Run: `cargo bench -p shutdown-forensics-benches --bench layer`. For profilers, one
//! configuration alone: `LAYER_BENCH_LOOP=base|off|filtered|on|on_phase|file_base|file_on` runs 10 x `LAYER_BENCH_LOOP_N` requests
//! (e.g. under `valgrind --tool=cachegrind` to count instructions per request, which code
//! layout does not move); `LAYER_BENCH_REQUEST_ONLY=1` runs only the interleaved ratios (151
//! rounds); `LAYER_BENCH_PER_SPAN_ONLY=1` only the per-span figures;
//! `LAYER_BENCH_FIELDS_ONLY=1` only the 0/3/8-field figures, and
//! `LAYER_BENCH_FIELDS_LOOP=<0|3|8>:<base|on|fmt>` 200 000 such spans for cachegrind.

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

/// The fmt layer as most apps run it: its default timestamps, to a file (one `write(2)` per
/// event, like a rolling file appender without its worker thread).
fn file_dispatch(file: &std::fs::File, layer: Option<ShutdownLayer>) -> Dispatch {
    let file = file.try_clone().expect("dup");
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    match layer {
        Some(l) => Dispatch::new(tracing_subscriber::registry().with(fmt).with(l)),
        None => Dispatch::new(tracing_subscriber::registry().with(fmt)),
    }
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
    interleaved_against(&baseline(), with, rounds)
}

/// Median of per-round ratios (with / base), blocks interleaved.
fn interleaved_against(base: &Dispatch, with: &Dispatch, rounds: usize) -> f64 {
    interleaved(base, with, rounds, request)
}

/// Median over interleaved rounds (base, with, base) of with / mean(base), each block 2000
/// calls of `work`.
fn interleaved(base: &Dispatch, with: &Dispatch, rounds: usize, work: fn(u64)) -> f64 {
    let block = |d: &Dispatch| {
        tracing::dispatcher::with_default(d, || {
            let t = Instant::now();
            for i in 0..2000 {
                work(black_box(i));
            }
            t.elapsed()
        })
    };
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|_| {
            let a = block(base);
            let b = block(with);
            let a2 = block(base);
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

/// Nanoseconds per span (open, enter, exit, close; no event, no fmt layer) through a bare
/// registry with the layer, minus the same through the registry alone: the layer's own cost
/// per span, tracking on and off, from blocks interleaved in one run (median of rounds).
fn per_span_ns(rounds: usize) -> (f64, f64, f64) {
    let bare = Dispatch::new(tracing_subscriber::registry());
    let on = Dispatch::new(tracing_subscriber::registry().with(ShutdownLayer::new()));
    let off = Dispatch::new(
        tracing_subscriber::registry()
            .with(ShutdownLayer::builder().without_span_tracking().build()),
    );
    const N: u32 = 20_000;
    let block = |d: &Dispatch| {
        tracing::dispatcher::with_default(d, || {
            let t = Instant::now();
            for i in 0..N {
                let span = tracing::info_span!(target: "app", "request", id = i);
                let _g = black_box(span.enter());
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(N)
        })
    };
    let (base, with_on, with_off) = medians(
        (0..rounds)
            .map(|_| (block(&bare), block(&on), block(&off)))
            .collect(),
    );
    (base, with_on, with_off)
}

/// From rounds of (bare, on, off) nanoseconds: the median bare figure, and the medians of
/// what tracking on and off add to it within each round.
fn medians(mut rows: Vec<(f64, f64, f64)>) -> (f64, f64, f64) {
    let mut median = |f: fn(&(f64, f64, f64)) -> f64| {
        rows.sort_by(|a, b| f(a).total_cmp(&f(b)));
        f(&rows[rows.len() / 2])
    };
    (
        median(|r| r.0),
        median(|r| r.1 - r.0),
        median(|r| r.2 - r.0),
    )
}

/// Like [`per_span_ns`], but each span is created on one thread and entered, exited and
/// closed on another (sent over a channel in batches), while `idle_threads` other threads
/// each hold a table of the tracker (one open span each), as a large runtime's would.
fn cross_thread_ns(rounds: usize, idle_threads: usize) -> (f64, f64, f64) {
    use std::sync::mpsc;
    let bare = Dispatch::new(tracing_subscriber::registry());
    let on = Dispatch::new(tracing_subscriber::registry().with(ShutdownLayer::new()));
    let off = Dispatch::new(
        tracing_subscriber::registry()
            .with(ShutdownLayer::builder().without_span_tracking().build()),
    );
    let (release, parked) = {
        let (tx, rx) = mpsc::channel::<()>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let parked: Vec<_> = (0..idle_threads)
            .map(|i| {
                let (d, rx) = (on.clone(), std::sync::Arc::clone(&rx));
                let (ready_tx, ready_rx) = mpsc::channel::<()>();
                let h = std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&d, || {
                        let _span = tracing::info_span!(target: "app", "idle", i);
                        ready_tx.send(()).expect("bench alive");
                        let _ = rx.lock().map(|r| r.recv());
                    })
                });
                ready_rx.recv().expect("idle thread");
                h
            })
            .collect();
        (tx, parked)
    };
    const N: u32 = 20_000;
    const BATCH: u32 = 100;
    let block = |d: &Dispatch| {
        let (tx, rx) = mpsc::sync_channel::<Vec<tracing::Span>>(4);
        let d2 = d.clone();
        let t = Instant::now();
        let worker = std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                for batch in rx {
                    for span in batch {
                        let _g = black_box(span.enter());
                    }
                }
            })
        });
        tracing::dispatcher::with_default(d, || {
            for b in 0..N / BATCH {
                let batch = (0..BATCH)
                    .map(|i| tracing::info_span!(target: "app", "request", id = b * BATCH + i))
                    .collect();
                tx.send(batch).expect("worker alive");
            }
        });
        drop(tx);
        worker.join().expect("worker");
        t.elapsed().as_secs_f64() * 1e9 / f64::from(N)
    };
    let (base, with_on, with_off) = medians(
        (0..rounds)
            .map(|_| (block(&bare), block(&on), block(&off)))
            .collect(),
    );
    for _ in &parked {
        let _ = release.send(());
    }
    for h in parked {
        let _ = h.join();
    }
    (base, with_on, with_off)
}

/// The nested request of issue 21: a request span (one field) entered, a `db` span inside it
/// entered, one event.
#[inline(never)]
fn nested_request(i: u64) {
    let request = tracing::info_span!(target: "app", "request", id = i);
    let _r = request.enter();
    let db = tracing::debug_span!(target: "app", "db");
    let _d = db.enter();
    tracing::info!(target: "app", rows = 3, "query done");
}

/// [`nested_request`] with a request span without fields.
#[inline(never)]
fn nested_request_no_field() {
    let request = tracing::info_span!(target: "app", "request");
    let _r = request.enter();
    let db = tracing::debug_span!(target: "app", "db");
    let _d = db.enter();
    tracing::info!(target: "app", rows = 3, "query done");
}

/// The dispatches of the nested-request bench: `bare` (registry), `json` (registry + JSON
/// fmt to a sink, no timestamps), each `_on` (the default layer) or `_off` (tracking off).
fn nested_dispatch(which: &str) -> Dispatch {
    let json = || {
        tracing_subscriber::fmt::layer()
            .json()
            .without_time()
            .with_writer(std::io::sink)
    };
    let off = || ShutdownLayer::builder().without_span_tracking().build();
    match which {
        "bare_on" => Dispatch::new(tracing_subscriber::registry().with(ShutdownLayer::new())),
        "bare_off" => Dispatch::new(tracing_subscriber::registry().with(off())),
        "json" => Dispatch::new(tracing_subscriber::registry().with(json())),
        "json_on" => Dispatch::new(
            tracing_subscriber::registry()
                .with(json())
                .with(ShutdownLayer::new()),
        ),
        "json_off" => Dispatch::new(tracing_subscriber::registry().with(json()).with(off())),
        _ => Dispatch::new(tracing_subscriber::registry()),
    }
}

/// Median over interleaved rounds (base, with, base) of with / mean(base) for the nested
/// request, blocks of 2000 requests.
fn nested_ratio(base: &Dispatch, with: &Dispatch, rounds: usize) -> f64 {
    interleaved(base, with, rounds, nested_request)
}

fn nested_report() {
    let bare = nested_dispatch("bare");
    let json = nested_dispatch("json");
    for (label, base, with) in [
        (
            "bare registry, layer tracking on ",
            &bare,
            nested_dispatch("bare_on"),
        ),
        (
            "bare registry, layer tracking off",
            &bare,
            nested_dispatch("bare_off"),
        ),
        (
            "registry + JSON, layer tracking on ",
            &json,
            nested_dispatch("json_on"),
        ),
        (
            "registry + JSON, layer tracking off",
            &json,
            nested_dispatch("json_off"),
        ),
    ] {
        let r = nested_ratio(base, &with, 151);
        println!("nested request, {label}: {r:.3}x (median of 151 interleaved rounds x 2000)");
    }
}

fn main() {
    if let Some(which) = std::env::var_os("LAYER_BENCH_NESTED_LOOP") {
        let d = nested_dispatch(&which.to_string_lossy());
        // `LAYER_BENCH_NESTED_NO_FIELD=1`: the request span without its field (what capturing
        // it costs is the difference).
        let no_field = std::env::var_os("LAYER_BENCH_NESTED_NO_FIELD").is_some();
        tracing::dispatcher::with_default(&d, || {
            for i in 0..200_000 {
                if no_field {
                    nested_request_no_field();
                } else {
                    nested_request(black_box(i));
                }
            }
        });
        return;
    }
    if std::env::var_os("LAYER_BENCH_NESTED_ONLY").is_some() {
        nested_report();
        return;
    }
    if let Some(which) = std::env::var_os("LAYER_BENCH_LOOP") {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(dir.path().join("app.log")).expect("log file");
        let d = match which.to_str() {
            Some("file_base") => file_dispatch(&file, None),
            Some("file_on") => file_dispatch(&file, Some(ShutdownLayer::new())),
            Some("on" | "on_phase") => with_layer(),
            Some("off") => with_untracked_layer(),
            Some("filtered") => with_filtered_tracking(),
            _ => baseline(),
        };
        tracing::dispatcher::with_default(&d, || {
            // `on_phase`: the default layer while a phase span is open (during a shutdown).
            let _open = (which.to_str() == Some("on_phase")).then(|| phase!("drain"));
            let n: u32 = std::env::var("LAYER_BENCH_LOOP_N")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(200_000);
            for round in 0..10 {
                let t = Instant::now();
                for i in 0..n {
                    request(black_box(u64::from(i)));
                }
                println!(
                    "round {round}: {:.1} ns per request",
                    t.elapsed().as_nanos() as f64 / f64::from(n)
                );
            }
        });
        return;
    }
    if std::env::var_os("LAYER_BENCH_REQUEST_ONLY").is_some() {
        let on = interleaved_overhead(&with_layer(), 151);
        let off = interleaved_overhead(&with_untracked_layer(), 151);
        let filt = interleaved_overhead(&with_filtered_tracking(), 151);
        println!(
            "tracking on {:+.1} %, off {:+.1} %, filtered {:+.1} %",
            (on - 1.0) * 100.0,
            (off - 1.0) * 100.0,
            (filt - 1.0) * 100.0
        );
        return;
    }
    // For cachegrind: `LAYER_BENCH_FIELDS_LOOP=<0|3|8>:<base|on|fmt>` runs 200 000 spans with
    // that many fields through a bare registry, with the layer (`on`), without (`base`), or
    // with an fmt layer instead (`fmt`, for scale).
    if let Some(which) = std::env::var_os("LAYER_BENCH_FIELDS_LOOP") {
        let which = which.to_string_lossy().into_owned();
        let (n, mode) = which.split_once(':').unwrap_or(("3", "on"));
        let n: usize = n.parse().unwrap_or(3);
        let d = match mode {
            "base" => Dispatch::new(tracing_subscriber::registry()),
            // For scale: what an fmt layer pays to format the same span's fields.
            "fmt" => Dispatch::new(tracing_subscriber::registry().with(fmt_layer())),
            _ => Dispatch::new(tracing_subscriber::registry().with(ShutdownLayer::new())),
        };
        let addr: std::net::SocketAddr = "10.0.0.7:55512".parse().expect("an address");
        tracing::dispatcher::with_default(&d, || {
            for i in 0..200_000 {
                span_with_fields(n, i, &addr);
            }
        });
        return;
    }
    if std::env::var_os("LAYER_BENCH_FIELDS_ONLY").is_some() {
        for (n, base, on) in fields_per_span_ns(101) {
            println!("{n} fields: bare registry {base:.1} ns per span, the layer adds {on:.1} ns");
        }
        return;
    }
    if std::env::var_os("LAYER_BENCH_PER_SPAN_ONLY").is_some() {
        per_span_report();
        return;
    }
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

    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(dir.path().join("app.log")).expect("log file");
    let file_ratio = interleaved_against(
        &file_dispatch(&file, None),
        &file_dispatch(&file, Some(ShutdownLayer::new())),
        31,
    );
    println!(
        "  fmt with timestamps to a file, with layer (tracking on) : {:.3}x that baseline ({:+.1} %)",
        file_ratio,
        (file_ratio - 1.0) * 100.0
    );

    per_span_report();

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

/// One span (open, enter, exit, close) with `n` fields (0, 3 or 8; as a request span has
/// them: strings, a `%` address, numbers).
#[inline(never)]
fn span_with_fields(n: usize, i: u64, addr: &std::net::SocketAddr) {
    let span = match n {
        0 => tracing::info_span!(target: "app", "request"),
        3 => {
            tracing::info_span!(target: "app", "request", method = "POST", path = "/upload", peer = %addr)
        }
        _ => tracing::info_span!(
            target: "app",
            "request",
            method = "POST",
            path = "/upload",
            peer = %addr,
            id = i,
            user = "alice",
            ua = "curl/8.5.0",
            bytes = 1_048_576_u64,
            tls = true
        ),
    };
    let _g = black_box(span.enter());
}

/// Nanoseconds the layer (tracking on) adds per span with 0, 3 and 8 fields, through a bare
/// registry (no fmt): median of interleaved rounds, as [`per_span_ns`]. What the fields add is
/// the difference to the 0-field row (capturing them: `stuck/fields.rs`).
fn fields_per_span_ns(rounds: usize) -> Vec<(usize, f64, f64)> {
    let bare = Dispatch::new(tracing_subscriber::registry());
    let on = Dispatch::new(tracing_subscriber::registry().with(ShutdownLayer::new()));
    let addr: std::net::SocketAddr = "10.0.0.7:55512".parse().expect("an address");
    const N: u32 = 20_000;
    [0, 3, 8]
        .into_iter()
        .map(|n| {
            let block = |d: &Dispatch| {
                tracing::dispatcher::with_default(d, || {
                    let t = Instant::now();
                    for i in 0..N {
                        span_with_fields(n, u64::from(i), &addr);
                    }
                    t.elapsed().as_secs_f64() * 1e9 / f64::from(N)
                })
            };
            let (base, with_on, _) = medians(
                (0..rounds)
                    .map(|_| (block(&bare), block(&on), 0.0))
                    .collect(),
            );
            (n, base, with_on)
        })
        .collect()
}

fn per_span_report() {
    for (n, base, on) in fields_per_span_ns(101) {
        println!(
            "per span with {n} fields (open, enter, exit, close) through a bare registry: {base:.1} ns; the layer adds {on:.1} ns (tracking on; median of 101 interleaved rounds x 20000 spans)"
        );
    }
    let (base, on, off) = per_span_ns(201);
    println!(
        "per span (open, enter, exit, close) through a bare registry: {base:.1} ns; the layer adds {on:.1} ns with span tracking on, {off:.1} ns with it off (median of 201 interleaved rounds x 20000 spans)"
    );
    for idle in [0, 64] {
        let (base, on, off) = cross_thread_ns(41, idle);
        println!(
            "per span created on one thread, entered/exited/closed on another, {} tracker tables: {base:.1} ns; the layer adds {on:.1} ns with span tracking on, {off:.1} ns with it off (median of 41 rounds x 20000 spans)",
            idle + 2
        );
    }
}

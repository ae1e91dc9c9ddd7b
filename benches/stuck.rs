//! Stuck snapshot costs, at the size the issue names: 100 threads, 1 000 sockets and 10 000
//! open spans in this process.
//!
//! 1. One snapshot: p50 and worst of its wall time, with the CPU sample gap set to zero (the
//!    work) and at the default 150 ms gap (what a caller waits), and the size of what it holds.
//! 2. Memory the span tracking holds: RSS after opening 10 000 spans with tracking on, minus
//!    the same with tracking off.
//! 3. No stall: the worst latency of an app thread's span open/enter/exit/close while
//!    snapshots run back to back, against the same loop with no snapshot running.
//!
//! Run: `cargo bench --bench stuck`

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shutdown_forensics::{phase, ShutdownLayer, ShutdownLayerBuilder};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn dispatch(builder: ShutdownLayerBuilder) -> (Dispatch, shutdown_forensics::ShutdownHandle) {
    let layer = builder.build();
    let handle = layer.handle();
    let fmt = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::sink);
    (
        Dispatch::new(tracing_subscriber::registry().with(fmt).with(layer)),
        handle,
    )
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit on a zeroed rlimit this function owns.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(want as libc::rlim_t);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// In a child process: RSS growth from opening 10 000 spans, with tracking on or off.
fn memory_child(tracking: &str) {
    let builder = if tracking == "on" {
        ShutdownLayer::builder()
    } else {
        ShutdownLayer::builder().without_span_tracking()
    };
    let (d, _h) = dispatch(builder);
    // Warm the registry and the allocator with the same work first, then measure a second
    // batch: what stays is what each open span holds.
    let warm: Vec<tracing::Span> = tracing::dispatcher::with_default(&d, || {
        (0..10_000)
            .map(|i| tracing::info_span!("request", id = i, path = "/upload"))
            .collect()
    });
    let before = rss_kib();
    let spans: Vec<tracing::Span> = tracing::dispatcher::with_default(&d, || {
        (0..10_000)
            .map(|i| tracing::info_span!("request", id = i, path = "/upload"))
            .collect()
    });
    println!("RSS_DELTA_KIB {}", rss_kib().saturating_sub(before));
    drop((warm, spans));
}

fn main() {
    if let Ok(tracking) = std::env::var("STUCK_BENCH_MEMORY") {
        memory_child(&tracking);
        return;
    }
    raise_fd_limit(8192);
    // 100 threads (99 parked here plus this one).
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let stop_rx = Arc::new(std::sync::Mutex::new(stop_rx));
    let parked: Vec<_> = (0..99)
        .map(|i| {
            let rx = Arc::clone(&stop_rx);
            std::thread::Builder::new()
                .name(format!("parked-{i}"))
                .spawn(move || {
                    let _ = rx.lock().map(|r| r.recv());
                })
                .unwrap()
        })
        .collect();
    // 1 000 sockets: 500 connections, both ends in this process.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sockets = Vec::new();
    for _ in 0..500 {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        sockets.push((c, s));
    }
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);

    // Memory: 10 000 open spans, tracking off and on, each in a fresh process of this binary
    // (in one process the allocator would reuse the first run's memory for the second).
    let mut rss = Vec::new();
    for tracking in ["off", "on"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("STUCK_BENCH_MEMORY", tracking)
            .output()
            .expect("re-run this bench for the memory figure");
        let kib: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("RSS_DELTA_KIB "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        rss.push(kib);
    }

    // Snapshots over 10 000 open spans.
    let mut results = Vec::new();
    for (label, gap, runs) in [
        ("cpu gap 0 (the work)", Duration::ZERO, 20),
        ("cpu gap 150 ms (default)", Duration::from_millis(150), 5),
    ] {
        let (d, handle) = dispatch(ShutdownLayer::builder().with_stuck_cpu_sample_gap(gap));
        let spans: Vec<tracing::Span> = tracing::dispatcher::with_default(&d, || {
            (0..10_000)
                .map(|i| tracing::info_span!("request", id = i, path = "/upload"))
                .collect()
        });
        let mut times = Vec::new();
        let mut json = 0;
        tracing::dispatcher::with_default(&d, || {
            handle.begin();
            let _drain = phase!("drain").entered();
            for _ in 0..runs {
                let t = Instant::now();
                let snap = handle.stuck_snapshot();
                times.push(t.elapsed());
                json = serde_json::to_string(&snap).map_or(0, |s| s.len());
                black_box(snap);
            }
        });
        times.sort();
        results.push((label, pct(&times, 0.5), *times.last().unwrap(), json));
        drop(spans);
    }

    // App threads during snapshots: worst span lifecycle latency, with and without.
    let (d, handle) = dispatch(ShutdownLayer::builder());
    let spans: Vec<tracing::Span> = tracing::dispatcher::with_default(&d, || {
        (0..10_000)
            .map(|i| tracing::info_span!("request", id = i))
            .collect()
    });
    let app_loop = |d: &Dispatch, for_: Duration| -> Vec<Duration> {
        tracing::dispatcher::with_default(d, || {
            let mut lat = Vec::new();
            let end = Instant::now() + for_;
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let t = Instant::now();
                let s = tracing::info_span!("op", i);
                drop(s.enter());
                drop(s);
                lat.push(t.elapsed());
            }
            lat.sort();
            lat
        })
    };
    let quiet = app_loop(&d, Duration::from_secs(2));
    let busy = Arc::new(AtomicBool::new(true));
    let snapshots = {
        let (busy, d, handle) = (Arc::clone(&busy), d.clone(), handle.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            tracing::dispatcher::with_default(&d, || {
                handle.begin();
                while busy.load(Ordering::Relaxed) {
                    black_box(handle.stuck_snapshot());
                    n += 1;
                }
            });
            n
        })
    };
    let during = app_loop(&d, Duration::from_secs(2));
    busy.store(false, Ordering::Relaxed);
    let n = snapshots.join().unwrap();
    drop(spans);

    println!("stuck snapshot: {threads} threads, {fds} descriptors (1 000 TCP sockets), 10 000 open spans");
    for (label, p50, worst, json) in &results {
        println!("  {label}: p50 {p50:?}  worst {worst:?}  snapshot JSON {json} bytes");
    }
    println!(
        "  10 000 more open spans (after 10 000 warm-up): RSS +{} KiB with tracking, +{} KiB without (tracking: {} bytes/span)",
        rss[1],
        rss[0],
        (rss[1].saturating_sub(rss[0]) * 1024) / 10_000
    );
    println!(
        "  app span open+enter+exit+close: quiet p50 {:?} p99.9 {:?} max {:?} | during {n} snapshots p50 {:?} p99.9 {:?} max {:?}",
        pct(&quiet, 0.5),
        pct(&quiet, 0.999),
        quiet.last().unwrap(),
        pct(&during, 0.5),
        pct(&during, 0.999),
        during.last().unwrap()
    );
    drop(stop_tx);
    for t in parked {
        let _ = t.join();
    }
}

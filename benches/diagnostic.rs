//! How long `spawn_diagnostic` keeps the shutdown path waiting (target: p50 ≤ 2 ms).
//!
//! Only the call is timed. After each call the bench waits, outside the timed region, until
//! the crate's reaper has reaped the child, so children never pile up and each spawn starts
//! on a quiet machine. Besides criterion's estimate it prints the p50/p90 of every call.
//!
//! Run: `cargo bench --bench diagnostic`

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use shutdown_forensics::diagnostic::spawn_diagnostic;

/// True until the reaper has reaped `pid` (a zombie still counts as present).
fn present(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence; no memory is involved.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_until_reaped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while present(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

fn spawn_return_time(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let mut calls: Vec<Duration> = Vec::new();

    let mut group = c.benchmark_group("diagnostic");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("spawn_diagnostic_return", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let pid = spawn_diagnostic(Path::new(&log), "SIGTERM", Duration::from_secs(5))
                    .expect("spawn_diagnostic");
                let took = started.elapsed();
                timed += took;
                calls.push(took);
                wait_until_reaped(pid);
            }
            timed
        });
    });
    group.finish();

    calls.sort_unstable();
    let at = |q: f64| calls[((calls.len() - 1) as f64 * q) as usize];
    if !calls.is_empty() {
        println!(
            "spawn_diagnostic return time over {} calls: p50 {:?}, p90 {:?}, max {:?}",
            calls.len(),
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
}

criterion_group!(benches, spawn_return_time);
criterion_main!(benches);

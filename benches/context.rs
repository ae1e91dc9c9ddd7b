//! `ShutdownContext::capture` against the floor: reading the same `/proc` files (and doing the
//! same `stat` calls) into a reused buffer with no parsing. Also the same facts through the
//! `procfs` crate, the reason the crate parses `/proc` itself. And the prepared
//! [`ContextCapturer`] the signal helper uses, against the floor of the files it reads at signal
//! time (opened by path each time, and read again through files kept open, as the capturer
//! does).
//!
//! After criterion, the same three signal-time files are read cold, as the listener reads them
//! when a signal wakes it: each round sleeps 10 ms first, and rounds alternate between
//! `open` + `read` + `close` by path and `pread(2)` through files kept open; p50/p90 printed.
//!
//! Run: `cargo bench --bench context` (medians in `target/criterion/capture/*/new/estimates.json`).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shutdown_forensics::context::{ContextCapturer, ContextOptions, ShutdownContext};

/// `open` + one `read` + `close`, as the crate reads these files (each fits in one read; no
/// `read_to_end`, whose size probe and end-of-file read add three syscalls).
fn read_into(path: &str, buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(4096, 0);
    let n = File::open(path).and_then(|mut f| f.read(buf)).unwrap_or(0);
    buf.truncate(n);
}

/// The same files and metadata calls `capture` makes with default options, nothing parsed.
fn floor(buf: &mut Vec<u8>, parent_stat: &str, parent_dir: &str) {
    read_into("/proc/self/stat", buf);
    read_into("/proc/self/status", buf);
    read_into(parent_stat, buf);
    let _ = std::fs::metadata(parent_dir);
    read_into("/proc/loadavg", buf);
    read_into("/proc/self/cgroup", buf);
    let _ = std::env::var("INVOCATION_ID");
    let _ = Path::new("/.dockerenv").exists();
    black_box(&buf);
}

/// The files a prepared [`ContextCapturer`] reads at signal time (the parent's uid is known
/// from install while it is the same process), nothing parsed.
fn floor_signal_time(buf: &mut Vec<u8>, parent_stat: &str) {
    read_into("/proc/self/status", buf);
    read_into(parent_stat, buf);
    read_into("/proc/loadavg", buf);
    black_box(&buf);
}

/// [`floor_signal_time`] through files opened once, read from offset 0 (what the capturer does).
fn floor_signal_time_open(files: &[File], buf: &mut [u8]) {
    for f in files {
        let _ = black_box(f.read_at(buf, 0));
    }
}

/// Cold reads of the signal-time files: rounds after 10 ms asleep, alternating by path and
/// through open files. Prints p50/p90 of each (µs).
fn cold_reads(paths: &[String], files: &[File]) {
    const ROUNDS: usize = 200;
    let mut buf = Vec::with_capacity(4096);
    let mut page = vec![0u8; 4096];
    let (mut by_path, mut open) = (Vec::new(), Vec::new());
    for round in 0..2 * ROUNDS {
        std::thread::sleep(Duration::from_millis(10));
        let started = Instant::now();
        if round % 2 == 0 {
            for p in paths {
                read_into(p, &mut buf);
            }
            by_path.push(started.elapsed());
        } else {
            floor_signal_time_open(files, &mut page);
            open.push(started.elapsed());
        }
    }
    let show = |name: &str, mut v: Vec<Duration>| {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        println!(
            "cold_reads/{name}: p50 {:.1} µs  p90 {:.1} µs ({} rounds after 10 ms asleep)",
            at(0.5),
            at(0.9),
            v.len()
        );
    };
    show("open_read_close", by_path);
    show("pread_open_files", open);
}

#[cfg(target_os = "linux")]
fn via_procfs() -> Option<(u32, f32)> {
    use procfs::process::Process;
    use procfs::Current;
    let me = Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let status = me.status().ok()?;
    let parent = Process::new(stat.ppid).ok()?;
    let pstat = parent.stat().ok()?;
    let _ = parent.uid();
    let load = procfs::LoadAverage::current().ok()?;
    let cg = me.cgroups().ok()?;
    black_box((&status.tracerpid, &pstat.comm, &cg));
    Some((status.tracerpid as u32, load.one))
}

fn bench(c: &mut Criterion) {
    let ppid = std::os::unix::process::parent_id();
    let parent_stat = format!("/proc/{ppid}/stat");
    let parent_dir = format!("/proc/{ppid}");
    let mut buf = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("capture");
    g.bench_function("floor_same_files", |b| {
        b.iter(|| floor(&mut buf, &parent_stat, &parent_dir))
    });
    g.bench_function("capture_default", |b| {
        b.iter(|| black_box(ShutdownContext::capture(Some(15))))
    });
    g.bench_function("floor_signal_time_files", |b| {
        b.iter(|| floor_signal_time(&mut buf, &parent_stat))
    });
    let paths = [
        "/proc/self/status".to_owned(),
        parent_stat.clone(),
        "/proc/loadavg".to_owned(),
    ];
    let files: Vec<File> = paths.iter().filter_map(|p| File::open(p).ok()).collect();
    let mut page = vec![0u8; 4096];
    g.bench_function("floor_signal_time_open_files", |b| {
        b.iter(|| floor_signal_time_open(&files, &mut page))
    });
    let capturer = ContextCapturer::new(ContextOptions::default());
    g.bench_function("capturer_prepared", |b| {
        b.iter(|| black_box(capturer.capture(Some(15), None)))
    });
    #[cfg(target_os = "linux")]
    g.bench_function("procfs_crate_same_facts", |b| {
        b.iter(|| black_box(via_procfs()))
    });
    g.finish();
    cold_reads(&paths, &files);
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `ShutdownContext::capture` against the floor: reading the same `/proc` files (and doing the
//! same `stat` calls) into a reused buffer with no parsing. Also the same facts through the
//! `procfs` crate, the reason the crate parses `/proc` itself. And the prepared
//! [`ContextCapturer`] the signal helper uses, against the floor of the files it reads at signal
//! time.
//!
//! Run: `cargo bench --bench context` (medians in `target/criterion/capture/*/new/estimates.json`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shutdown_forensics::{ContextCapturer, ContextOptions, ShutdownContext};

fn read_into(path: &str, buf: &mut Vec<u8>) {
    buf.clear();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(buf);
    }
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
    let capturer = ContextCapturer::new(ContextOptions::default());
    g.bench_function("capturer_prepared", |b| {
        b.iter(|| black_box(capturer.capture(Some(15), None)))
    });
    #[cfg(target_os = "linux")]
    g.bench_function("procfs_crate_same_facts", |b| {
        b.iter(|| black_box(via_procfs()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Signal latency, from `kill(2)` in a sender process to two instants of the receiver: the app
//! woken (its thread returns from `ShutdownSignal::wait` and stamps; goal p50 ≤ 150 µs) and the
//! `Shutdown context` line reaching its writer (goal p50 ≤ 300 µs). The listener wakes the app
//! before it writes the line, so the woken thread waits for the writer's stamp before it
//! reports both.
//!
//! The helper latches the first signal once per process, so every sample is a fresh receiver:
//! this binary re-executes itself with `SHUTDOWN_FORENSICS_BENCH_RECEIVER` set. The receiver
//! installs a fmt subscriber whose writer stamps `CLOCK_MONOTONIC` when it is handed the
//! `Shutdown context` line, installs `Forensics` with default options, prints `ready` and waits
//! for the signal; woken, it stamps, waits (bounded) for the line's stamp and prints both. The sender stamps `CLOCK_MONOTONIC` right before `kill(pid, SIGTERM)`;
//! `CLOCK_MONOTONIC` is system-wide, so the two stamps compare.
//!
//! Variants: `default` (`Forensics::builder().install()` only), `layer` (plus a `ShutdownLayer`
//! with a flight record and its handle given to the helper) and `floor` (signal-hook alone, no
//! capture, no tracing: the platform's delivery and wake-up). In those the sender is this bench
//! process, the receiver's parent, as systemd (pid 1) is of its services. `default_kill` and
//! `floor_kill` send from a fresh short-lived process that is not the parent, as `kill(1)`
//! does: this bench binary exec'd as `kill <pid>` stamps, calls `kill(2)`, prints its stamp
//! and exits.
//!
//! For scale, the same run times the bare `ShutdownContext::capture` in a hot loop, and a
//! `probe` receiver times the listener's steps on their first call, their second, and after
//! sleeping. Besides criterion's estimates (of the line) the bench prints p50/p90/p99 of every
//! sample: the app woken, the line written, and the split at the context's own `ts_monotonic`
//! (stamped when the capture starts, after the sender's `/proc` entry was read).
//!
//! Every receiver is reaped; one that does not answer within 5 s is killed. The sample count is
//! bounded by criterion's measurement time (about 30 s in all).
//!
//! Run: `cargo bench --bench signal_latency`

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::{black_box, Criterion, SamplingMode};
use shutdown_forensics::context::ShutdownContext;

/// Set (to a variant name) in the receiver's environment.
const RECEIVER_ENV: &str = "SHUTDOWN_FORENSICS_BENCH_RECEIVER";
/// Directory for the `layer` variant's flight records.
const DIR_ENV: &str = "SHUTDOWN_FORENSICS_BENCH_DIR";
/// How long a receiver may take to answer before it is killed and the bench fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// Pause between `install` and `ready`: a real service is long past start-up when it is
/// stopped, so the listener thread (and the install-time systemd check) must be settled.
const SETTLE: Duration = Duration::from_millis(10);

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    if let Ok(variant) = std::env::var(RECEIVER_ENV) {
        receiver::run(&variant);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    latency(&mut c);
    c.final_summary();
}

mod receiver;

/// One receiver process; killed (if still running) and reaped on drop, also when a sample
/// panics.
struct Receiver {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Receiver {
    fn spawn(variant: &str, dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(RECEIVER_ENV, variant)
            .env(DIR_ENV, dir)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn receiver");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(ANSWER_LIMIT)
            .unwrap_or_else(|e| panic!("receiver {} did not answer: {e}", self.child.id()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One measured signal, in nanoseconds.
#[derive(Clone, Copy)]
struct Sample {
    /// `kill(2)` in the sender to the app's thread woken by `ShutdownSignal::wait` (stamped by
    /// that thread as soon as `wait` returns): what the shutdown waits for.
    woken: u64,
    /// `kill(2)` in the sender to the context line in the receiver's writer.
    total: u64,
    /// `kill(2)` to the start of the capture (delivery, self-pipe wake-up, sender's /proc).
    wake: u64,
}

/// Who sends the signal.
#[derive(Clone, Copy, PartialEq)]
enum SentBy {
    /// This process, the receiver's parent (systemd's case).
    Parent,
    /// A fresh process exec'd for the one signal, not the receiver's parent (`kill(1)`'s case).
    Fresh,
}

/// Sends SIGTERM to `pid` from a fresh `kill` process (this bench run as `kill <pid>`, see
/// `receiver::kill`); returns that process's `CLOCK_MONOTONIC` stamp taken right before its
/// `kill(2)`.
fn kill_from_fresh_process(pid: libc::pid_t) -> u64 {
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .arg(pid.to_string())
        .env(RECEIVER_ENV, "kill")
        .stderr(Stdio::inherit())
        .output()
        .expect("run the kill process");
    assert!(out.status.success(), "kill process: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("sent ")
        .and_then(|s| s.parse().ok())
        .expect("kill process printed its stamp")
}

fn sample(variant: &str, from: SentBy, dir: &Path) -> Sample {
    let mut receiver = Receiver::spawn(variant, dir);
    assert_eq!(receiver.next_line(), "ready");
    let sent = match from {
        SentBy::Parent => {
            let sent = monotonic_ns();
            // SAFETY: kill(2) on our own child, whose pid cannot be reused before we reap it.
            let rc = unsafe { libc::kill(receiver.pid(), libc::SIGTERM) };
            assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
            sent
        }
        SentBy::Fresh => kill_from_fresh_process(receiver.pid()),
    };
    let line = receiver.next_line();
    let status = receiver.child.wait().expect("wait for receiver");
    assert!(status.success(), "receiver exited with {status}");
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("stamp"), "unexpected line {line:?}");
    let mut next = || -> u64 { parts.next().and_then(|p| p.parse().ok()).expect("stamp") };
    let (woken, written, captured) = (next(), next(), next());
    assert!(written != 0, "no context line was written: {line:?}");
    assert!(
        woken >= sent && written >= sent && captured >= sent,
        "stamped before kill(2) at {sent}: {line:?}"
    );
    Sample {
        woken: woken - sent,
        total: written - sent,
        wake: captured - sent,
    }
}

/// `p50 .. p99 max` of `values` (ns), in µs.
fn percentiles(mut values: Vec<u64>) -> String {
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    format!(
        "p50 {:6.1} µs  p90 {:6.1} µs  p99 {:6.1} µs  max {:6.1} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

fn print_samples(variant: &str, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let of = |f: fn(&Sample) -> u64| percentiles(samples.iter().map(f).collect());
    println!(
        "{variant}: {} samples, one fresh receiver each (warm-up included)",
        samples.len()
    );
    if variant.starts_with("floor") {
        println!(
            "  kill -> signal-hook wakes the thread: {}",
            of(|s| s.total)
        );
        return;
    }
    println!(
        "  kill -> app woken (signal().wait()) : {}",
        of(|s| s.woken)
    );
    println!(
        "  kill -> context line written        : {}",
        of(|s| s.total)
    );
    println!("  kill -> capture start               : {}", of(|s| s.wake));
    println!(
        "  capture start -> app woken          : {}",
        of(|s| s.woken.saturating_sub(s.wake))
    );
    println!(
        "  app woken -> line written           : {}",
        of(|s| s.total.saturating_sub(s.woken))
    );
}

/// Runs the `probe` receiver `runs` times and prints the medians of its cold/warm timings.
fn print_probe(runs: usize) {
    let mut rows: Vec<Vec<u64>> = Vec::new();
    for _ in 0..runs {
        let receiver = Receiver::spawn("probe", Path::new("."));
        let line = receiver.next_line();
        let row: Vec<u64> = line
            .strip_prefix("probe ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .split(' ')
            .map(|v| v.parse().expect("probe figure"))
            .collect();
        rows.push(row);
    }
    let median = |i: usize| {
        let mut v: Vec<u64> = rows.iter().map(|r| r[i]).collect();
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    };
    println!(
        "listener steps in a fresh process, medians of {runs} processes \
         (1st call / 2nd call / 3rd call after {} ms asleep):",
        SETTLE.as_millis()
    );
    for (i, step) in [
        "sender /proc entry by path",
        "ContextCapturer::capture",
        "ctx.log() (fmt)",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "  {step:<26}: {:6.1} µs / {:6.1} µs / {:6.1} µs",
            median(3 * i),
            median(3 * i + 1),
            median(3 * i + 2)
        );
    }
}

fn latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("signal_latency");
    // Criterion sizes the measurement from the warm-up's wall time (a process spawn, ~8 ms
    // per sample here), so these times bound the run: ~60 warm-up + ~350 measured samples each.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    let variants = [
        ("kill_to_context_line_default", "default", SentBy::Parent),
        ("kill_to_context_line_layer", "layer", SentBy::Parent),
        ("kill_to_wakeup_floor", "floor", SentBy::Parent),
        (
            "kill_to_context_line_default_kill",
            "default",
            SentBy::Fresh,
        ),
        ("kill_to_wakeup_floor_kill", "floor", SentBy::Fresh),
    ];
    let mut report = Vec::new();
    for (id, variant, from) in variants {
        let mut samples: Vec<Sample> = Vec::new();
        group.measurement_time(Duration::from_secs(3));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s = sample(variant, from, dir.path());
                    total += Duration::from_nanos(s.total);
                    samples.push(s);
                }
                total
            });
        });
        let name = match from {
            SentBy::Parent => variant.to_owned(),
            SentBy::Fresh => format!("{variant}_kill"),
        };
        report.push((name, samples));
    }
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("capture_default", |b| {
        b.iter(|| black_box(ShutdownContext::capture(Some(libc::SIGTERM))));
    });
    group.finish();
    for (variant, samples) in &report {
        print_samples(variant, samples);
    }
    print_probe(30);
}

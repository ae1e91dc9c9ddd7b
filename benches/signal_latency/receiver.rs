//! The processes the bench measures: one receiver per sample (the helper latches once per
//! process), the floor, and the probe; and the `kill` sender. Run as this bench binary with
//! `RECEIVER_ENV` set.

use super::*;
use shutdown_forensics::context::{ContextCapturer, ContextOptions, SignalSender};
use shutdown_forensics::{FlightRecord, Forensics, ShutdownLayer};
use signal_hook::iterator::exfiltrator::origin::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use std::sync::{Condvar, Mutex, PoisonError};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `CLOCK_MONOTONIC` (ns) when the writer was handed the `Shutdown context` line; 0 = not yet.
static WRITTEN_AT: AtomicU64 = AtomicU64::new(0);
/// Signalled once [`WRITTEN_AT`] is set: the app's thread, woken before the line is written,
/// sleeps on it rather than spinning on the two shared cores the listener needs.
static WRITTEN: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
/// How long the receiver waits for the context line after it was woken.
const LINE_LIMIT: Duration = Duration::from_secs(3);

/// Blocks until the writer was handed the context line (at most [`LINE_LIMIT`]); its stamp,
/// 0 if it never came.
fn wait_written() -> u64 {
    let guard = WRITTEN.0.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = WRITTEN
        .1
        .wait_timeout_while(guard, LINE_LIMIT, |()| {
            WRITTEN_AT.load(Ordering::Acquire) == 0
        })
        .unwrap_or_else(PoisonError::into_inner);
    WRITTEN_AT.load(Ordering::Acquire)
}

/// Stamps the context line, then writes every line to stderr (the bench sends it to
/// /dev/null), as a real writer would.
struct StampingWriter;

impl io::Write for StampingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if WRITTEN_AT.load(Ordering::Relaxed) == 0
            && buf.windows(16).any(|w| w == b"Shutdown context")
        {
            // Stamped first: waking the waiter is not part of the figure.
            let at = monotonic_ns();
            let _guard = WRITTEN.0.lock().unwrap_or_else(PoisonError::into_inner);
            WRITTEN_AT.store(at, Ordering::Release);
            WRITTEN.1.notify_all();
        }
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StampingWriter {
    type Writer = StampingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StampingWriter
    }
}

pub(super) fn run(variant: &str) {
    match variant {
        "floor" => return floor(),
        "probe" => return probe(),
        "kill" => return kill(),
        _ => {}
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(StampingWriter);
    let mut builder = Forensics::builder();
    let layer = match variant {
        "default" => None,
        "layer" => {
            let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("bench dir"));
            let path = dir.join(format!("flight-{}.jsonl", std::process::id()));
            let record = FlightRecord::open(path).expect("flight record");
            let layer = ShutdownLayer::builder().with_flight_record(record).build();
            builder = builder.with_handle(layer.handle());
            Some(layer)
        }
        other => panic!("unknown receiver variant {other:?}"),
    };
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let forensics = builder.install().expect("install");
    thread::sleep(SETTLE);
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
    let ctx = forensics.signal().wait();
    // The app is awake: what a shutdown waits for. The context line comes later (the
    // listener writes it last), so its stamp is awaited, not read now.
    let woken = monotonic_ns();
    let capture_ns = (ctx.ts_monotonic * 1e9).round() as u64;
    let written = wait_written();
    writeln!(out, "stamp {woken} {written} {capture_ns}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// The platform's floor: signal-hook's `SignalsInfo<WithOrigin>` on a thread of its own, as
/// the listener uses it, stamping on receipt; no capture, no tracing.
fn floor() {
    let mut signals = SignalsInfo::<WithOrigin>::new([libc::SIGTERM]).expect("signals");
    let listener = thread::spawn(move || {
        let _origin = signals.forever().next();
        monotonic_ns()
    });
    thread::sleep(SETTLE);
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
    let at = listener.join().expect("listener");
    writeln!(out, "stamp {at} {at} {at}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// The listener's steps through the public API (the sender's `/proc` entry read by path, a
/// prepared [`ContextCapturer`]'s capture, the `Shutdown context` event through fmt to
/// /dev/null) timed three times in a fresh process:
/// first call, second call at once, third call after [`SETTLE`] asleep (as the listener
/// is when the signal comes). Prints `probe` and the nine figures in ns; no signal involved.
fn probe() {
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(io::stderr),
        )
        .init();
    let timed = |f: &mut dyn FnMut()| {
        let mut runs = [0; 3];
        for (i, run) in runs.iter_mut().enumerate() {
            if i == 2 {
                thread::sleep(SETTLE);
            }
            let started = monotonic_ns();
            f();
            *run = monotonic_ns() - started;
        }
        runs
    };
    let ppid = i32::try_from(std::os::unix::process::parent_id()).expect("ppid");
    let sender = timed(&mut || {
        black_box(SignalSender::from_siginfo(ppid, 0, libc::SI_USER));
    });
    let mut ctx = None;
    let capturer = ContextCapturer::new(ContextOptions::default());
    let capture = timed(&mut || ctx = Some(capturer.capture(Some(libc::SIGTERM), None)));
    let ctx = ctx.expect("captured");
    let log = timed(&mut || ctx.log());
    let figures: Vec<String> = [sender, capture, log]
        .iter()
        .flatten()
        .map(u64::to_string)
        .collect();
    println!("probe {}", figures.join(" "));
}

/// A sender like `kill(1)`: a freshly exec'd process (this bench binary, doing nothing else)
/// that is not the receiver's parent. Stamps, sends SIGTERM to the pid in its argument, prints
/// the stamp and exits.
fn kill() {
    let pid: libc::pid_t = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("kill: pid argument");
    let sent = monotonic_ns();
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill {pid}: {}", io::Error::last_os_error());
    println!("sent {sent}");
}

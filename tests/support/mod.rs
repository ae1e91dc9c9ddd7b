//! Shared test support: a capture writer, plain subscribers, the shutdown layer driven by a
//! manual clock, and [`systemd::SystemdNs`] (a real systemd booted in its own namespaces).
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

pub mod endings;
pub mod systemd;

use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shutdown_forensics::report::ManualClock;
use shutdown_forensics::{ShutdownHandle, ShutdownLayerBuilder};
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Everything written by the fmt layer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.make_writer_owned().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(Arc::clone(&self.0))
    }
}

impl Capture {
    /// A plain `io::Write` into this capture (for writers that wrap one).
    pub fn make_writer_owned(&self) -> CaptureWriter {
        CaptureWriter(Arc::clone(&self.0))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// Waits (real time, generously) until a line containing `needle` appears.
    pub fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

/// A registry with fmt (no time, no ANSI) writing to a capture, plus the shutdown layer
/// driven by a manual clock.
pub fn setup(builder: ShutdownLayerBuilder) -> (Dispatch, ShutdownHandle, Capture, ManualClock) {
    let clock = ManualClock::new();
    let layer = builder.with_clock(clock.clone()).build();
    let handle = layer.handle();
    let capture = Capture::default();
    let fmt = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_writer(capture.clone());
    let subscriber = tracing_subscriber::registry().with(fmt).with(layer);
    (Dispatch::new(subscriber), handle, capture, clock)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A plain fmt subscriber (no time, no ANSI, no target) writing into `cap`.
pub fn subscriber(cap: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(cap.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing::Level::TRACE)
        .finish()
}

/// Generous: these bounds only catch "never happened", not "was slow".
pub const LOOSE: Duration = Duration::from_secs(10);

/// Starts `kill -<sig> <our pid>` as a separate process. The caller reaps it (`wait`) only
/// once the signal was handled, so that its `/proc` entry still names it as `kill`.
pub fn kill_us(sig: &str) -> Child {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn kill")
}

/// Polls `f` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines of `text` containing `needle`.
pub fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// A registry with `layer` and a plain fmt layer (no time, no ANSI, no target) into `cap`.
pub fn dispatch(layer: shutdown_forensics::ShutdownLayer, cap: &Capture) -> tracing::Dispatch {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(cap.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false);
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer).with(fmt))
}

/// A plain `ShutdownLayer` behind the global subscriber writing into a fresh capture, and the
/// signal helper installed on it (no stop-timeout check). One install per test process.
pub fn install_with_capture() -> (shutdown_forensics::Forensics, Capture) {
    let layer = shutdown_forensics::ShutdownLayer::new();
    let handle = layer.handle();
    let cap = Capture::default();
    tracing::dispatcher::set_global_default(dispatch(layer, &cap)).expect("first subscriber");
    let forensics = shutdown_forensics::Forensics::builder()
        .with_handle(handle)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .expect("install");
    (forensics, cap)
}

/// This test binary run again for one (ignored) role test: `--exact <test> --ignored
/// --nocapture`. The role learns its settings from the environment the caller adds.
pub fn rerun_as(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", test, "--ignored", "--nocapture"]);
    cmd
}

/// The `comm` (name) of process `pid`, empty when it is gone.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default()
}

/// Runs `spawn` again while it fails with `ETXTBSY`: an executable this test just wrote can
/// be held open for writing for a moment by a child another test thread forked meanwhile (the
/// child inherits the descriptor until it execs), and the kernel refuses to exec a file open
/// for writing.
pub fn retry_text_busy<T>(mut spawn: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

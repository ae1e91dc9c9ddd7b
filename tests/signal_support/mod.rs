//! Helpers for the signal-helper tests: real signals from real other processes.
#![allow(dead_code)] // each test binary uses a different subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use shutdown_forensics::ShutdownLayer;
use tracing_subscriber::layer::SubscriberExt;

/// Everything the fmt layer wrote (tolerates a poisoned lock: some tests panic on purpose).
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Waits (loosely) until a line containing `needle` was written.
    pub fn wait_for(&self, needle: &str) -> bool {
        wait_until(LOOSE, || self.text().contains(needle))
    }
}

impl io::Write for Capture {
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

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A registry with `layer` and a plain fmt layer (no time, no ANSI, no target) into `cap`.
pub fn dispatch(layer: ShutdownLayer, cap: &Capture) -> tracing::Dispatch {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(cap.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false);
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer).with(fmt))
}

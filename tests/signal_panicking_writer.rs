//! A subscriber whose writer panics on the context line neither kills the listener nor leaves
//! the app waiting: the app is woken, and later signals are still counted and logged.
//!
//! One install per process (signal handlers are process-global): ONE test in this file.

mod support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shutdown_forensics::{Forensics, ShutdownLayer};
use support::{kill_us, Capture, LOOSE};
use tracing_subscriber::layer::SubscriberExt;

/// Writes into a capture, but panics on the first write holding the context line. (Once only:
/// tracing-subscriber's fmt layer keeps the unwritten line in its thread-local buffer after a
/// panic and writes it again in front of the next event.)
#[derive(Clone)]
struct Explosive(Capture);

static EXPLODED: AtomicBool = AtomicBool::new(false);

impl io::Write for Explosive {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if String::from_utf8_lossy(buf).contains("Shutdown context")
            && !EXPLODED.swap(true, Ordering::SeqCst)
        {
            panic!("writer exploded on purpose");
        }
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Explosive {
    type Writer = Explosive;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn a_panicking_writer_does_not_stop_the_listener() {
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let cap = Capture::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(Explosive(cap.clone()))
        .with_ansi(false)
        .without_time()
        .with_target(false);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer).with(fmt))
        .unwrap();
    let forensics = Forensics::builder()
        .with_handle(handle.clone())
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    let signal = forensics.signal();

    let mut kill1 = kill_us("TERM");
    let ctx = signal.wait_timeout(LOOSE).expect("woken despite the panic");
    kill1.wait().unwrap();
    assert_eq!(ctx.sender.as_ref().map(|s| s.pid), Some(kill1.id()));
    // The steps after the panicking one still ran: the timeline began at the signal.
    assert!(handle.report().trigger.is_some());

    let mut kill2 = kill_us("TERM");
    let pid2 = kill2.id();
    assert!(
        cap.wait_for(&format!(
            "repeated signal SIGTERM #2 from pid {pid2} (kill)"
        )),
        "{}",
        cap.text()
    );
    kill2.wait().unwrap();
    assert_eq!(signal.signal_count(), 2);
    assert!(EXPLODED.load(Ordering::SeqCst));
}

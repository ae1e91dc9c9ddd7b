//! The systemd notify scenario, shared by the path and the abstract-socket test files.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shutdown_forensics::{phase, Forensics, ShutdownLayer};

use crate::support::{kill_us, LOOSE};

const STEP: Duration = Duration::from_secs(10);
/// Below the step: every extension is cut short by the ceiling.
const CEILING: Duration = Duration::from_secs(3);
/// A pause before the first phase: extensions sent after it must leave room for it.
const PAUSE: Duration = Duration::from_millis(500);

/// Collects datagrams from `socket` (with their receive time) on a thread of its own.
fn collect(socket: UnixDatagram) -> mpsc::Receiver<(Instant, String)> {
    socket.set_read_timeout(Some(LOOSE)).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                // The SIGTERM of the test may land on this thread: a socket with a receive
                // timeout is never restarted after a signal handler (signal(7)).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx.send((Instant::now(), text)).is_err() {
                break;
            }
        }
    });
    rx
}

/// `NOTIFY_SOCKET` must already name `socket`. Installs, is stopped by a real SIGTERM, runs
/// `drain` and `db_close`, finishes, and checks every datagram the manager would have seen.
pub fn run(socket: UnixDatagram) {
    let rx = collect(socket);
    let layer = ShutdownLayer::builder()
        .with_progress_interval(Duration::from_millis(50))
        .build();
    let handle = layer.handle();
    let subscriber =
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let forensics = Forensics::builder()
        .with_handle(handle)
        .with_extend_timeout(STEP, CEILING)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();

    let mut kill = kill_us("TERM");
    forensics.signal().wait_timeout(LOOSE).expect("context");
    // The signal was received before this instant.
    let captured = Instant::now();
    kill.wait().unwrap();
    std::thread::sleep(PAUSE);
    let phases_from = Instant::now();
    phase!("drain").in_scope(|| std::thread::sleep(Duration::from_millis(150)));
    phase!("db_close").in_scope(|| std::thread::sleep(Duration::from_millis(150)));
    assert!(forensics.finish().is_some());

    let mut got: Vec<(Instant, String)> = Vec::new();
    while !got.iter().any(|(_, m)| m == "STATUS=shutdown complete") {
        match rx.recv_timeout(LOOSE) {
            Ok(d) => got.push(d),
            Err(_) => panic!("no 'shutdown complete' in {:?}", texts(&got)),
        }
    }
    // Nothing but a late tick may follow completion, and never an extension.
    while let Ok(d) = rx.recv_timeout(Duration::from_millis(300)) {
        got.push(d);
    }
    let all = texts(&got);

    assert_eq!(all[0], "STOPPING=1", "{all:?}");
    assert_eq!(all[1], "STATUS=shutting down: SIGTERM", "{all:?}");
    let statuses: Vec<&str> = all
        .iter()
        .filter(|m| {
            m.starts_with("STATUS=shutting down: ") || m.as_str() == "STATUS=shutdown complete"
        })
        .map(String::as_str)
        .collect();
    let pos = |s: &str| statuses.iter().position(|m| *m == s);
    let drain = pos("STATUS=shutting down: drain").unwrap_or_else(|| panic!("{all:?}"));
    let db = pos("STATUS=shutting down: db_close").unwrap_or_else(|| panic!("{all:?}"));
    assert!(drain < db, "{all:?}");
    assert_eq!(
        statuses.last(),
        Some(&"STATUS=shutdown complete"),
        "{all:?}"
    );
    let complete_at = all
        .iter()
        .position(|m| m == "STATUS=shutdown complete")
        .unwrap();

    // Extensions: at least one, none after completion, none past the ceiling. One sent after
    // the first phase began was sent at least PAUSE after the signal, so it must be shorter.
    let drain_at = all
        .iter()
        .position(|m| m == "STATUS=shutting down: drain")
        .unwrap();
    let min_elapsed_in_phases = phases_from.duration_since(captured);
    let mut extensions = 0;
    for (i, (_, m)) in got.iter().enumerate() {
        let Some(v) = m.strip_prefix("EXTEND_TIMEOUT_USEC=") else {
            continue;
        };
        extensions += 1;
        let by = Duration::from_micros(v.parse().unwrap_or_else(|_| panic!("{m}")));
        assert!(i < complete_at, "extension after completion: {all:?}");
        assert!(by <= STEP && by < CEILING, "{m}");
        if i > drain_at {
            assert!(
                by + min_elapsed_in_phases <= CEILING,
                "{m} sent >= {min_elapsed_in_phases:?} after the signal passes {CEILING:?}"
            );
        }
    }
    assert!(extensions > 0, "no EXTEND_TIMEOUT_USEC in {all:?}");
    assert!(all.iter().all(|m| !m.contains('\n')), "{all:?}");
}

fn texts(got: &[(Instant, String)]) -> Vec<String> {
    got.iter().map(|(_, m)| m.clone()).collect()
}

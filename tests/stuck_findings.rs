//! Findings that mean what they say, with real threads, real sockets and real processes: the
//! counts on the stuck line are the threads and peers its findings name (the crate's own
//! listener is never one of them; both ends of a connection inside this process are one
//! peer), a peer that stopped reading is told from one that stopped sending, a thread is named
//! once-escaped and by its name even when it is the thread taking the snapshot.
//!
//! Snapshots read every thread and socket of the process: this binary keeps them away from
//! other tests' threads (`tests/stuck_snapshot.rs` holds the rest).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use shutdown_forensics::report::StuckSnapshot;
use shutdown_forensics::{phase, Forensics, ShutdownHandle, ShutdownLayer};
use support::{dispatch, rerun_as, wait_until, Capture, LOOSE};
use tracing::Dispatch;

fn layer() -> (Dispatch, ShutdownHandle, Capture) {
    let layer = ShutdownLayer::new();
    let handle = layer.handle();
    let cap = Capture::default();
    (dispatch(layer, &cap), handle, cap)
}

/// The value of `key=` on `line` (a number).
fn field(line: &str, key: &str) -> usize {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[at + key.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {line}"))
}

/// The stuck line of the snapshot taken at `+offset`.
fn stuck_line(cap: &Capture) -> String {
    let lines: Vec<String> = cap
        .lines()
        .into_iter()
        .filter(|l| l.contains(" stuck ("))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines[0].clone()
}

/// Peers the findings name as stuck (one per mention).
fn peers_named(snap: &StuckSnapshot) -> usize {
    snap.findings
        .iter()
        .map(|f| {
            f.matches(" no data for ").count()
                + f.matches(" peer not reading").count()
                + f.matches(" peer not acknowledging").count()
        })
        .sum()
}

fn threads_named_blocked(snap: &StuckSnapshot) -> usize {
    snap.findings
        .iter()
        .map(|f| f.matches("blocked in ").count())
        .sum()
}

#[test]
fn the_counts_are_what_the_findings_name_and_never_the_crates_own_listener() {
    // The real signal listener, waiting for a signal as it always does.
    let forensics = Forensics::builder()
        .with_signals(&[libc::SIGUSR2])
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    let (d, handle, cap) = layer();
    // Both ends of one connection inside this process, both silent for over a second.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let (client_fd, server_fd) = (client.as_raw_fd(), server.as_raw_fd());
    std::thread::sleep(Duration::from_millis(1300));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _drain = phase!("drain").entered();
        handle.stuck_snapshot()
    });
    let listener_thread = snap
        .threads
        .iter()
        .find(|t| t.name.starts_with("shutdown-signal"))
        .expect("the listener thread is listed");
    assert!(listener_thread.syscall.is_some(), "{listener_thread:?}");
    assert!(
        !snap.findings.iter().any(|f| f.contains("shutdown-signal")),
        "{:#?}",
        snap.findings
    );
    // One connection, named once.
    let named = |fd: i32| {
        snap.findings
            .iter()
            .filter(|f| f.starts_with(&format!("fd {fd} ")))
            .count()
    };
    assert_eq!(
        named(client_fd) + named(server_fd),
        1,
        "{:#?}",
        snap.findings
    );
    let line = stuck_line(&cap);
    assert_eq!(
        field(&line, "blocked_threads"),
        threads_named_blocked(&snap),
        "{line}"
    );
    assert_eq!(field(&line, "idle_peers"), peers_named(&snap), "{line}");
    assert_eq!(snap.blocked_threads, threads_named_blocked(&snap));
    assert_eq!(snap.idle_peers, peers_named(&snap));
    // Every finding counted is on the line.
    for f in &snap.findings {
        assert!(line.contains(f.as_str()), "{f}\nnot in\n{line}");
    }
    drop((client, server, forensics));
}

#[test]
#[ignore = "a role: run by a_client_that_stops_reading_is_a_peer_not_reading_not_a_silent_one"]
fn role_client_not_reading() {
    let addr: SocketAddr = std::env::var("SF_SERVER").unwrap().parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    // A small receive buffer: the server's writes fill it soon.
    s.write_all(b"GET /big\n").unwrap();
    println!("sent");
    // Never reads; the parent kills this process.
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_client_that_stops_reading_is_a_peer_not_reading_not_a_silent_one() {
    let (d, handle, cap) = layer();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = rerun_as("role_client_not_reading")
        .env("SF_SERVER", addr.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (conn, peer) = listener.accept().unwrap();
    let fd = conn.as_raw_fd();
    let d2 = d.clone();
    let (tx, rx) = mpsc::channel();
    // The server reads the request, then writes a large response the client never reads: its
    // write blocks once both sides' buffers are full.
    let writer = std::thread::Builder::new()
        .name("resp-writer".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let _s = tracing::info_span!("request", path = "/big", peer = %peer).entered();
                let mut conn = conn;
                let mut req = [0u8; 9];
                conn.read_exact(&mut req).unwrap();
                tx.send(()).unwrap();
                let chunk = vec![b'x'; 1 << 16];
                while conn.write_all(&chunk).is_ok() {}
            });
        })
        .unwrap();
    rx.recv().unwrap();
    // Until the write blocks and nothing has been sent for over a second.
    assert!(wait_until(LOOSE, || {
        std::fs::read_to_string("/proc/self/net/tcp")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!("{:04X} ", peer.port())) && !l.contains(" 00000000:"))
    }));
    std::thread::sleep(Duration::from_millis(1500));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let _drain = phase!("drain").entered();
        handle.stuck_snapshot()
    });
    let sock = snap.sockets.iter().find(|s| s.fd == fd).expect("socket");
    let queued = sock.send_q.unwrap();
    assert!(queued > 0, "{sock:?}");
    let finding = snap
        .findings
        .iter()
        .find(|f| f.starts_with("request{"))
        .unwrap_or_else(|| panic!("{:#?}", snap.findings));
    assert!(
        finding.contains("resp-writer (tid") && finding.contains("blocked in "),
        "{finding}"
    );
    assert!(finding.contains(" peer not reading: "), "{finding}");
    assert!(finding.contains(" bytes queued"), "{finding}");
    assert!(!finding.contains("no data for"), "{finding}");
    let line = stuck_line(&cap);
    assert!(line.contains(" peer not reading: "), "{line}");
    assert_eq!(field(&line, "idle_peers"), peers_named(&snap), "{line}");
    // The socket end: the writer's descriptor is shut, its write fails, the thread ends.
    client.kill().unwrap();
    client.wait().unwrap();
    // SAFETY: shutdown(2) on a descriptor this test's writer thread owns and still holds.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    writer.join().unwrap();
}

#[test]
fn a_span_on_the_thread_taking_the_snapshot_is_named_by_that_thread() {
    let (d, handle, _cap) = layer();
    let snap = tracing::dispatcher::with_default(&d, || {
        let _request = tracing::info_span!("request", path = "/x").entered();
        handle.begin();
        let _drain = phase!("drain").entered();
        handle.stuck_snapshot()
    });
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    // SAFETY: gettid(2) has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let span = snap.spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(
        span.last_thread.as_deref(),
        Some(format!("{} (tid {tid})", comm.trim_end()).as_str()),
        "{span:?}"
    );
}

#[test]
fn a_hostile_thread_name_is_escaped_once() {
    let (d, handle, _cap) = layer();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let fd = client.as_raw_fd();
    let d2 = d.clone();
    let (tx, rx) = mpsc::channel();
    let t = std::thread::Builder::new()
        .name("a\n\u{1b}[31mERROR".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&d2, || {
                let _s = tracing::info_span!("request").entered();
                tx.send(()).unwrap();
                let mut c = client;
                let _ = c.read(&mut [0u8; 4]);
            });
        })
        .unwrap();
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let snap = tracing::dispatcher::with_default(&d, || {
        handle.begin();
        handle.stuck_snapshot()
    });
    let once = r#"thread "a\n\u{1b}[31mERROR" (tid "#;
    assert!(
        snap.findings.iter().any(|f| f.contains(once)),
        "{:#?}",
        snap.findings
    );
    let span = snap.spans.iter().find(|s| s.name == "request").unwrap();
    assert!(
        span.last_thread
            .as_deref()
            .is_some_and(|l| l.starts_with(r#""a\n\u{1b}[31mERROR" (tid "#)),
        "{span:?}"
    );
    // SAFETY: shutdown(2) on a descriptor the blocked thread owns.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    t.join().unwrap();
}

#[test]
fn the_stuck_line_is_logged_when_the_budget_runs_out_not_a_cpu_sample_later() {
    // A long sample gap makes the window wide: before, the line came a whole gap after the
    // budget, after the phase's `done` and the next phase's lines.
    let gap = Duration::from_millis(1000);
    let layer = ShutdownLayer::builder()
        .with_phase_budget("drain", Duration::from_millis(1200))
        .with_stuck_cpu_sample_gap(gap)
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    tracing::dispatcher::with_default(&d, || {
        handle.begin();
        // The drain gives up half a second after its budget, then the next phase runs.
        phase!("drain").in_scope(|| std::thread::sleep(Duration::from_millis(1700)));
        phase!("db_close").in_scope(|| {});
        handle.finish();
    });
    let text = cap.text();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} in\n{text}"))
    };
    assert!(
        at(" drain over budget (") < at(" drain stuck (budget 1.20s)")
            && at(" drain stuck (budget 1.20s)") < at(" drain done (")
            && at(" drain done (") < at(" db_close done ("),
        "{text}"
    );
    // Still two samples: the first was taken ahead of the budget.
    let snap = &handle.report().stuck[0];
    assert!(
        snap.threads.iter().any(|t| t.cpu_pct.is_some()),
        "{snap:#?}"
    );
}

#[test]
fn a_stuck_line_that_comes_after_later_lines_says_when_it_was_logged() {
    // On demand there is no early sample: the snapshot takes the whole gap, and the app's
    // next phase logs its lines meanwhile.
    let layer = ShutdownLayer::builder()
        .with_stuck_cpu_sample_gap(Duration::from_millis(800))
        .build();
    let handle = layer.handle();
    let cap = Capture::default();
    let d = dispatch(layer, &cap);
    tracing::dispatcher::with_default(&d, || {
        handle.begin();
        let taker = {
            let (d, handle) = (d.clone(), handle.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || handle.stuck_snapshot())
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        phase!("db_close").in_scope(|| {});
        let snap = taker.join().unwrap();
        assert!(snap.at_s < 0.2, "{snap:?}");
        handle.finish();
    });
    let text = cap.text();
    let stuck = stuck_line(&cap);
    assert!(
        text.find(" db_close done (").unwrap() < text.find(" stuck (").unwrap(),
        "{text}"
    );
    // `+0.00s shutdown stuck (on demand), logged +0.80s: ...`
    let logged = stuck
        .split(", logged +")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{stuck}"));
    assert!(logged >= 0.2, "{stuck}");
    assert!(stuck.contains(" stuck (on demand), logged +"), "{stuck}");
}

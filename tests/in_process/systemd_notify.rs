//! `Notifier` sends the exact sd_notify datagrams to a real socket, path or abstract, and
//! never blocks or panics when nobody reads them.
//!
//! Real or fake: a socket bound by the test stands in for systemd, so each datagram can be read
//! byte for byte and an unread or abstract socket tried. What a real systemd does with them:
//! `tests/systemd_real.rs`.
#![cfg(feature = "systemd")]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use shutdown_forensics::systemd::{ExtendPolicy, Notifier};

fn listen(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn send_all(notifier: &Notifier) {
    notifier.stopping().unwrap();
    notifier.status("shutting down: drain").unwrap();
    notifier
        .extend_timeout(Duration::from_millis(1500))
        .unwrap();
}

fn assert_received_all(socket: &UnixDatagram) {
    assert_eq!(recv(socket), "STOPPING=1");
    assert_eq!(recv(socket), "STATUS=shutting down: drain");
    assert_eq!(recv(socket), "EXTEND_TIMEOUT_USEC=1500000");
}

#[test]
fn sends_exact_datagrams_to_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = listen(&path);
    let notifier = Notifier::new(&path).expect("absolute path");
    send_all(&notifier);
    assert_received_all(&socket);
}

#[cfg(target_os = "linux")]
#[test]
fn sends_exact_datagrams_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    let name = format!("shutdown-forensics-test-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notifier = Notifier::new(format!("@{name}")).expect("abstract name");
    send_all(&notifier);
    assert_received_all(&socket);
}

#[test]
fn status_cannot_smuggle_other_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = listen(&path);
    let notifier = Notifier::new(&path).unwrap();
    notifier.status("draining\nREADY=1\r\x1b[2J").unwrap();
    assert_eq!(recv(&socket), "STATUS=draining READY=1  [2J");
}

#[test]
fn heartbeats_follow_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = listen(&path);
    let notifier = Notifier::new(&path).unwrap();
    let policy = ExtendPolicy::new(Duration::from_secs(10), Duration::from_secs(60));
    let s = Duration::from_secs;
    assert_eq!(notifier.heartbeat(&policy, s(5)).unwrap(), Some(s(10)));
    assert_eq!(notifier.heartbeat(&policy, s(55)).unwrap(), Some(s(5)));
    assert_eq!(notifier.heartbeat(&policy, s(60)).unwrap(), None);
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=10000000");
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=5000000");
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        socket.recv(&mut buf).is_err(),
        "nothing sent past the ceiling"
    );
}

#[test]
fn no_listener_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let notifier = Notifier::new(dir.path().join("nobody.sock")).unwrap();
    assert!(notifier.stopping().is_err());
}

#[test]
fn a_full_queue_is_an_error_not_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let _socket = listen(&path); // never read
    let notifier = Notifier::new(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let first_error = (0..100_000).find_map(|_| notifier.status(&"x".repeat(1024)).err());
        let _ = tx.send(first_error.is_some());
    });
    let got_error = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a send blocked on the full queue");
    assert!(got_error, "100000 datagrams queued without an error");
}

//! Issue 20: the gateway's `POST /upload` no longer buffers without limit. A body larger than
//! the cap is refused with 413 (at once when its `Content-Length` says so, else once it crosses
//! the cap), and the queue to the database thread is bounded, so a client uploading faster
//! than the database writes is slowed down (backpressure reaches its TCP window) instead of the
//! gateway's memory growing with the upload; a drain stuck on it says the server is the one
//! not reading.

mod gateway_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_support::Gateway;

const MAX_UPLOAD: u64 = 64 << 20;

fn addr(gw: &mut Gateway) -> SocketAddr {
    let line = gw.wait_for("gateway started addr=", Duration::from_secs(30));
    let rest = &line[line.find("addr=").unwrap() + 5..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn response(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Peak and current resident memory of `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

#[test]
fn an_upload_over_the_cap_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &["--wait", "--adapters", "slack", "--sessions", "0"],
    );
    let addr = addr(&mut gw);

    // Declared too large: refused before a byte of the body is read.
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        MAX_UPLOAD + 1
    );
    s.write_all(head.as_bytes()).unwrap();
    let r = response(&mut s);
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");

    // Chunked, no length: refused once the body crosses the cap.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    while sent <= MAX_UPLOAD + (1 << 20) {
        if s.write_all(&frame).is_err() {
            break; // the server answered and closed
        }
        sent += chunk.len() as u64;
    }
    let r = response(&mut s);
    assert!(r.starts_with("HTTP/1.1 413 "), "after {sent} bytes: {r}");
}

#[test]
fn a_fast_upload_is_slowed_to_the_databases_pace_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        &[
            "--wait",
            "--adapters",
            "slack",
            "--sessions",
            "0",
            "--db-write-delay",
            "0.2",
            "--drain-timeout",
            "2",
        ],
    );
    let addr = addr(&mut gw);
    let (_, rss_before) = memory(gw.pid());
    let total: u64 = 60 << 20; // under the cap
    let sent = Arc::new(AtomicU64::new(0));
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let writer = {
        let sent = Arc::clone(&sent);
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            while sent.load(Ordering::SeqCst) < total {
                if s.write_all(&chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        })
    };
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = sent.load(Ordering::SeqCst);
    let (peak, _) = memory(gw.pid());
    // Loopback takes 60 MiB in well under a second: only backpressure holds the client back.
    assert!(
        after < total / 2,
        "the client sent {after} of {total} bytes in {:?}: no backpressure",
        start.elapsed()
    );
    let grown = peak.saturating_sub(rss_before);
    assert!(
        grown < 32 << 20,
        "the gateway's peak memory grew by {grown} bytes during the upload"
    );
    // Stopped now, the drain is stuck on the upload, and the snapshot says who is slow: the
    // server (its handler waits for the database), not the client.
    let peer = s.local_addr().unwrap();
    let mut kill = gateway_support::kill_from_other_process("-TERM", gw.pid());
    let stuck = gw.wait_for("drain stuck (budget 2.00s)", Duration::from_secs(30));
    let _ = kill.wait();
    eprintln!("{stuck}");
    assert!(
        stuck.contains(&format!(
            "POST /upload receiving from {peer}, server not reading ("
        )),
        "{stuck}"
    );
    let _ = s.shutdown(std::net::Shutdown::Both);
    assert!(gw.wait_exit(Duration::from_secs(60)).success());
    let _ = writer.join();
}

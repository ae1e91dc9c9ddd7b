//! What serving through `shutdown_forensics::http` costs (issue 20): requests per second of
//! the same axum router served by plain `axum::serve` (A) and by `shutdown_forensics::http::serve`
//! (B), HTTP/1.1 keep-alive, a loopback client in this process. Target: B at most 1 % fewer
//! requests per second than A.
//!
//! Both servers run at once, each on a runtime of its own (one thread), under the same
//! subscriber (a registry with the `ShutdownLayer`, which tracks every span, as an app using
//! the crate runs it). Rounds alternate A and B (ABBA order) so that machine noise hits both
//! alike; each round runs `HTTP_BENCH_CONNS` keep-alive connections (default 32), each sending
//! its next request when the last response arrived, for `HTTP_BENCH_SECS` seconds (default
//! 1.0); `HTTP_BENCH_ROUNDS` rounds a side (default 20). It prints each side's median requests
//! per second and the median of the per-pair ratios B/A, and the same for the server thread's
//! CPU time per request (`/proc/self/task/<tid>/schedstat`), which a loaded machine disturbs
//! less than throughput.
//!
//! Run: `cargo bench -p shutdown-forensics-benches --bench http` (a release build).
//!
//! Instructions per request, which a loaded machine does not move (BENCHMARKS.md has the
//! script): `HTTP_BENCH_SERVER=plain|tracked HTTP_BENCH_REQUESTS=N valgrind --tool=cachegrind
//! --cache-sim=no target/release/deps/http-<hash>` counts the server's instructions while a
//! client child process (not traced) sends N requests; two values of N cancel the start-up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use shutdown_forensics::ShutdownLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;

mod abba;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn router() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Starts a server on its own thread and runtime (one thread: the accept loop and every
/// connection); returns its address and the thread's id.
fn server(tracked: bool) -> (SocketAddr, i64) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((listener.local_addr().unwrap(), tid)).unwrap();
            if tracked {
                shutdown_forensics::http::serve(listener, router())
                    .await
                    .unwrap();
            } else {
                axum::serve(listener, router()).await.unwrap();
            }
        });
    });
    rx.recv().unwrap()
}

/// One keep-alive connection sending `GET /` until `stop`; counts complete responses.
async fn client(addr: SocketAddr, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    while !stop.load(Ordering::Relaxed) {
        s.write_all(req).await.unwrap();
        // The response: its head, then `content-length` bytes (2: "ok").
        loop {
            if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                let len = content_length(&buf[..end]);
                if have >= end + 4 + len {
                    buf.copy_within(end + 4 + len..have, 0);
                    have -= end + 4 + len;
                    break;
                }
            }
            let n = s.read(&mut buf[have..]).await.unwrap();
            assert!(n > 0, "server closed");
            have += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds thread `tid` of this process has run (`/proc/self/task/<tid>/schedstat`).
fn cpu_ns(tid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Requests per second against the server, and its CPU nanoseconds per request, for `secs`.
fn round(
    rt: &tokio::runtime::Runtime,
    (addr, tid): (SocketAddr, i64),
    conns: usize,
    secs: f64,
) -> (f64, f64) {
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(client(addr, Arc::clone(&stop), Arc::clone(&done))))
            .collect();
        // Warm the connections up, then count.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (start, before, cpu) = (Instant::now(), done.load(Ordering::Relaxed), cpu_ns(tid));
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let n = done.load(Ordering::Relaxed) - before;
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_ns(tid).saturating_sub(cpu) as f64 / n.max(1) as f64;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        (n as f64 / elapsed, cpu)
    })
}

/// `HTTP_BENCH_CLIENT=addr`: this process is the client of a server run under cachegrind:
/// `HTTP_BENCH_REQUESTS` requests over `HTTP_BENCH_CONNS` connections, then exit.
fn client_process(addr: SocketAddr, conns: usize, requests: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(client(addr, Arc::clone(&stop), Arc::clone(&done))))
            .collect();
        while done.load(Ordering::Relaxed) < requests {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// `HTTP_BENCH_SERVER=plain|tracked`: serve with one of them in this process (to be run under
/// `valgrind --tool=cachegrind`, which counts its instructions), with a client child process
/// (not traced by valgrind) sending `HTTP_BENCH_REQUESTS` requests; exits when it is done.
fn server_process(tracked: bool, conns: usize, requests: u64) {
    let (addr, _) = server(tracked);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env_remove("HTTP_BENCH_SERVER")
        .env("HTTP_BENCH_CLIENT", addr.to_string())
        .env("HTTP_BENCH_CONNS", conns.to_string())
        .env("HTTP_BENCH_REQUESTS", requests.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    std::process::exit(0);
}

fn main() {
    let conns = env("HTTP_BENCH_CONNS", 32usize);
    let requests = env("HTTP_BENCH_REQUESTS", 20_000u64);
    if let Ok(addr) = std::env::var("HTTP_BENCH_CLIENT") {
        return client_process(addr.parse().unwrap(), conns, requests);
    }
    let secs = env("HTTP_BENCH_SECS", 1.0f64);
    let rounds = env("HTTP_BENCH_ROUNDS", 20usize);
    let layer = ShutdownLayer::new();
    // `HTTP_BENCH_NO_HTTP_SPANS=1`: the `connection` / `request` spans filtered off (target
    // `shutdown_forensics::http`), as an app may run it; the snapshot's connections remain.
    let off = std::env::var_os("HTTP_BENCH_NO_HTTP_SPANS").is_some();
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target(
            shutdown_forensics::http::HTTP_TARGET,
            if off {
                tracing_subscriber::filter::LevelFilter::OFF
            } else {
                tracing_subscriber::filter::LevelFilter::TRACE
            },
        );
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(layer).with(filter),
    )
    .expect("subscriber");
    if let Ok(which) = std::env::var("HTTP_BENCH_SERVER") {
        return server_process(which == "tracked", conns, requests);
    }
    let plain = server(false);
    let tracked = server(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Warm-up (allocator, caches, connections' first requests).
    round(&rt, plain, conns, 0.5);
    round(&rt, tracked, conns, 0.5);
    abba::run(
        "",
        ("axum::serve", || round(&rt, plain, conns, secs)),
        ("http::serve", || round(&rt, tracked, conns, secs)),
        rounds,
        &format!("{secs} s each, {conns} connections"),
    );
}

//! A realistic service under load (issue 21): an axum server on a multi-thread tokio runtime,
//! tower-http's real `TraceLayer` (a `request{method uri version}` span per request at INFO and
//! one INFO event per response), JSON logs written to a file through `tracing-appender`'s
//! non-blocking writer (lossless), driven by `wrk` over loopback. Goal: requests per second
//! with the default `ShutdownLayer` at least 99 % of without.
//!
//! Each configuration is a server process of its own (the subscriber is global), started once
//! and kept for every round:
//!
//! - `plain`: registry + JSON fmt layer to the file (no layer of ours);
//! - `layer`: the same + `ShutdownLayer::new()` (default: every span tracked, its fields
//!   captured);
//! - `http`: the same as `layer`, served through `shutdown_forensics::http::serve` (connection
//!   and request spans, the connection table) instead of `axum::serve`; the JSON lines then
//!   carry those two spans as well;
//! - `http_quiet`: the same as `http`, with the fmt layer filtering the target
//!   `shutdown_forensics::http` out (its lines as under `plain`; the layer still tracks the
//!   spans).
//!
//! Rounds run `wrk` against `plain` and one other in ABBA order (`SERVICE_BENCH_ROUNDS` pairs,
//! default 6, each `SERVICE_BENCH_SECS` seconds, default 3, with `SERVICE_BENCH_CONNS`
//! connections, default 32, one wrk thread). Per round: wrk's requests per second, and the
//! server's CPU time per request (every thread of the server process, from
//! `/proc/<pid>/task/*/schedstat`, before and after the round). Printed: each round, the
//! medians and the median of the per-pair ratios.
//!
//! Needs `wrk` on the PATH (Debian: `apt-get install wrk`).
//!
//! Instructions per request, which a loaded machine does not move: run one server under
//! `valgrind --tool=cachegrind` with `SERVICE_BENCH_SERVER=<mode> SERVICE_BENCH_LOG=<file>
//! SERVICE_BENCH_EXIT_AFTER=N` (it exits after N answers), load it with wrk, and take the
//! difference of two values of N (BENCHMARKS.md has the script).
//!
//! Run: `cargo bench -p shutdown-forensics-benches --bench service` (all three against
//! `plain`), or `... --bench service -- layer` for one of them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

mod abba;
use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;

const SERVER_ENV: &str = "SERVICE_BENCH_SERVER";
const LOG_ENV: &str = "SERVICE_BENCH_LOG";

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SERVICE_BENCH_EXIT_AFTER=N`: the server exits once it has answered N requests (for a run
/// under cachegrind, whose counts are written at exit).
static EXIT_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);
static ANSWERED: AtomicU64 = AtomicU64::new(0);

/// A small JSON answer, as an API's `GET /users/{id}` would give.
async fn user() -> impl IntoResponse {
    if ANSWERED.fetch_add(1, Ordering::Relaxed) + 1 >= EXIT_AFTER.load(Ordering::Relaxed) {
        std::process::exit(0);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"id":42,"name":"Ada","roles":["admin","dev"],"active":true}"#,
    )
}

fn router() -> Router {
    Router::new().route("/users/42", get(user)).layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
    )
}

/// The server: `mode` is `plain`, `layer` or `http`; logs JSON to `log`; prints its address
/// and serves until killed.
fn server(mode: &str, log: &Path) {
    EXIT_AFTER.store(env("SERVICE_BENCH_EXIT_AFTER", u64::MAX), Ordering::Relaxed);
    let file = std::fs::File::create(log).expect("log file");
    let (writer, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(file);
    // `http_quiet`: the fmt layer leaves the `connection` / `request` spans of
    // `shutdown_forensics::http` out of its lines (the layer still tracks them).
    let http_level = if mode == "http_quiet" {
        LevelFilter::OFF
    } else {
        LevelFilter::INFO
    };
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_filter(
            Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target(shutdown_forensics::http::HTTP_TARGET, http_level),
        );
    let layer = (mode != "plain").then(shutdown_forensics::ShutdownLayer::new);
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        if mode.starts_with("http") {
            shutdown_forensics::http::serve(listener, router())
                .await
                .expect("serve");
        } else {
            axum::serve(listener, router()).await.expect("serve");
        }
    });
}

/// One server process, killed and reaped on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(mode: &str, dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(SERVER_ENV, mode)
            .env(LOG_ENV, dir.join(format!("{mode}.jsonl")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"));
        Self { child, addr }
    }

    /// CPU time (ns) every thread of the server has used so far.
    fn cpu_ns(&self) -> u64 {
        let dir = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(dir)
            .expect("task dir")
            .filter_map(|t| {
                let s = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
                s.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One wrk run against `server`: (requests per second, server CPU ns per request).
fn round(server: &Server, secs: u32, conns: u32) -> (f64, f64) {
    let cpu = server.cpu_ns();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            &format!("http://{}/users/42", server.addr),
        ])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let cpu = server.cpu_ns() - cpu;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk: {text}");
    assert!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"));
    (rps, cpu as f64 / requests)
}

fn main() {
    if let Ok(mode) = std::env::var(SERVER_ENV) {
        let log = std::env::var_os(LOG_ENV).expect("log path");
        return server(&mode, Path::new(&log));
    }
    // `cargo bench` passes `--bench`; a filter argument picks the configurations compared.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds = env("SERVICE_BENCH_ROUNDS", 6usize);
    let secs = env("SERVICE_BENCH_SECS", 3u32);
    let conns = env("SERVICE_BENCH_CONNS", 32u32);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = Server::start("plain", dir.path());
    for mode in ["layer", "http", "http_quiet"] {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == mode) {
            continue;
        }
        let other = Server::start(mode, dir.path());
        // Warm-up: connections, allocator, the log file.
        round(&plain, 1, conns);
        round(&other, 1, conns);
        abba::run(
            &format!("{mode} "),
            ("plain", || round(&plain, secs, conns)),
            (mode, || round(&other, secs, conns)),
            rounds,
            &format!("{secs} s each, {conns} connections"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

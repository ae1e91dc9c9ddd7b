//! Issue 20: a real axum server (`shutdown_forensics::http::serve`, in a child process) and real
//! TCP clients in this process. For each way a connection holds a graceful shutdown (an SSE
//! client that stays, a client that stops reading a large response, a WebSocket, a connection
//! that never sent a request, a slow upload, half a request head) the drain is stuck, the stuck
//! line and the report name the connection's state, method, path and peer, and after a SIGKILL
//! the next start's verdict names it. Also: tower-http's `TraceLayer` spans are children of the
//! connection's, and the `drain` phase counts the requests without app code.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::rerun_as;

const DIR_ENV: &str = "SF_HTTP_DIR";
const DRAIN_LIMIT_ENV: &str = "SF_HTTP_DRAIN_LIMIT";
/// The drain waits for a server it never told to stop (a missing `with_graceful_shutdown`).
const NO_STOP_ENV: &str = "SF_HTTP_NO_STOP";

// ---------------------------------------------------------------------------------------------
// The server: a child process.

mod server {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::ws::{WebSocket, WebSocketUpgrade};
    use axum::response::sse::{Event, Sse};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use axum::Router;
    use http_body_util::BodyExt;
    use tokio::sync::Notify;

    /// Open WebSockets: the app's own tracking (hyper's graceful shutdown does not wait for
    /// upgraded connections), which its drain waits for.
    #[derive(Clone, Default)]
    pub struct Sockets {
        live: Arc<AtomicUsize>,
        gone: Arc<Notify>,
    }

    impl Sockets {
        pub async fn all_closed(&self) {
            loop {
                let notified = self.gone.notified();
                if self.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        }
    }

    async fn events() -> impl IntoResponse {
        // One event a second until the client goes: the stream never ends by itself.
        let stream = futures_util::stream::unfold(0u64, |n| async move {
            if n > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some((
                Ok::<_, Infallible>(Event::default().data(format!("tick {n}"))),
                n + 1,
            ))
        });
        Sse::new(stream)
    }

    async fn big() -> Body {
        Body::from(vec![b'x'; 64 << 20])
    }

    async fn upload(body: Body) -> String {
        let mut body = body;
        let mut total = 0;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, |d| d.len());
        }
        format!("{total}\n")
    }

    async fn ws(
        upgrade: WebSocketUpgrade,
        sockets: axum::extract::State<Sockets>,
    ) -> impl IntoResponse {
        let sockets = sockets.0.clone();
        sockets.live.fetch_add(1, Ordering::SeqCst);
        upgrade.on_upgrade(move |mut socket: WebSocket| async move {
            while let Some(Ok(msg)) = socket.recv().await {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            sockets.live.fetch_sub(1, Ordering::SeqCst);
            sockets.gone.notify_waiters();
        })
    }

    pub fn router(sockets: Sockets) -> Router {
        Router::new()
            .route("/health", get(|| async { "ok\n" }))
            // A handler that waits on something that never comes (a peer, a lock, a sleep).
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "late\n"
                }),
            )
            .route("/events", get(events))
            .route("/big", get(big))
            .route("/upload", post(upload))
            .route("/ws", get(ws))
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .with_state(sockets)
    }
}

/// The server role: serves until a line on stdin, then drains (budget 1 s) with a flight
/// record; prints `LISTENING addr`, then the first stuck snapshot as `SNAPSHOT json`.
#[test]
#[ignore = "run by the tests below"]
fn role_server() {
    use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let limit = std::env::var(DRAIN_LIMIT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600.0);
    let record = FlightRecord::open(Path::new(&dir).join("flight.jsonl")).unwrap();
    let layer = ShutdownLayer::builder()
        .with_flight_record(record)
        .with_phase_budget("drain", Duration::from_secs(1))
        .build();
    let handle = layer.handle();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(layer)
        .init();
    let watcher = handle.clone();
    std::thread::spawn(move || loop {
        if let Some(s) = watcher.report().stuck.first() {
            eprintln!("SNAPSHOT {}", serde_json::to_string(s).unwrap());
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sockets = server::Sockets::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("LISTENING {}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = shutdown_forensics::http::serve(listener, server::router(sockets.clone()))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
        let server = tokio::spawn(async move { serve.await });
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        handle.begin();
        if std::env::var_os(NO_STOP_ENV).is_none() {
            let _ = stop_tx.send(());
        }
        let drain = async {
            let _ = server.await;
            sockets.all_closed().await;
        };
        let _ = tokio::time::timeout(
            Duration::from_secs_f64(limit),
            drain.instrument(phase!("drain")),
        )
        .await;
    });
    handle.finish();
    eprintln!("EXITING");
}

// ---------------------------------------------------------------------------------------------
// The test side: real clients.

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, drain_limit: Option<f64>) -> Self {
        Self::start_with(dir, drain_limit, false)
    }

    fn start_with(dir: &Path, drain_limit: Option<f64>, no_stop: bool) -> Self {
        let mut cmd = rerun_as("role_server");
        if no_stop {
            cmd.env(NO_STOP_ENV, "1");
        }
        cmd.env(DIR_ENV, dir)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(l) = drain_limit {
            cmd.env(DRAIN_LIMIT_ENV, l.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Self {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let l = s.wait_for("LISTENING ");
        s.addr = l.trim_start_matches("LISTENING ").trim().parse().unwrap();
        s
    }

    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// Starts the shutdown (the server stops accepting and drains).
    fn stop(&mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"stop\n").unwrap();
    }

    /// The stuck line and the snapshot as JSON.
    fn stuck(&mut self) -> (String, Value) {
        let line = self.wait_for(" drain stuck (budget 1.00s): ");
        let snap = self.wait_for("SNAPSHOT ");
        let json = serde_json::from_str(snap.trim_start_matches("SNAPSHOT ")).unwrap();
        (line, json)
    }

    /// SIGKILL, as a supervisor would; returns the next start's verdict.
    fn kill_and_verdict(mut self, dir: &Path) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let prev = shutdown_forensics::FlightRecord::previous(dir.join("flight.jsonl")).unwrap();
        prev.message().expect("a verdict")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The snapshot's connection whose peer is `peer`.
fn connection(snap: &Value, peer: SocketAddr) -> Value {
    snap["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer"] == peer.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("no connection from {peer} in {snap:#}"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads until `needle` was received; returns what was read.
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One scenario: start the server, put the client in place, stop, check the stuck line, the
/// snapshot's connection, and the verdict after a SIGKILL.
fn scenario(
    client: impl FnOnce(SocketAddr) -> (TcpStream, SocketAddr),
    fragments: impl Fn(SocketAddr) -> Vec<String>,
    state: &str,
) -> (String, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), None);
    let (_keep, peer) = client(server.addr);
    server.stop();
    let (line, snap) = server.stuck();
    let expect = fragments(peer);
    let first = snap["findings"][0].as_str().unwrap().to_owned();
    for f in &expect {
        assert!(line.contains(f.as_str()), "{f:?} not in the line\n{line}");
        assert!(
            first.contains(f.as_str()),
            "{f:?} not in the first finding\n{snap:#}"
        );
    }
    let c = connection(&snap, peer);
    assert_eq!(c["state"], state, "{c:#}");
    assert_eq!(c["summary"], first, "{c:#}");
    let verdict = server.kill_and_verdict(dir.path());
    eprintln!("{line}\n{verdict}");
    assert!(
        verdict.contains("was killed during phase drain"),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!("; stuck in {}", expect[0])),
        "{verdict}"
    );
    for f in &expect {
        assert!(
            verdict.contains(f.as_str()),
            "{f:?} not in the verdict\n{verdict}"
        );
    }
    (line, c, verdict)
}

#[test]
fn an_sse_client_that_stays_holds_the_drain_and_is_named() {
    let (line, c, _) = scenario(
        |addr| {
            let mut s = connect(addr);
            s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            read_until(&mut s, "data: tick 1");
            let peer = s.local_addr().unwrap();
            // Keep reading, as a browser's EventSource does.
            let mut r = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while r.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
            (s, peer)
        },
        |peer| {
            vec![
                "GET /events streaming ".into(),
                format!("s to {peer}, "),
                " sent, last write ".into(),
            ]
        },
        "streaming",
    );
    let _ = &line;
    assert_eq!(c["method"], "GET");
    assert_eq!(c["path"], "/events");
    assert!(c["response_bytes"].as_u64().unwrap() > 0, "{c:#}");
    assert!(c["write_blocked_s"].is_null(), "a reading client: {c:#}");
}

#[test]
fn a_client_that_stops_reading_a_large_response_is_named_with_its_queue() {
    let (_, c, _) = scenario(
        |addr| {
            let mut s = connect(addr);
            s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            read_until(&mut s, "\r\n\r\n");
            // Reads nothing more: the server's writes block once the buffers are full.
            std::thread::sleep(Duration::from_millis(1500));
            let peer = s.local_addr().unwrap();
            (s, peer)
        },
        |peer| {
            vec![
                "GET /big streaming ".into(),
                format!("s to {peer}, client not reading ("),
                " MB queued)".into(),
            ]
        },
        "streaming",
    );
    assert!(c["write_blocked_s"].as_f64().unwrap() >= 1.0, "{c:#}");
    assert!(c["send_q"].as_u64().unwrap() > 0, "{c:#}");
}

#[test]
fn a_websocket_that_stays_open_is_named_as_upgraded() {
    let (_, c, _) = scenario(
        |addr| {
            let s = connect(addr);
            let peer = s.local_addr().unwrap();
            let (mut ws, resp) =
                tokio_tungstenite::tungstenite::client(format!("ws://{addr}/ws"), s).unwrap();
            assert_eq!(resp.status(), 101);
            ws.send(tokio_tungstenite::tungstenite::Message::text("hi"))
                .unwrap();
            let echo = ws.read().unwrap();
            assert_eq!(echo.to_text().unwrap(), "hi");
            // Stays open, silent; the stream is kept by the returned clone.
            let kept = ws.get_ref().try_clone().unwrap();
            std::mem::forget(ws);
            (kept, peer)
        },
        |peer| {
            vec![
                "WebSocket /ws upgraded ".into(),
                format!("s ago ({peer}), not tied to the shutdown"),
            ]
        },
        "upgraded",
    );
    assert_eq!(c["upgrade"], "websocket", "{c:#}");
}

/// A keep-alive client after its request, and one that never sent a request.
fn idle_clients(addr: SocketAddr) -> Vec<TcpStream> {
    let mut kept = connect(addr);
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut kept, "ok\n");
    let silent = connect(addr);
    std::thread::sleep(Duration::from_millis(300));
    vec![kept, silent]
}

#[test]
fn idle_connections_do_not_hold_a_graceful_drain_and_are_closed() {
    // hyper-util 0.1.21 closes an idle keep-alive connection, and cancels one that never sent
    // a request, at the graceful shutdown: neither holds the drain (the crate says so by
    // saying nothing, and the counts are zero).
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(10.0));
    let mut clients = idle_clients(server.addr);
    server.stop();
    let done = server.wait_for(" drain done (");
    assert!(done.contains("active_at_start=0 active_now=0"), "{done}");
    server.wait_for("EXITING");
    assert!(
        !server.seen.iter().any(|l| l.contains(" stuck ")),
        "{:#?}",
        server.seen
    );
    for c in &mut clients {
        let mut buf = [0u8; 16];
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("not closed by the server: {other:?}"),
        }
    }
}

#[test]
fn idle_keep_alive_connections_are_named_when_the_server_was_not_told_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), None, true);
    let clients = idle_clients(server.addr);
    let (kept, silent) = (
        clients[0].local_addr().unwrap(),
        clients[1].local_addr().unwrap(),
    );
    server.stop();
    let (line, snap) = server.stuck();
    eprintln!("{line}");
    let expect = [
        format!("1 idle keep-alive connection ({kept}), idle up to "),
        format!("1 connection open without a request ({silent}), idle up to "),
    ];
    for e in &expect {
        assert!(line.contains(e.as_str()), "{e:?} not in\n{line}");
    }
    assert_eq!(connection(&snap, kept)["requests"], 1);
    assert_eq!(connection(&snap, silent)["state"], "idle");
    let verdict = server.kill_and_verdict(dir.path());
    assert!(
        verdict.contains(&format!("; stuck in {}", expect[0])),
        "{verdict}"
    );
}

#[test]
fn the_drain_counts_requests_and_trace_layer_spans_are_children_of_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(2.0));
    let mut s = connect(server.addr);
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut s, "data: tick 0");
    server.stop();
    let (_, snap) = server.stuck();
    // tower-http's span (target tower_http::trace) inside ours, inside the connection's.
    let spans = snap["spans"].as_array().unwrap();
    let trace = spans
        .iter()
        .find(|sp| {
            sp["fields"]
                .as_str()
                .is_some_and(|f| f.contains("uri=/events"))
        })
        .unwrap_or_else(|| panic!("no TraceLayer span in {snap:#}"));
    assert_eq!(trace["name"], "request");
    assert_eq!(
        trace["path"],
        serde_json::json!(["connection", "request"]),
        "{trace:#}"
    );
    let ours = spans
        .iter()
        .find(|sp| {
            sp["fields"]
                .as_str()
                .is_some_and(|f| f.contains("path=/events"))
        })
        .unwrap_or_else(|| panic!("no request span in {snap:#}"));
    assert_eq!(ours["path"], serde_json::json!(["connection"]), "{ours:#}");
    // No app code recorded them: the drain's counts come from the tracked requests.
    let done = server.wait_for(" drain done (");
    assert!(done.contains("active_at_start=1 active_now=1"), "{done}");
    server.wait_for("EXITING");
}

#[test]
fn a_slow_upload_is_named_with_the_clients_silence() {
    let (_, c, _) = scenario(
        |addr| {
            let mut s = connect(addr);
            s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
                .unwrap();
            s.write_all(&[b'x'; 64 * 1024]).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let peer = s.local_addr().unwrap();
            (s, peer)
        },
        |peer| {
            vec![format!(
                "POST /upload receiving from {peer}, client silent for "
            )]
        },
        "receiving",
    );
    assert!(c["bytes_in"].as_u64().unwrap() >= 64 * 1024, "{c:#}");
}

#[test]
fn half_a_request_head_is_named() {
    let (_, c, _) = scenario(
        |addr| {
            let mut s = connect(addr);
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nAccept: te")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let peer = s.local_addr().unwrap();
            (s, peer)
        },
        |peer| {
            vec![format!(
                "request head incomplete from {peer} (41 B received), client silent for "
            )]
        },
        "reading_head",
    );
    assert!(c["method"].is_null(), "{c:#}");
}

#[test]
fn a_handler_that_has_not_responded_is_named_with_its_request() {
    let (_, c, _) = scenario(
        |addr| {
            let mut s = connect(addr);
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            // The request reaches its handler before the stop.
            std::thread::sleep(Duration::from_millis(300));
            let peer = s.local_addr().unwrap();
            (s, peer)
        },
        |peer| {
            vec![
                "GET /slow in flight ".into(),
                format!("s ({peer}), handler has not responded"),
            ]
        },
        "in_flight",
    );
    assert_eq!(c["method"], "GET");
    assert_eq!(c["path"], "/slow");
}

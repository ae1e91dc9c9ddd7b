//! The HTTP side: `/health`; `/session/{id}`, a long-running request that stays open until
//! the shutdown begins and then takes `--drain-secs` to finish its work; `POST /upload`, which
//! streams its body into SQLite chunk by chunk (at most `MAX_UPLOAD` bytes, and no faster than
//! the database writes: the queue to it is bounded); and `GET /events`, server-sent events, one
//! a second, until the client goes (or, with `--sse-fix`, until the shutdown begins).
//!
//! It serves through `shutdown_forensics::http::serve`: every connection has a
//! `connection{peer local}` span and every request a `request{method path}` span inside it
//! that lasts until the response body was sent, so a stuck snapshot names the connection a
//! drain waits for, what it is doing, and its peer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use shutdown_forensics::ShutdownSignal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::db::Db;

#[derive(Clone)]
struct AppState {
    db: Db,
    active: Arc<AtomicUsize>,
    signal: ShutdownSignal,
    drain: Duration,
    served: Arc<AtomicU64>,
    uploads: Arc<AtomicU64>,
    /// `/events` ends when the shutdown begins (`--sse-fix`).
    sse_fix: bool,
}

/// The largest upload accepted, in bytes: a larger one gets `413 Payload Too Large` (at once
/// when its `Content-Length` says so, else when the limit is crossed).
pub const MAX_UPLOAD: usize = 64 << 20;

pub struct Server {
    pub addr: SocketAddr,
    pub active: Arc<AtomicUsize>,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Decrements the active count however the request ends (finished, cancelled, aborted).
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn session(State(st): State<AppState>, Path(id): Path<u64>) -> String {
    st.active.fetch_add(1, Ordering::SeqCst);
    let _active = Active(Arc::clone(&st.active));
    st.db.event(id, "start").await;
    st.signal.recv().await;
    // The session's last work after the stop began: what `drain` waits for.
    tokio::time::sleep(st.drain).await;
    st.db.event(id, "end").await;
    st.served.fetch_add(1, Ordering::SeqCst);
    format!("session {id} done\n")
}

/// `POST /upload`: stores the body as it arrives; the request ends when the body does. At most
/// [`MAX_UPLOAD`] bytes, and no faster than the database takes them.
async fn upload(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD as u64) {
        return too_large();
    }
    st.active.fetch_add(1, Ordering::SeqCst);
    let _active = Active(Arc::clone(&st.active));
    let id = st.uploads.fetch_add(1, Ordering::SeqCst);
    let mut body = Limited::new(body, MAX_UPLOAD);
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => {
                total += data.len();
                // Waits while the database's queue is full: the client is slowed down.
                st.db.chunk(id, data.to_vec()).await;
            }
            Ok(Err(_trailers)) => {}
            Err(e) if e.is::<LengthLimitError>() => return too_large(),
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "upload body failed");
                return format!("upload {id} failed after {total} bytes\n").into_response();
            }
        }
    }
    st.served.fetch_add(1, Ordering::SeqCst);
    format!("upload {id}: {total} bytes\n").into_response()
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("uploads are limited to {MAX_UPLOAD} bytes\n"),
    )
        .into_response()
}

/// `GET /events`: one event a second until the client goes. A graceful shutdown waits for
/// it forever (the common pitfall); with `--sse-fix` it ends when the shutdown begins.
async fn events(State(st): State<AppState>) -> impl IntoResponse {
    let stream = futures_util::stream::unfold(0u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let event = Event::default().data(format!("tick {n}"));
        Some((Ok::<_, Infallible>(event), n + 1))
    });
    let stream: futures_util::stream::BoxStream<'static, Result<Event, Infallible>> = if st.sse_fix
    {
        // The fix: the stream ends on the shutdown signal, so the connection can drain.
        let signal = st.signal.clone();
        Box::pin(futures_util::StreamExt::take_until(stream, async move {
            signal.recv().await;
        }))
    } else {
        Box::pin(stream)
    };
    Sse::new(stream)
}

impl Server {
    pub async fn start(args: &Args, db: Db, signal: ShutdownSignal) -> std::io::Result<Self> {
        let active = Arc::new(AtomicUsize::new(0));
        let state = AppState {
            db,
            active: Arc::clone(&active),
            signal: signal.clone(),
            drain: Duration::from_secs_f64(args.drain_secs),
            served: Arc::new(AtomicU64::new(0)),
            uploads: Arc::new(AtomicU64::new(0)),
            sse_fix: args.sse_fix,
        };
        let app = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route("/session/{id}", get(session))
            .route("/upload", post(upload))
            .route("/events", get(events))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // axum's own `Serve`, with every connection and request tracked.
            shutdown_forensics::http::serve(listener, app)
                .with_graceful_shutdown(async move {
                    signal.recv().await;
                })
                .await
        });
        Ok(Self { addr, active, task })
    }
}

/// Opens `n` session requests (raw HTTP/1.1 over TCP) and waits until the server counts them.
pub async fn start_sessions(addr: SocketAddr, n: usize, active: &AtomicUsize) {
    for id in 0..n {
        tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let req =
                format!("GET /session/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_err() {
                return;
            }
            let mut body = String::new();
            let _ = s.read_to_string(&mut body).await;
            tracing::debug!(
                session = id,
                ok = body.starts_with("HTTP/1.1 200"),
                "session client finished"
            );
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while active.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that starts an upload of 1 MiB, sends 64 KiB of it slowly, then stalls with the
/// connection open: the drain waits on a request whose peer has gone silent.
pub async fn start_slow_upload(addr: SocketAddr) {
    const DECLARED: usize = 1 << 20;
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        tracing::warn!("slow upload: could not connect");
        return;
    };
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {DECLARED}\r\n\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..4 {
        if s.write_all(&chunk).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(local = ?s.local_addr().ok(), "slow upload: stalled after 64 KiB");
    // Keep the connection open and silent until the process exits.
    tokio::spawn(async move {
        let _keep = s;
        std::future::pending::<()>().await;
    });
}

/// A client of `/events` that stays connected and reads every event (`--sse-client`), as a
/// browser's `EventSource` does: a graceful shutdown waits for it.
pub async fn start_sse_client(addr: SocketAddr) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        tracing::warn!("sse client: could not connect");
        return;
    };
    let req = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: tick 0") {
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    tracing::info!(local = ?s.local_addr().ok(), "sse client: connected to /events");
    tokio::spawn(async move { while s.read(&mut buf).await.is_ok_and(|n| n > 0) {} });
}

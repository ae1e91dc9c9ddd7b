//! The HTTP side: `/health`; `/session/{id}`, a long-running request that stays open until
//! the shutdown begins and then takes `--drain-secs` to finish its work; and `POST /upload`,
//! which streams its body into SQLite chunk by chunk. Every request runs in a
//! `request{method path peer}` span, so a stuck snapshot can name the request a drain waits
//! for and join it to its silent peer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use shutdown_forensics::ShutdownSignal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tracing::Instrument;

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
}

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
    st.db.event(id, "start");
    st.signal.recv().await;
    // The session's last work after the stop began: what `drain` waits for.
    tokio::time::sleep(st.drain).await;
    st.db.event(id, "end");
    st.served.fetch_add(1, Ordering::SeqCst);
    format!("session {id} done\n")
}

/// `POST /upload`: stores the body as it arrives; the request ends when the body does.
async fn upload(State(st): State<AppState>, body: Body) -> String {
    st.active.fetch_add(1, Ordering::SeqCst);
    let _active = Active(Arc::clone(&st.active));
    let id = st.uploads.fetch_add(1, Ordering::SeqCst);
    let mut body = body;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => {
                total += data.len();
                st.db.chunk(id, data.to_vec());
            }
            Ok(Err(_trailers)) => {}
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "upload body failed");
                return format!("upload {id} failed after {total} bytes\n");
            }
        }
    }
    st.served.fetch_add(1, Ordering::SeqCst);
    format!("upload {id}: {total} bytes\n")
}

/// One `request` span per request, with the peer's address.
async fn request_span(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        peer = %peer
    );
    next.run(req).instrument(span).await
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
        };
        let app = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route("/session/{id}", get(session))
            .route("/upload", post(upload))
            .layer(axum::middleware::from_fn(request_span))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
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

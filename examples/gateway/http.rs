//! The HTTP side: `/health`, and `/session/{id}`, a long-running request that stays open until
//! the shutdown begins and then takes `--drain-secs` to finish its work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
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

impl Server {
    pub async fn start(args: &Args, db: Db, signal: ShutdownSignal) -> std::io::Result<Self> {
        let active = Arc::new(AtomicUsize::new(0));
        let state = AppState {
            db,
            active: Arc::clone(&active),
            signal: signal.clone(),
            drain: Duration::from_secs_f64(args.drain_secs),
            served: Arc::new(AtomicU64::new(0)),
        };
        let app = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route("/session/{id}", get(session))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
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

//! HTTP servers (axum, hyper): which connection holds the drain, and what it is doing.
//!
//! A graceful shutdown of an HTTP server waits for its connections, and names none of them: an
//! SSE stream that never ends, a client that stopped reading a download, a slow upload, a
//! WebSocket. Serve through this module and every accepted connection gets a
//! `connection{peer local}` span and an entry the stuck snapshot reads: its state
//! ([`HttpState`]: idle keep-alive, request head half received,
//! request in flight or receiving its body, response streaming, upgraded), the request's
//! method and path, bytes in and out, and when the peer last sent or took data. A stuck
//! `drain` then says, for each connection, what holds it:
//!
//! ```text
//! +30.00s drain stuck (budget 30.00s): GET /events streaming 29.8s to 10.0.0.7:51234, client not reading (3.7 MB queued); ...
//! ```
//!
//! Each request runs in a `request{method path}` span, a child of its connection's, that lasts
//! until its response body has been sent or dropped (axum's handler spans end when the handler
//! returns, long before a streamed body is sent). The `drain` phase gets `active_at_start` and
//! `active_now` (requests in flight, including responses still streaming) when the app does
//! not record them itself; [`counts`] gives the same to the app.
//!
//! # axum
//!
//! [`serve`] takes the place of `axum::serve` (a `Router`, or
//! `router.into_make_service_with_connect_info::<SocketAddr>()` for handlers that extract
//! `ConnectInfo<SocketAddr>`) and returns axum's own `Serve`:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use shutdown_forensics::{phase, Forensics};
//! use tracing::Instrument;
//!
//! # async fn run(forensics: Forensics) -> std::io::Result<()> {
//! let signal = forensics.signal();
//! let router = Router::new().route("/", get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let server = shutdown_forensics::http::serve(listener, router)
//!     .with_graceful_shutdown(async move { signal.recv().await; });
//! let server = tokio::spawn(async move { server.await });
//! forensics.signal().recv().await;
//! // `drain` gets active_at_start / active_now from the tracked requests.
//! let _ = server.instrument(phase!("drain")).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Plain hyper
//!
//! The same pieces in a hand-written accept loop: [`TrackedStream`] around each accepted
//! stream, [`TrackedService`] around the service, and hyper-util's `GracefulShutdown`:
//!
//! ```no_run
//! use axum::body::Body;
//! use axum::http::{Request, Response};
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto::Builder;
//! use hyper_util::server::graceful::GracefulShutdown;
//! use hyper_util::service::TowerToHyperService;
//! use shutdown_forensics::http::{TrackedService, TrackedStream};
//!
//! # async fn run(signal: shutdown_forensics::ShutdownSignal) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let graceful = GracefulShutdown::new();
//! let builder = Builder::new(TokioExecutor::new());
//! let app = tower::service_fn(|_req: Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
//! });
//! loop {
//!     tokio::select! {
//!         accepted = listener.accept() => {
//!             let Ok((stream, _peer)) = accepted else { continue };
//!             let Ok(stream) = TrackedStream::new(stream) else { continue };
//!             let service = TrackedService::new(app.clone(), stream.connection().clone());
//!             // hyper gives `Request<Incoming>`: the tracked service takes any body.
//!             let service = TowerToHyperService::new(service);
//!             let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
//!             let conn = graceful.watch(conn.into_owned());
//!             tokio::spawn(conn);
//!         }
//!         _ = signal.recv() => break,
//!     }
//! }
//! // In the `drain` phase: waits for every connection, which the stuck snapshot names.
//! graceful.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What is seen without this module
//!
//! Without the `axum` feature (or serving through plain `axum::serve`) the snapshot sees only
//! the app's own spans, its threads and its sockets: a stuck stream shows as a socket whose
//! peer is silent or whose send queue is full, with no method, path or state, and axum's
//! handler spans are already closed. Connections that are upgraded (WebSockets) are not
//! waited for by hyper's graceful shutdown: they are reported (`not tied to the shutdown`) so
//! that the app can close them on the shutdown signal itself.

mod serve;
mod service;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

pub use serve::{serve, IntoMakeTracked, MakeTracked, MakeTrackedFuture};
pub use service::{ResponseFuture, TrackedService};
pub use stream::{TrackedListener, TrackedStream};

use crate::connections::{self, now_ns, Entry, HttpState};

/// The target of the `connection` and `request` spans (`shutdown_forensics::http`), e.g. for a
/// filter.
pub const HTTP_TARGET: &str = connections::HTTP_TARGET;

/// One tracked connection: its addresses, its span, and what it is doing now.
#[derive(Debug, Clone)]
pub struct Connection {
    entry: Arc<Entry>,
    span: tracing::Span,
}

impl Connection {
    pub(crate) fn new(entry: Arc<Entry>) -> Self {
        let span = tracing::info_span!(
            target: HTTP_TARGET,
            "connection",
            peer = %entry.peer,
            local = %entry.local
        );
        Self { entry, span }
    }

    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }

    /// The client's address.
    #[must_use]
    pub fn peer(&self) -> SocketAddr {
        self.entry.peer
    }

    /// Our address of the connection.
    #[must_use]
    pub fn local(&self) -> SocketAddr {
        self.entry.local
    }

    /// The `connection{peer local}` span: open as long as the connection.
    #[must_use]
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// What the connection is doing now.
    #[must_use]
    pub fn state(&self) -> HttpState {
        self.entry.sample(now_ns()).state
    }
}

/// Open connections and requests in flight, across every tracked listener of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HttpCounts {
    /// Open connections (idle keep-alive ones included).
    pub connections: usize,
    /// Requests in flight: from the request head until the response body has been sent or
    /// dropped (upgraded connections are counted in `connections` only).
    pub requests: usize,
}

/// The process's open tracked connections and requests in flight now.
#[must_use]
pub fn counts() -> HttpCounts {
    connections::counts().map_or_else(HttpCounts::default, |c| HttpCounts {
        connections: c.connections,
        requests: c.requests,
    })
}

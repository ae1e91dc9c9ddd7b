//! `serve`: axum's own `Serve`, with tracked connections and requests.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use axum::serve::{IncomingStream, Serve};
use axum::Router;
use tower_service::Service;

use crate::http::service::TrackedService;
use crate::http::stream::TrackedListener;

/// Serves `router` on `listener` as `axum::serve` does, with every connection and request
/// tracked (the [module docs](crate::http)).
///
/// It returns axum's own [`Serve`], so `.with_graceful_shutdown(..)` and `.await` work as
/// usual. Requests do not carry `ConnectInfo<SocketAddr>` (an allocation per request): the
/// peer is in the `connection` span and the snapshot.
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// # async fn run(signal: shutdown_forensics::ShutdownSignal) -> std::io::Result<()> {
/// let router = Router::new().route("/", get(|| async { "ok" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// shutdown_forensics::http::serve(listener, router)
///     .with_graceful_shutdown(async move { signal.recv().await; })
///     .await
/// # }
/// ```
pub fn serve(
    listener: impl Into<TrackedListener>,
    router: Router,
) -> Serve<TrackedListener, MakeTracked, TrackedService<Router>> {
    axum::serve(listener.into(), MakeTracked { router })
}

/// Makes the [`TrackedService`] of each connection [`serve`] accepts.
#[derive(Debug, Clone)]
pub struct MakeTracked {
    router: Router,
}

impl Service<IncomingStream<'_, TrackedListener>> for MakeTracked {
    type Response = TrackedService<Router>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'_, TrackedListener>) -> Self::Future {
        let conn = incoming.io().connection().clone();
        ready(Ok(TrackedService::new(self.router.clone(), conn)))
    }
}

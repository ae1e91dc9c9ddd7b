//! `serve`: axum's own `Serve`, with tracked connections and requests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::connect_info::{Connected, IntoMakeServiceWithConnectInfo};
use axum::extract::Request;
use axum::response::Response;
use axum::routing::IntoMakeService;
use axum::serve::{IncomingStream, Serve};
use axum::Router;
use tower_service::Service;

use crate::http::service::TrackedService;
use crate::http::stream::TrackedListener;
use crate::http::Connection;

/// Serves on `listener` as `axum::serve` does, with every connection and request tracked (the
/// [module docs](crate::http)).
///
/// It takes a [`Router`], `router.into_make_service()`, or
/// `router.into_make_service_with_connect_info::<SocketAddr>()`, with which handlers extract
/// [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo) (the client's address), as under
/// `axum::serve` (see [`IntoMakeTracked`]). It returns axum's own [`Serve`], so `.with_graceful_shutdown(..)` and
/// `.await` work as usual.
///
/// ```no_run
/// use std::net::SocketAddr;
/// use axum::{extract::ConnectInfo, routing::get, Router};
///
/// # async fn run(signal: shutdown_forensics::ShutdownSignal) -> std::io::Result<()> {
/// let router = Router::new().route(
///     "/",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
/// );
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// shutdown_forensics::http::serve(
///     listener,
///     router.into_make_service_with_connect_info::<SocketAddr>(),
/// )
/// .with_graceful_shutdown(async move { signal.recv().await; })
/// .await
/// # }
/// ```
pub fn serve<M>(
    listener: impl Into<TrackedListener>,
    make_service: M,
) -> Serve<TrackedListener, MakeTracked<M::Make>, TrackedService<M::Service>>
where
    M: IntoMakeTracked,
{
    axum::serve(
        listener.into(),
        MakeTracked {
            make: make_service.into_make(),
        },
    )
}

/// What [`serve`] serves: a [`Router`] (one clone per connection, as `axum::serve` does), or
/// axum's make-services `router.into_make_service()` and
/// `router.into_make_service_with_connect_info::<C>()` (called with the client's
/// [`SocketAddr`] once per connection: `C` is `SocketAddr`, or a type of the app's that
/// implements [`Connected<SocketAddr>`]).
pub trait IntoMakeTracked {
    /// The service of one connection (what the make-service returns).
    type Service: Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static;
    /// The make-service, called once per accepted connection with the client's address.
    type Make: Service<SocketAddr, Response = Self::Service, Error = Infallible>;

    /// The make-service.
    fn into_make(self) -> Self::Make;
}

impl IntoMakeTracked for Router {
    type Service = Router;
    type Make = IntoMakeService<Router>;

    fn into_make(self) -> Self::Make {
        self.into_make_service()
    }
}

impl<S> IntoMakeTracked for IntoMakeService<S>
where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
{
    type Service = S;
    type Make = Self;

    fn into_make(self) -> Self::Make {
        self
    }
}

impl<S, C> IntoMakeTracked for IntoMakeServiceWithConnectInfo<S, C>
where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    C: Connected<SocketAddr>,
{
    // axum's `AddExtension<S, ConnectInfo<C>>`, which it does not export by name.
    type Service = <Self as Service<SocketAddr>>::Response;
    type Make = Self;

    fn into_make(self) -> Self::Make {
        self
    }
}

/// Makes the [`TrackedService`] of each connection [`serve`] accepts: the app's make-service
/// called with the client's address, its service wrapped.
#[derive(Debug, Clone)]
pub struct MakeTracked<M> {
    make: M,
}

impl<M> Service<IncomingStream<'_, TrackedListener>> for MakeTracked<M>
where
    M: Service<SocketAddr, Error = Infallible>,
{
    type Response = TrackedService<M::Response>;
    type Error = Infallible;
    type Future = MakeTrackedFuture<M::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.make.poll_ready(cx)
    }

    fn call(&mut self, incoming: IncomingStream<'_, TrackedListener>) -> Self::Future {
        let conn = incoming.io().connection().clone();
        MakeTrackedFuture {
            inner: self.make.call(*incoming.remote_addr()),
            conn: Some(conn),
        }
    }
}

pin_project_lite::pin_project! {
    /// The [`TrackedService`] of one connection, once the app's make-service gave its service
    /// (axum's are ready at once).
    #[derive(Debug)]
    pub struct MakeTrackedFuture<F> {
        #[pin]
        inner: F,
        conn: Option<Connection>,
    }
}

impl<F, S> Future for MakeTrackedFuture<F>
where
    F: Future<Output = Result<S, Infallible>>,
{
    type Output = Result<TrackedService<S>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(service) = ready!(this.inner.poll(cx));
        match this.conn.take() {
            Some(conn) => Poll::Ready(Ok(TrackedService::new(service, conn))),
            // Polled again after it was ready: a future contract broken by the caller.
            None => Poll::Pending,
        }
    }
}

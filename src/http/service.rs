//! The request side: a service around the app's (an axum `Router`, or any hyper service) that
//! runs each request in a `request{method path}` span, a child of its connection's, and keeps
//! the span and the connection's state until the response body has been sent or dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::http::header::UPGRADE;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower_service::Service;
use tracing::Span;

use crate::connections::Entry;
use crate::http::{Connection, HTTP_TARGET};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps the app's service for one connection (`S` takes `Request<axum::body::Body>`).
///
/// Each request gets a `request{method path}` span whose parent is the connection's span;
/// the inner service is called and polled inside it, so the spans of tower layers such as
/// tower-http's `TraceLayer` and of handlers become its children. The response body is
/// wrapped so that the span, and the connection's state (`streaming`), last until it has been
/// sent or dropped; a `101 Switching Protocols` response marks the connection upgraded.
#[derive(Debug, Clone)]
pub struct TrackedService<S> {
    inner: S,
    conn: Connection,
}

impl<S> TrackedService<S> {
    /// `inner` serving the requests of `conn` (from [`TrackedStream::connection`](crate::http::TrackedStream::connection)).
    #[must_use]
    pub fn new(inner: S, conn: Connection) -> Self {
        Self { inner, conn }
    }
}

impl<S, B, RB> Service<Request<B>> for TrackedService<S>
where
    S: Service<Request<Body>, Response = Response<RB>> + Clone,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: HttpBody<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let entry = self.conn.entry();
        let receiving = !req.body().is_end_stream();
        entry.request_started(req.method().as_str(), req.uri().path(), receiving);
        // `&str` values, not `%Display`: a subscriber records them without `core::fmt` (~330
        // instructions a request for the layer's capture, BENCHMARKS.md). fmt shows them
        // quoted (`method="GET"`); the snapshot's `request{method=GET path=/}` is the same.
        let span = tracing::info_span!(
            target: HTTP_TARGET,
            parent: self.conn.span(),
            "request",
            method = req.method().as_str(),
            path = req.uri().path()
        );
        // From here the request ends in the table however it ends (a panicking inner service
        // included): the guard is dropped then.
        let guard = RequestGuard {
            entry: Arc::clone(entry),
            taken: false,
            span,
        };
        let (parts, body) = req.into_parts();
        let body = if receiving {
            Body::new(RequestBody {
                inner: body,
                entry: Some(Arc::clone(entry)),
            })
        } else {
            Body::new(body)
        };
        // The inner service is called at the first poll, inside the span's one enter with that
        // poll (one enter less a request). The service that was made ready is the one called
        // (tower's contract); a clone takes its place for the next request.
        let ready = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, ready);
        ResponseFuture {
            state: State::NotCalled {
                service,
                req: Some(Request::from_parts(parts, body)),
            },
            guard: Some(guard),
        }
    }
}

/// Ends the request in the table however it ends: its body taken whole (then it ends when
/// written), failed, or dropped.
#[derive(Debug)]
struct RequestGuard {
    entry: Arc<Entry>,
    taken: bool,
    /// The request's span, kept open until the response has been written.
    span: Span,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.taken {
            self.entry
                .body_taken(std::mem::replace(&mut self.span, Span::none()));
        } else {
            self.entry.request_ended();
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a [`TrackedService`].
    pub struct ResponseFuture<S>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        state: State<S>,
        guard: Option<RequestGuard>,
    }
}

pin_project_lite::pin_project! {
    /// The inner service, called at the first poll, then its future.
    #[project = StateProj]
    enum State<S>
    where
        S: Service<Request<Body>>,
    {
        NotCalled { service: S, req: Option<Request<Body>> },
        Called { #[pin] future: S::Future },
    }
}

impl<S: Service<Request<Body>>> std::fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl<S, RB> Future for ResponseFuture<S>
where
    S: Service<Request<Body>, Response = Response<RB>>,
    RB: HttpBody<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = {
            // One enter for the call and its future's poll: the spans of tower layers (made in
            // `call`) and of the handler are children of the request's.
            let _in = this.guard.as_ref().map(|g| g.span.enter());
            loop {
                match this.state.as_mut().project() {
                    StateProj::NotCalled { service, req } => {
                        let Some(req) = req.take() else {
                            // Only after a panic in the inner `call`: never ready again.
                            return Poll::Pending;
                        };
                        let future = service.call(req);
                        this.state.set(State::Called { future });
                    }
                    StateProj::Called { future } => break ready!(future.poll(cx)),
                }
            }
        };
        let mut guard = this.guard.take();
        Poll::Ready(result.map(|resp| {
            if let Some(g) = guard.as_mut() {
                // hyper never polls an empty body: taken whole as it is.
                g.taken = resp.body().is_end_stream();
            }
            let upgraded = (resp.status() == StatusCode::SWITCHING_PROTOCOLS).then(|| {
                resp.headers()
                    .get(UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown protocol")
            });
            if let Some(g) = &guard {
                g.entry.response_started(upgraded);
            }
            resp.map(|inner| Body::new(TrackedBody { inner, guard }))
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request (and its span) until it has been sent.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B: HttpBody> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        // Not entered: the body's frames are the response's own work, and entering a span costs
        // two subscriber calls per frame (the snapshot's state says what the body does).
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // The end (the request ends once it has been written), or an error that ends it.
            if let Some(mut g) = this.guard.take() {
                g.taken = frame.is_none();
            }
        } else if this.inner.is_end_stream() {
            // The last frame: hyper may drop the body without polling it again (a body of
            // known length), which is not an abort.
            if let Some(g) = this.guard.as_mut() {
                g.taken = true;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that tells the table when it has been received whole.
    struct RequestBody<B> {
        #[pin]
        inner: B,
        entry: Option<Arc<Entry>>,
    }

    impl<B> PinnedDrop for RequestBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(e) = this.project().entry.take() {
                e.body_received();
            }
        }
    }
}

impl<B: HttpBody> HttpBody for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            if let Some(e) = this.entry.take() {
                e.body_received();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

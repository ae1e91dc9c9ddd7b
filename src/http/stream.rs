//! The accepted side: a listener whose streams keep their connection's entry in the table and
//! its `connection{peer local}` span, and count what crosses the socket.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::connections::{table, Registration};
use crate::http::Connection;

/// A [`TcpListener`] whose accepted streams are tracked ([`TrackedStream`]): give it to
/// [`serve`](crate::http::serve), or to `axum::serve` with
/// [`TrackedService`](crate::http::TrackedService) around the router.
///
/// Accept errors are handled as `axum::serve` handles them for a plain `TcpListener`: a reset
/// or aborted connection is skipped, any other error (`EMFILE`) is logged and retried after a
/// second.
#[derive(Debug)]
pub struct TrackedListener {
    inner: TcpListener,
}

impl TrackedListener {
    /// Tracks the connections `listener` accepts from now on.
    #[must_use]
    pub fn new(listener: TcpListener) -> Self {
        table().mark_used();
        Self { inner: listener }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The listener it wraps.
    #[must_use]
    pub fn into_inner(self) -> TcpListener {
        self.inner
    }
}

impl From<TcpListener> for TrackedListener {
    fn from(listener: TcpListener) -> Self {
        Self::new(listener)
    }
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => match TrackedStream::with_peer(stream, peer) {
                    Ok(s) => return (s, peer),
                    // The connection went away before we asked for its address.
                    Err(_) => continue,
                },
                Err(e) => accept_error(e).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// As `axum::serve`'s listener does for a `TcpListener`.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// An accepted TCP stream that keeps its connection in the table the stuck snapshot reads: its
/// `connection{peer local}` span, bytes and instants of its last read and write, and when a
/// write last found the send buffer full. Reads and writes pass through unchanged.
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    conn: Connection,
    /// Keeps the entry in the table until the socket closes.
    _registration: Registration,
}

impl TrackedStream {
    /// Tracks `stream` (for a hand-written accept loop, e.g. plain hyper).
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let peer = stream.peer_addr()?;
        Self::with_peer(stream, peer)
    }

    fn with_peer(stream: TcpStream, peer: SocketAddr) -> io::Result<Self> {
        let local = stream.local_addr()?;
        let registration = table().register(peer, local, raw_fd(&stream));
        let conn = Connection::new(std::sync::Arc::clone(&registration.entry));
        Ok(Self {
            inner: stream,
            conn,
            _registration: registration,
        })
    }

    /// The connection: its peer, its span, what it is doing.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The stream it wraps.
    #[must_use]
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

#[cfg(unix)]
fn raw_fd(s: &TcpStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    Some(s.as_raw_fd())
}

#[cfg(not(unix))]
fn raw_fd(_: &TcpStream) -> Option<i32> {
    None
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.conn.entry().read(n);
        }
        r
    }
}

impl TrackedStream {
    fn count_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => self.conn.entry().wrote(*n),
            Poll::Pending => self.conn.entry().write_would_block(),
            _ => {}
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            // hyper flushes the socket only once its own buffer was written.
            self.conn.entry().flushed();
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        // Responses still unwritten end with the connection.
        self.conn.entry().flushed();
    }
}

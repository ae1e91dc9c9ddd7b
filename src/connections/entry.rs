//! One connection's entry: written by `http/` on every read, write and request (atomics, and
//! a short lock for the request's method and path), sampled by readers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::connections::clock::{now_ns, since};
use crate::connections::state::HttpState;

// The stored state; `Idle` splits into idle and reading-head when read (bytes since the last
// request), `InFlight` into in flight and receiving (the request body's flag).
const IDLE: u8 = 0;
const IN_FLIGHT: u8 = 1;
const STREAMING: u8 = 2;
const UPGRADED: u8 = 3;

/// Longest request path kept, in bytes (a path is chosen by the client).
pub(super) const PATH_MAX: usize = 200;

/// The request a connection serves now (or served last).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestInfo {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The protocol a `101` response switched to (its `Upgrade` header), capped.
    pub(crate) upgrade: Option<String>,
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The socket's descriptor (`None` where descriptors are not known).
    pub(crate) fd: Option<i32>,
    pub(crate) opened: u64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// 0 until the first read / write.
    pub(crate) last_read: AtomicU64,
    pub(crate) last_write: AtomicU64,
    /// When a write first found the socket's buffer full (0: the last write went through).
    pub(crate) write_blocked: AtomicU64,
    state: AtomicU8,
    /// When the state last changed.
    state_since: AtomicU64,
    /// Requests in flight on this connection (more than one only with HTTP/2).
    in_flight: AtomicU32,
    /// The request body is still being received.
    receiving: AtomicBool,
    /// Responses whose body the server took whole but may not have written yet: they end
    /// at the next flush that completes (hyper buffers a body's frames).
    unflushed: AtomicU32,
    /// Their request spans, closed when they have been written (with a flag, so that a
    /// flush without spans to close takes no lock).
    unflushed_spans: Mutex<Vec<tracing::Span>>,
    has_unflushed_spans: AtomicBool,
    pub(crate) requests: AtomicU64,
    /// `bytes_in` / `bytes_out` when the last request ended / the response began.
    in_at_idle: AtomicU64,
    out_at_response: AtomicU64,
    request: Mutex<RequestInfo>,
    /// The table's count of requests in flight (process-wide).
    requests_in_flight: &'static AtomicUsize,
}

impl Entry {
    pub(crate) fn new(
        peer: SocketAddr,
        local: SocketAddr,
        fd: Option<i32>,
        requests_in_flight: &'static AtomicUsize,
    ) -> Self {
        let now = now_ns();
        Self {
            peer,
            local,
            fd,
            opened: now,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            state: AtomicU8::new(IDLE),
            state_since: AtomicU64::new(now),
            in_flight: AtomicU32::new(0),
            receiving: AtomicBool::new(false),
            unflushed: AtomicU32::new(0),
            unflushed_spans: Mutex::new(Vec::new()),
            has_unflushed_spans: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_at_idle: AtomicU64::new(0),
            out_at_response: AtomicU64::new(0),
            request: Mutex::new(RequestInfo::default()),
            requests_in_flight,
        }
    }

    fn set_state(&self, state: u8) {
        if self.state.swap(state, Ordering::AcqRel) != state {
            self.state_since.store(now_ns(), Ordering::Release);
        }
    }

    /// A request begins: its method and path (capped at a char boundary), and whether a body
    /// is still to be received.
    pub(crate) fn request_started(&self, method: &str, path: &str, receiving: bool) {
        {
            let mut r = self.request.lock().unwrap_or_else(PoisonError::into_inner);
            r.method.clear();
            r.method.push_str(cap(method, 16));
            r.path.clear();
            r.path.push_str(cap(path, PATH_MAX));
            r.upgrade = None;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.receiving.store(receiving, Ordering::Release);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.set_state(IN_FLIGHT);
        }
        self.requests_in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// The request body was received whole (or dropped).
    pub(crate) fn body_received(&self) {
        self.receiving.store(false, Ordering::Release);
    }

    /// The response head is ready: its body is sent from now on (`101`: the connection is
    /// upgraded and stays so).
    pub(crate) fn response_started(&self, upgraded: Option<&str>) {
        self.out_at_response
            .store(self.bytes_out.load(Ordering::Relaxed), Ordering::Relaxed);
        if let Some(protocol) = upgraded {
            self.request
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .upgrade = Some(cap(protocol, 32).to_owned());
            self.set_state(UPGRADED);
        } else if self.state.load(Ordering::Acquire) != UPGRADED {
            self.set_state(STREAMING);
        }
    }

    /// A request ended (its response body was sent, failed or was dropped).
    pub(crate) fn request_ended(&self) {
        self.requests_in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.receiving.store(false, Ordering::Release);
            self.in_at_idle
                .store(self.bytes_in.load(Ordering::Relaxed), Ordering::Relaxed);
            if self.state.load(Ordering::Acquire) != UPGRADED {
                self.set_state(IDLE);
            }
        }
    }

    /// The server took the response body whole: the request ends once it has been written
    /// ([`Self::flushed`]).
    pub(crate) fn body_taken(&self, span: tracing::Span) {
        if !span.is_none() {
            self.unflushed_spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(span);
            self.has_unflushed_spans.store(true, Ordering::Release);
        }
        self.unflushed.fetch_add(1, Ordering::AcqRel);
    }

    /// A flush of the socket completed: every response taken whole has been written.
    #[inline]
    pub(crate) fn flushed(&self) {
        if self.unflushed.load(Ordering::Acquire) > 0 {
            for _ in 0..self.unflushed.swap(0, Ordering::AcqRel) {
                self.request_ended();
            }
            if !self.has_unflushed_spans.swap(false, Ordering::AcqRel) {
                return;
            }
            // One at a time, each closed with no lock held (a subscriber's close callback may
            // log); the list keeps its capacity for the next request.
            loop {
                let (span, more) = {
                    let mut spans =
                        (self.unflushed_spans.lock()).unwrap_or_else(PoisonError::into_inner);
                    (spans.pop(), !spans.is_empty())
                };
                drop(span);
                if !more {
                    break;
                }
            }
        }
    }

    /// Bytes read from the peer.
    #[inline]
    pub(crate) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.last_read.store(now_ns(), Ordering::Relaxed);
    }

    /// Bytes written to the socket (the kernel took them).
    #[inline]
    pub(crate) fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.last_write.store(now_ns(), Ordering::Relaxed);
        if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    /// A write found the socket's send buffer full.
    #[inline]
    pub(crate) fn write_would_block(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(now_ns(), Ordering::Relaxed);
        }
    }

    /// What the entry says now.
    pub(crate) fn sample(&self, now: u64) -> ConnSample {
        let stored = self.state.load(Ordering::Acquire);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let state = match stored {
            UPGRADED => HttpState::Upgraded,
            STREAMING => HttpState::Streaming,
            IN_FLIGHT if self.receiving.load(Ordering::Acquire) => HttpState::Receiving,
            IN_FLIGHT => HttpState::InFlight,
            _ if bytes_in > self.in_at_idle.load(Ordering::Relaxed) => HttpState::ReadingHead,
            _ => HttpState::Idle,
        };
        let at = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(since(ns, now)),
        };
        let request = (stored != IDLE).then(|| {
            self.request
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        ConnSample {
            peer: self.peer,
            local: self.local,
            fd: self.fd,
            state,
            age: since(self.opened, now),
            in_state: since(self.state_since.load(Ordering::Acquire), now),
            request,
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            head_bytes: bytes_in.saturating_sub(self.in_at_idle.load(Ordering::Relaxed)),
            bytes_in,
            bytes_out,
            response_bytes: (stored == STREAMING)
                .then(|| bytes_out.saturating_sub(self.out_at_response.load(Ordering::Relaxed))),
            since_read: at(&self.last_read),
            since_write: at(&self.last_write),
            write_blocked: at(&self.write_blocked),
        }
    }
}

/// One connection as a reader copied it.
#[derive(Debug, Clone)]
pub(crate) struct ConnSample {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) fd: Option<i32>,
    pub(crate) state: HttpState,
    pub(crate) age: Duration,
    pub(crate) in_state: Duration,
    /// The request in flight (or, upgraded, the one that upgraded it).
    pub(crate) request: Option<RequestInfo>,
    pub(crate) requests: u64,
    pub(crate) in_flight: u32,
    /// Bytes received since the last request ended (of a next request's head, when idle).
    pub(crate) head_bytes: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Bytes written since the response began, while streaming.
    pub(crate) response_bytes: Option<u64>,
    pub(crate) since_read: Option<Duration>,
    pub(crate) since_write: Option<Duration>,
    pub(crate) write_blocked: Option<Duration>,
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(super) fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

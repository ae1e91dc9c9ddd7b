//! The process-wide table of the HTTP connections the app serves (ARCHITECTURE.md, "Data
//! flow"): written by `http/` (feature `axum`) as connections open, requests start and responses
//! end; read by a stuck snapshot (`stuck/connections.rs`) and by the `drain` phase's counts
//! (`timeline/phase.rs`). It imports nothing of the crate, so every reader can sit above it.
//!
//! Writers touch only atomics on the hot path (a read, a write, a request): the table's mutex is
//! taken once when a connection opens and once when it closes. Readers copy the entries' `Arc`s
//! under the mutex and read the atomics after letting go. Without the feature nothing registers
//! and every reader sees an empty table ([`counts`] is `None`).

// Without the feature nothing writes the table (its readers still compile, and see it empty).
#![cfg_attr(not(feature = "axum"), allow(dead_code))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What an HTTP connection is doing, as a stuck snapshot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HttpState {
    /// Open, no request in flight, nothing of a next request received: a keep-alive connection
    /// (or one that never sent a request).
    Idle,
    /// Bytes of a request head arrived but the head is not complete.
    ReadingHead,
    /// A request is in flight: its handler runs and the request body has been read.
    InFlight,
    /// A request is in flight and its body is still being received.
    Receiving,
    /// The response head was sent and its body is still being sent.
    Streaming,
    /// The connection was upgraded (`101 Switching Protocols`, e.g. a WebSocket).
    Upgraded,
}

impl HttpState {
    /// `idle`, `reading_head`, `in_flight`, `receiving`, `streaming` or `upgraded`, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::ReadingHead => "reading_head",
            Self::InFlight => "in_flight",
            Self::Receiving => "receiving",
            Self::Streaming => "streaming",
            Self::Upgraded => "upgraded",
        }
    }
}

// The stored state; `Idle` splits into idle and reading-head when read (bytes since the last
// request), `InFlight` into in flight and receiving (the request body's flag).
const IDLE: u8 = 0;
const IN_FLIGHT: u8 = 1;
const STREAMING: u8 = 2;
const UPGRADED: u8 = 3;

/// The target of the `connection` and `request` spans of `http/`.
pub(crate) const HTTP_TARGET: &str = "shutdown_forensics::http";

/// Monotonic nanoseconds, coarse (a scheduler tick, 1-10 ms, is plenty for "silent for
/// 29.8s" and costs a fraction of a precise read on every socket read and write); never 0.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return 1;
    }
    let ns = u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0));
    ns.max(1)
}

/// Monotonic nanoseconds since the first call; never 0.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn since(ns: u64, now: u64) -> Duration {
    Duration::from_nanos(now.saturating_sub(ns))
}

/// Longest request path kept, in bytes (a path is chosen by the client).
const PATH_MAX: usize = 200;

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
}

impl Entry {
    fn new(peer: SocketAddr, local: SocketAddr, fd: Option<i32>) -> Self {
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
        table().requests.fetch_add(1, Ordering::AcqRel);
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
        table().requests.fetch_sub(1, Ordering::AcqRel);
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
                let span = self
                    .unflushed_spans
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                match span {
                    Some(span) => drop(span),
                    None => break,
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

/// Counts for the app and the `drain` phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Open connections.
    pub(crate) connections: usize,
    /// Requests in flight (until their response body was sent or dropped).
    pub(crate) requests: usize,
}

/// The table itself: slots of open connections.
#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Mutex<Slots>,
    open: AtomicUsize,
    requests: AtomicUsize,
    /// Set once a connection source (a tracked listener or stream) was created.
    used: AtomicBool,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Arc<Entry>>>,
    free: Vec<usize>,
}

pub(crate) fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

/// A registered connection: removed from the table when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) entry: Arc<Entry>,
    slot: usize,
}

impl Table {
    /// Marks that the app serves through tracked connections (its counts mean something).
    pub(crate) fn mark_used(&self) {
        self.used.store(true, Ordering::Release);
    }

    /// Registers a connection accepted now.
    pub(crate) fn register(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
        fd: Option<i32>,
    ) -> Registration {
        self.mark_used();
        let entry = Arc::new(Entry::new(peer, local, fd));
        let mut s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match s.free.pop() {
            Some(i) => {
                s.entries[i] = Some(Arc::clone(&entry));
                i
            }
            None => {
                s.entries.push(Some(Arc::clone(&entry)));
                s.entries.len() - 1
            }
        };
        drop(s);
        self.open.fetch_add(1, Ordering::AcqRel);
        Registration { entry, slot }
    }

    /// Copies (at most `max`) open entries, oldest slot first.
    pub(crate) fn entries(&self, max: usize) -> (Vec<Arc<Entry>>, bool) {
        let s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Arc<Entry>> = s.entries.iter().flatten().take(max).cloned().collect();
        let cut = out.len() == max && s.entries.iter().flatten().count() > max;
        drop(s);
        out.sort_by_key(|e| e.opened);
        (out, cut)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let t = table();
        let mut s = t.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = s.entries.get_mut(self.slot) {
            if slot.as_ref().is_some_and(|e| Arc::ptr_eq(e, &self.entry)) {
                *slot = None;
                s.free.push(self.slot);
            }
        }
        drop(s);
        t.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections and requests in flight; `None` until the app served through a tracked
/// listener or stream (the counts would be a misleading zero).
pub(crate) fn counts() -> Option<Counts> {
    let t = table();
    t.used.load(Ordering::Acquire).then(|| Counts {
        connections: t.open.load(Ordering::Acquire),
        requests: t.requests.load(Ordering::Acquire),
    })
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn a_connection_walks_through_its_states_and_leaves_the_table() {
        let before = table().open.load(Ordering::Acquire);
        let reg = table().register(addr(1), addr(2), None);
        let e = &reg.entry;
        assert_eq!(e.sample(now_ns()).state, HttpState::Idle);
        e.read(10);
        assert_eq!(e.sample(now_ns()).state, HttpState::ReadingHead);
        e.request_started("POST", "/upload", true);
        let s = e.sample(now_ns());
        assert_eq!(s.state, HttpState::Receiving);
        assert_eq!(s.request.unwrap().path, "/upload");
        e.body_received();
        assert_eq!(e.sample(now_ns()).state, HttpState::InFlight);
        e.response_started(None);
        e.wrote(100);
        let s = e.sample(now_ns());
        assert_eq!(s.state, HttpState::Streaming);
        assert_eq!(s.response_bytes, Some(100));
        e.request_ended();
        assert_eq!(e.sample(now_ns()).state, HttpState::Idle);
        e.request_started("GET", "/ws", false);
        e.response_started(Some("websocket"));
        e.request_ended();
        let s = e.sample(now_ns());
        assert_eq!(s.state, HttpState::Upgraded);
        let r = s.request.unwrap();
        assert_eq!(
            (r.path.as_str(), r.upgrade.as_deref()),
            ("/ws", Some("websocket"))
        );
        assert!(table()
            .entries(usize::MAX)
            .0
            .iter()
            .any(|x| Arc::ptr_eq(x, e)));
        let kept = Arc::clone(e);
        drop(reg);
        assert!(!table()
            .entries(usize::MAX)
            .0
            .iter()
            .any(|x| Arc::ptr_eq(x, &kept)));
        assert!(table().open.load(Ordering::Acquire) <= before + 1);
        assert!(counts().is_some());
    }

    #[test]
    fn a_long_path_is_cut_at_a_character_boundary() {
        let long = "é".repeat(300);
        let c = cap(&long, PATH_MAX);
        assert!(c.len() <= PATH_MAX && c.chars().all(|ch| ch == 'é'));
    }
}

//! What a snapshot joins: one view per socket, thread and tracked span, each with what it
//! waits on, rendered for the findings (escaped: span fields and thread names are untrusted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tracing_core::span::Id;
use tracing_core::Dispatch;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanRef};

use crate::stuck::fields::{Captured, SpanFields};
use crate::stuck::snapshot::{OpenSpan, SocketState, ThreadState};
use crate::stuck::spans::{coarse_since, TrackedSpan};
use crate::sys::fd::{self, FdTarget};
use crate::sys::logfmt::{escape_hidden, Logfmt};
use crate::sys::task::{self, SyscallState, TaskSample};
use crate::sys::tcp_stall::Stall;

/// Longest a field string or name is kept, in characters.
pub(super) const TEXT_MAX: usize = 200;
/// A thread using at least this share of a core between the samples is "spinning" (half a
/// core: on a busy machine a busy loop does not get a whole one).
const SPINNING_PCT: f64 = 50.0;

/// One socket of ours, as found through `/proc/self/fd` and `/proc/self/net`.
#[derive(Debug, Clone)]
pub(super) struct Sock {
    pub(super) state: SocketState,
    pub(super) peer_addr: Option<SocketAddr>,
    pub(super) local_addr: Option<SocketAddr>,
    pub(super) established: bool,
    pub(super) last_recv: Option<Duration>,
    /// Which side an established connection waits on (`sys/tcp_stall.rs`).
    pub(super) stall: Option<Stall>,
}

impl Sock {
    /// A socket known only by its descriptor and kind: every other fact unknown.
    pub(super) fn without_address(fd: i32, kind: &str) -> Self {
        Self {
            state: SocketState {
                fd,
                kind: kind.to_owned(),
                local: None,
                peer: None,
                state: None,
                recv_q: None,
                send_q: None,
                last_recv_s: None,
                last_send_s: None,
            },
            peer_addr: None,
            local_addr: None,
            established: false,
            last_recv: None,
            stall: None,
        }
    }
}

/// An IPv4 peer of a dual-stack socket (`[::ffff:10.0.0.7]:5432`) as `10.0.0.7:5432`.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

pub(super) fn show(addr: SocketAddr) -> String {
    canonical(addr).to_string()
}

/// `10.0.0.7:5432 ESTABLISHED` (or `unix /run/x.sock CONNECTED`).
pub(super) fn describe_sock(s: &Sock) -> String {
    let st = &s.state;
    let state = st.state.as_deref().unwrap_or("state unknown");
    match (&st.peer, &st.local) {
        (Some(peer), _) => format!("{peer} {state}"),
        (None, Some(local)) if st.kind == "unix" => format!("unix {} {state}", Logfmt(local)),
        (None, Some(local)) => format!("{local} {state}"),
        (None, None) => format!("{} {state}", st.kind),
    }
}

/// Which side the connection waits on, when known: ` no data for 29.8s` (the peer sends
/// nothing), ` peer not reading: 3866624 bytes queued, none sent for 6.4s`, ...
pub(super) fn silence(s: &Sock) -> String {
    match s.stall {
        Some(stall) if s.established => stall.to_string(),
        _ => String::new(),
    }
}

/// One thread with what it waits on.
#[derive(Debug)]
pub(super) struct ThreadView {
    pub(super) state: ThreadState,
    /// The name as the kernel gave it (`state.name` is escaped for the report): a finding
    /// renders it with [`Logfmt`], which escapes it once.
    raw_name: String,
    /// The socket its syscall waits on.
    pub(super) sock_fd: Option<i32>,
    pub(super) blocked: bool,
    /// Its call waits on a socket, pipe or file.
    pub(super) on_io: bool,
    pub(super) spinning: bool,
    /// `blocked in read(fd 17 -> 10.0.0.7:5432 ESTABLISHED)` or `spinning 100% CPU`.
    pub(super) doing: Option<String>,
}

impl ThreadView {
    pub(super) fn new(
        s: TaskSample,
        cpu: Option<f64>,
        same_call: bool,
        fds: &HashMap<i32, FdTarget>,
        socks: &HashMap<i32, Sock>,
    ) -> Self {
        let (syscall, call) = match s.syscall {
            None => (None, None),
            Some(SyscallState::Running) => (Some("running".to_owned()), None),
            Some(SyscallState::NotInSyscall) => (Some("none".to_owned()), None),
            Some(SyscallState::InSyscall { nr, args }) => {
                let name =
                    task::syscall_name(nr).map_or_else(|| format!("syscall {nr}"), str::to_owned);
                (Some(name), Some((nr, args)))
            }
        };
        let mut sock_fd = None;
        // Waiting on a socket, pipe or file (not on an epoll or eventfd: that is how an idle
        // event loop or pool waits).
        let mut on_io = false;
        let target = call.and_then(|(nr, args)| {
            let arg = task::syscall_fd_arg(nr)?;
            let fd = i32::try_from(*args.get(arg)?).ok()?;
            // A descriptor opened after the listing is read now.
            let listed = fds.get(&fd).cloned().or_else(|| fd::read_fd(fd));
            on_io = matches!(
                listed,
                Some(FdTarget::Socket { .. } | FdTarget::Pipe { .. } | FdTarget::Path(_))
            );
            let what = match listed.as_ref() {
                Some(FdTarget::Socket { .. }) => match socks.get(&fd) {
                    Some(sock) => {
                        sock_fd = Some(fd);
                        describe_sock(sock)
                    }
                    None => "socket".to_owned(),
                },
                Some(FdTarget::Pipe { .. }) => "pipe".to_owned(),
                Some(FdTarget::AnonInode(kind)) if kind == "eventpoll" => "epoll".to_owned(),
                Some(FdTarget::AnonInode(kind)) => escape_hidden(kind, TEXT_MAX),
                Some(FdTarget::Path(p)) => escape_hidden(p, TEXT_MAX),
                Some(FdTarget::Other(o)) => escape_hidden(o, TEXT_MAX),
                None => "closed or unknown descriptor".to_owned(),
            };
            Some(format!("fd {fd} -> {what}"))
        });
        // Without a CPU figure (one sample), a thread sleeping in a call counts as blocked.
        let idle_cpu = cpu.is_none_or(|c| c < 1.0);
        let state_char = s.state;
        let blocked = call.is_some() && idle_cpu && same_call && matches!(state_char, 'S' | 'D');
        let spinning = cpu.is_some_and(|c| c >= SPINNING_PCT);
        let doing = if spinning {
            Some(format!("spinning {:.0}% CPU", cpu.unwrap_or(0.0)))
        } else if blocked {
            let name = syscall.as_deref().unwrap_or("?");
            let mut d = match &target {
                Some(t) => format!("blocked in {name}({t})"),
                None => format!("blocked in {name}"),
            };
            if state_char == 'D' {
                d.push_str(" (uninterruptible)");
            }
            if let Some(sock) = sock_fd.and_then(|fd| socks.get(&fd)) {
                d.push_str(&silence(sock));
            }
            Some(d)
        } else {
            None
        };
        Self {
            raw_name: cap_chars(&s.name, 64),
            state: ThreadState {
                tid: s.tid,
                name: escape_hidden(&s.name, 64),
                state: state_char.to_string(),
                syscall,
                target,
                cpu_pct: cpu.map(|c| (c * 10.0).round() / 10.0),
                wchan: s.wchan.as_deref().map(|w| escape_hidden(w, 64)),
            },
            sock_fd,
            blocked,
            on_io,
            spinning,
            doing,
        }
    }

    /// Blocked on a socket, pipe or file, in `D` state, or spinning: worth listing first.
    pub(super) fn notable(&self) -> bool {
        self.spinning || (self.blocked && self.on_io) || self.state.state == "D"
    }

    /// This crate's own threads (`shutdown-signals`, `shutdown-watchdog`, ...): listed, but
    /// never a finding (the signal listener always waits on its pipe).
    pub(super) fn ours(&self) -> bool {
        self.state.name.starts_with("shutdown-")
    }

    pub(super) fn who(&self) -> String {
        format!("thread {} (tid {})", Logfmt(&self.raw_name), self.state.tid)
    }
}

/// The first `max` characters of `s` (`...` marks a cut), not escaped: for text that
/// [`Logfmt`] escapes when it is shown.
pub(super) fn cap_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// One tracked span with what the registry knows of it.
#[derive(Debug)]
pub(super) struct SpanView {
    pub(super) span: OpenSpan,
    pub(super) entered: bool,
    pub(super) thread: u32,
    /// The socket its fields name (an address equal to a socket's peer or local address).
    pub(super) sock_fd: Option<i32>,
    /// `request{method=POST path=/upload}`.
    pub(super) render: String,
}

impl SpanView {
    pub(super) fn new(
        t: &TrackedSpan,
        now_c: u64,
        dispatch: Option<&Dispatch>,
        names: &HashMap<u32, String>,
        socks: &HashMap<i32, Sock>,
    ) -> Self {
        // `names` holds the kernel's names, unescaped: `Logfmt` below escapes them once.
        let (fields, path) = registry_details(dispatch, t.id);
        // The extension (fields too long for the slot, or recorded later) wins over the slot.
        let fields = fields
            .or_else(|| (!t.slot.fields.is_none()).then(|| t.slot.fields.span_fields().captured()));
        let name = escape_hidden(t.slot.meta.name(), TEXT_MAX);
        let render = render_span(t.slot.meta.name(), fields.as_ref());
        // A socket whose peer the fields name (the server's end of a request), else one whose
        // local address they name; the lowest descriptor when several match.
        let sock_fd = fields.as_ref().and_then(|f| {
            let addrs = f.addresses();
            if addrs.is_empty() {
                return None;
            }
            let find = |pick: fn(&Sock) -> Option<SocketAddr>| {
                socks
                    .iter()
                    .filter(|(_, s)| pick(s).is_some_and(|a| addrs.contains(&a)))
                    .map(|(fd, _)| *fd)
                    .min()
            };
            find(|s| s.peer_addr).or_else(|| find(|s| s.local_addr))
        });
        let entered = t.slot.entered > 0;
        let thread = t.slot.thread;
        let last_thread = (thread != 0).then(|| match names.get(&thread) {
            Some(n) => format!("{} (tid {thread})", Logfmt(n)),
            None => format!("exited thread (tid {thread})"),
        });
        Self {
            span: OpenSpan {
                name,
                fields: fields
                    .as_ref()
                    .map(Captured::render)
                    .filter(|f| !f.is_empty()),
                path,
                age_s: round1(coarse_since(t.slot.opened, now_c)),
                idle_s: (!entered).then(|| round1(coarse_since(t.slot.active, now_c))),
                last_thread,
            },
            entered,
            thread,
            sock_fd,
            render,
        }
    }
}

pub(super) fn round1(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The span's fields as the layer captured them, and its parents' names.
pub(super) fn registry_details(
    dispatch: Option<&Dispatch>,
    id: u64,
) -> (Option<Captured>, Vec<String>) {
    let Some(registry) = dispatch.and_then(|d| d.downcast_ref::<Registry>()) else {
        return (None, Vec::new());
    };
    if id == 0 {
        return (None, Vec::new());
    }
    let Some(span) = registry.span(&Id::from_u64(id)) else {
        return (None, Vec::new());
    };
    let fields = fields_of(&span);
    let mut path: Vec<String> = span
        .scope()
        .skip(1)
        .take(8)
        .map(|s| escape_hidden(s.name(), TEXT_MAX))
        .collect();
    path.reverse();
    (fields, path)
}

/// `request{method=POST path=/upload}` (or the bare name without fields), escaped, each value
/// quoted when it holds a separator: how a span is named in findings and in the `done` line's
/// `oldest_abandoned`.
pub(crate) fn render_span(name: &str, fields: Option<&Captured>) -> String {
    let name = escape_hidden(name, TEXT_MAX);
    match fields.map(Captured::render) {
        Some(f) if !f.is_empty() => format!("{name}{{{f}}}"),
        _ => name,
    }
}

/// The fields span `id`'s table slot holds (short ones, captured at its open); `None` when it
/// has none there.
pub(crate) fn slot_fields_of(
    spans: &crate::stuck::spans::SpanTracker,
    id: u64,
) -> Option<Captured> {
    spans
        .slot_fields(id)
        .filter(|f| !f.is_none())
        .map(|f| f.span_fields().captured())
}

/// The span's fields as the layer captured them (`stuck/fields.rs`); `None` when it has none.
pub(crate) fn fields_of<'a, R: LookupSpan<'a>>(span: &SpanRef<'a, R>) -> Option<Captured> {
    let ext = span.extensions();
    let fields = ext.get::<SpanFields>()?;
    (!fields.is_empty()).then(|| fields.captured())
}
